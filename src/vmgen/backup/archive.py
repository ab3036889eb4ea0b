"""Writing a directory tree as a tar stream (POSIX/PAX, what `tar` and tarfile read), with
excludes and a summary of what they left out.

Members are written from our own lstat/fstat rather than through TarFile.add()/addfile():
those look up user names per file, keep every TarInfo in memory, route data through extra
copies, and abort on a file that shrinks while being read, which in a live home (the agent may
still be writing) would corrupt the whole stream. Headers are tarfile's own (TarInfo.tobuf),
except that the common case (ASCII names under 100 bytes) is packed directly: same bytes, and
the per-file cost was most of the backup's CPU on a tree of small source files."""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from vmgen.backup import owneraccess, tarstream
from vmgen.backup.index import IndexWriter, fingerprint
from vmgen.backup.manifest import ArchiveSummary, ExcludeStat
from vmgen.backup.tarstream import DUMPDIR

# Regenerable caches and build output; a pattern without "/" matches a name at any depth.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "node_modules",
    ".cache",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".gradle",
    ".next",
    "target",
    "dist",
    "build",
)
COPY_CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
_MAX_SKIPPED_LISTED = 50
# A directory entry, its path, its stat, and what becomes of it: D, Y or N (see TreeWriter).
_Planned = tuple[os.DirEntry[str], str, os.stat_result, bytes]


class Excludes:
    """Glob patterns: without "/" they match a file/dir name anywhere (like .gitignore), with
    "/" they match the path relative to the root. A matched directory is pruned whole."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p.strip().strip("/") for p in patterns if p.strip().strip("/"))
        # One regex per kind with a group per pattern: one match call per entry, not one
        # fnmatch per pattern per entry.
        self._by_name = self._compile(p for p in self.patterns if "/" not in p)
        self._by_path = self._compile(p for p in self.patterns if "/" in p)

    @staticmethod
    def _compile(patterns: Iterable[str]) -> tuple[re.Pattern[str] | None, list[str]]:
        listed = list(patterns)
        if not listed:
            return None, []
        regex = "|".join(f"(?P<p{i}>{fnmatch.translate(p)})" for i, p in enumerate(listed))
        return re.compile(regex, re.DOTALL), listed

    def match(self, rel: str, name: str) -> str | None:
        for (regex, listed), target in ((self._by_name, name), (self._by_path, rel)):
            hit = regex.match(target) if regex else None
            if hit:
                assert hit.lastgroup is not None, "every alternative is a named group"
                return listed[int(hit.lastgroup[1:])]
        return None


@dataclass
class _Tally:
    """Mutable counters while walking; frozen into an ArchiveSummary at the end."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    file_bytes: int = 0
    excluded: dict[str, list[int]] = field(default_factory=dict)  # pattern -> [entries, files, bytes]
    skipped: list[str] = field(default_factory=list)
    skipped_count: int = 0
    unchanged: int = 0
    left_out: list[str] = field(default_factory=list)
    left_out_count: int = 0

    def skip(self, rel: str, why: str, lost: bool = False) -> None:
        """An entry not archived as it is; `lost`: it holds data that this backup lacks (an
        unreadable file, a folder that could not be listed), unlike a FIFO or a socket."""
        self.skipped_count += 1
        if len(self.skipped) < _MAX_SKIPPED_LISTED:
            self.skipped.append(f"{rel}: {why}")
        if lost:
            self.left_out_count += 1
            if len(self.left_out) < _MAX_SKIPPED_LISTED:
                self.left_out.append(f"{rel}: {why}")

    def exclude(self, pattern: str, path: str, st: os.stat_result) -> None:
        entry = self.excluded.setdefault(pattern, [0, 0, 0])
        files, size = _du(path, st)
        entry[0] += 1
        entry[1] += files
        entry[2] += size

    def freeze(self, patterns: tuple[str, ...]) -> ArchiveSummary:
        # Only patterns that removed something: the summary says what a restore will lack.
        excluded = tuple(ExcludeStat(p, *self.excluded[p]) for p in patterns if p in self.excluded)
        return ArchiveSummary(
            self.files,
            self.dirs,
            self.symlinks,
            self.hardlinks,
            self.file_bytes,
            excluded,
            tuple(self.skipped),
            self.skipped_count,
            self.unchanged,
            tuple(self.left_out),
            self.left_out_count,
        )


def _du(path: str, st: os.stat_result) -> tuple[int, int]:
    """(files, bytes) under an excluded path, so the summary can say what was left out."""
    if not stat.S_ISDIR(st.st_mode):
        return (1, st.st_size) if stat.S_ISREG(st.st_mode) else (0, 0)
    files = size = 0
    for dirpath, _dirs, names in os.walk(path, onerror=lambda e: None):
        for name in names:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(s.st_mode):
                files, size = files + 1, size + s.st_size
    return files, size


class CountingWriter:
    """A pass-through writer that counts bytes (the tar and zstd sizes for the manifest)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.count = out, 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.count += len(data)
        return len(data)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _field(text: str, width: int) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\0" * (width - len(raw))


def header(
    name: str,
    kind: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: str = "",
    uname: str = "",
    gname: str = "",
) -> bytes:
    """One member's header block(s), as tarfile writes them in PAX format."""
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    simple = (
        len(name) <= 100
        and len(linkname) <= 100
        and len(uname) < 32
        and len(gname) < 32
        and (name + linkname + uname + gname).isascii()
        and 0 <= size < 8**11
        and 0 <= mtime < 8**11
        and 0 <= uid < 8**7
        and 0 <= gid < 8**7
    )
    if not simple:  # long or non-ASCII names, huge values: tarfile adds a PAX extended header
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.size, info.mtime = kind, mode, uid, gid, size, mtime
        info.linkname, info.uname, info.gname = linkname, uname, gname
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    block = bytearray(
        b"".join(
            (
                _field(name, 100),
                _octal(mode & 0o7777, 8),
                _octal(uid, 8),
                _octal(gid, 8),
                _octal(size, 12),
                _octal(mtime, 12),
                b" " * 8,
                kind,
                _field(linkname, 100),
                tarfile.POSIX_MAGIC,
                _field(uname, 32),
                _field(gname, 32),
                b"\0" * 8,
                b"\0" * 8,
                b"\0" * 167,
            )
        )
    )
    block[148:156] = b"%06o\0 " % sum(block)  # checksum over the block with the field blank
    return bytes(block)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class TreeWriter:
    """Writes the tree under `root` into a tar stream on `out` (any writable file object).

    With a `previous` index the stream is an increment in GNU tar's incremental format: files
    and symlinks whose fingerprint is unchanged are left out, and every directory carries a
    GNU.dumpdir record listing what it holds (Y: in this archive, N: unchanged, in an earlier
    one; D: a directory), so that `tar -x --incremental` (and our extraction) deletes what is
    gone. The `index` gets every file and symlink's fingerprint, for the next increment."""

    def __init__(
        self,
        root: Path,
        out: BinaryIO,
        excludes: Iterable[str],
        previous: dict[str, bytes] | None = None,
        index: IndexWriter | None = None,
    ) -> None:
        self.root = Path(root)
        self.excludes = Excludes(excludes)
        self.tally = _Tally()
        self.out = CountingWriter(out)
        self.previous = previous
        self.index = index or IndexWriter(None)
        self._names: dict[tuple[str, int], str] = {}
        self._links: dict[tuple[int, int], str] = {}

    def write(self) -> ArchiveSummary:
        with owneraccess.FolderStack[tuple[str, os.stat_result | None]](("", None)) as stack:
            self._walk(stack)
        # End of archive: two zero blocks, then zeros up to a whole record, as tar does.
        end = 2 * BLOCK
        self.out.write(b"\0" * (end + (-(self.out.count + end) % tarfile.RECORDSIZE)))
        return self.tally.freeze(self.excludes.patterns)

    def _walk(self, stack: owneraccess.FolderStack[tuple[str, os.stat_result | None]]) -> None:
        for rel_dir, dir_st in stack:
            listed, lent = self._list(rel_dir, dir_st)
            stack.hold(lent)  # given back after the folder's subtree, pushed below
            plan = [] if listed is None else self._plan(rel_dir, listed)
            self._add_dir(rel_dir, dir_st, plan if listed is not None else None)
            subdirs = []
            for entry, rel, st, kind in plan:
                if kind == b"D":
                    subdirs.append((rel, st))
                elif kind == b"N":
                    self.index.add(rel, fingerprint(st))
                    self.tally.unchanged += 1
                elif stat.S_ISLNK(st.st_mode):
                    self._add_symlink(entry.path, rel, st)
                else:
                    self._add_file(entry.path, rel, st)
            stack.extend(reversed(subdirs))  # depth-first, in name order

    def _list(
        self, rel_dir: str, st: os.stat_result | None
    ) -> tuple[list[os.DirEntry[str]] | None, owneraccess.Lent | None]:
        """A folder's entries in name order (None if it cannot be listed), and, if the folder
        is ours but shut to us (mode 000, 0300...), the lent mode that let us in: needed until
        everything below it is archived."""
        path = str(self.root / rel_dir) if rel_dir else str(self.root)
        lent = None
        if st is not None and stat.S_IMODE(st.st_mode) & owneraccess.LIST != owneraccess.LIST:
            lent = owneraccess.lend(path, owneraccess.LIST, stat.S_IFDIR)
        while True:
            try:
                with os.scandir(path) as it:
                    return sorted(it, key=lambda e: e.name), lent
            except OSError as e:
                if lent is None and e.errno == errno.EACCES:
                    lent = owneraccess.lend(path, owneraccess.LIST, stat.S_IFDIR)
                    if lent is not None:
                        continue
                gone = e.errno in (errno.ENOENT, errno.ENOTDIR)  # deleted since: nothing is lost
                self.tally.skip(rel_dir or ".", f"cannot list: {e.strerror}", lost=not gone)
                return None, lent

    def _plan(self, rel_dir: str, listed: list[os.DirEntry[str]]) -> list[_Planned]:
        """What becomes of each entry of a directory: D (a directory to descend into), Y (to
        archive) or N (unchanged since the previous index); excluded and special ones are
        left out (and counted)."""
        plan = []
        for entry in listed:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                self._skip_unless_gone(rel, e, "vanished")
                continue
            pattern = self.excludes.match(rel, entry.name)
            if pattern is not None:
                self.tally.exclude(pattern, entry.path, st)
            elif stat.S_ISDIR(st.st_mode):
                plan.append((entry, rel, st, b"D"))
            elif stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                same = self.previous is not None and self.previous.get(rel) == fingerprint(st)
                plan.append((entry, rel, st, b"N" if same else b"Y"))
            else:  # sockets, FIFOs, devices: a restore would refuse them anyway
                self.tally.skip(rel, "special file")
        return plan

    def _add_dir(self, rel: str, st: os.stat_result | None, plan: list[_Planned] | None) -> None:
        """A directory's member. In an increment every directory has one, the top one too (as
        "./"), with its dumpdir; a directory that could not be listed gets none (a restore
        then keeps what earlier backups had in it)."""
        if self.previous is None or plan is None:
            if rel and st is not None:
                self.out.write(self._header(rel, st, tarfile.DIRTYPE))
                self.tally.dirs += 1
            return
        if st is None:
            try:
                st = os.lstat(self.root)
            except OSError as e:
                self.tally.skip(".", e.strerror or "vanished", lost=True)
                return
        dumpdir = b"".join(kind + os.fsencode(entry.name) + b"\0" for entry, _rel, _st, kind in plan) + b"\0"
        if len(dumpdir) > tarstream.MAX_EXTENDED_HEADER:
            # Longer than a restore reads (hundreds of thousands of names): no listing, and
            # everything in it archived, so the restore has all of it; what was deleted in
            # it stays deleted only until a full backup.
            plan[:] = [(entry, path, est, b"D" if kind == b"D" else b"Y") for entry, path, est, kind in plan]
            self.tally.skip(rel or ".", "too many entries to list in an increment: archived whole")
            self.out.write(self._header(rel or ".", st, tarfile.DIRTYPE))
            return
        info = tarfile.TarInfo(rel or ".")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, stat.S_IMODE(st.st_mode), int(st.st_mtime)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname, info.gname = self._name("u", st.st_uid), self._name("g", st.st_gid)
        info.pax_headers = {DUMPDIR: dumpdir.decode("utf-8", "surrogateescape")}
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.tally.dirs += bool(rel)

    def _skip_unless_gone(self, rel: str, error: OSError, why: str) -> None:
        """A file deleted since its folder was listed is not in the backup, as if deleted before:
        nothing was left out. Anything else that stops it from being read is said."""
        if error.errno != errno.ENOENT:
            self.tally.skip(rel, error.strerror or why, lost=True)

    def _add_symlink(self, path: str, rel: str, st: os.stat_result, again: bool = True) -> None:
        try:
            target = os.readlink(path)
        except OSError as e:
            if not (again and e.errno == errno.EINVAL and self._add_swapped(path, rel)):
                self._skip_unless_gone(rel, e, "vanished")
            return
        self.out.write(self._header(rel, st, tarfile.SYMTYPE, linkname=target))
        self.index.add(rel, fingerprint(st))
        self.tally.symlinks += 1

    def _add_swapped(self, path: str, rel: str) -> bool:
        """It changed kind since its folder was listed (a file renamed over a link, or the
        other way round): archive what is there now, once. False if it is neither."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISLNK(st.st_mode):
            self._add_symlink(path, rel, st, again=False)
        elif stat.S_ISREG(st.st_mode):
            self._add_file(path, rel, st, again=False)
        else:
            return False
        return True

    def _add_file(self, path: str, rel: str, st: os.stat_result, again: bool = True) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._links:
            self.out.write(self._header(rel, st, tarfile.LNKTYPE, linkname=self._links[key]))
            self.index.add(rel, fingerprint(st))
            self.tally.hardlinks += 1
            return
        # It was a regular file at lstat time: never read through a symlink swapped in since
        # (O_NOFOLLOW), never wait on a FIFO swapped in since (O_NONBLOCK).
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as e:
            # Ours but without the read bit (mode 000, 0200): read as its owner may, its mode
            # given back before a byte is read, so the header and the index see the real one.
            locked = owneraccess.open_locked_file(path) if e.errno == errno.EACCES else None
            if locked is None:
                if not (again and e.errno == errno.ELOOP and self._add_swapped(path, rel)):
                    self._skip_unless_gone(rel, e, "unreadable")
                return
            fd = locked
        try:
            st = os.fstat(fd)  # the size promised in the header is the size now
            if not stat.S_ISREG(st.st_mode):
                self.tally.skip(rel, "replaced by a special file while being read")
                return
            # Fewer blocks than the size needs: it has holes (a VM image, a preallocated log).
            regions = data_regions(fd, st.st_size) if st.st_blocks * 512 < st.st_size - COPY_CHUNK else None
            if regions is None:
                head, size = self._header(rel, st, tarfile.REGTYPE, size=st.st_size), st.st_size
                short = self._copy(head, _chunks(fd, size), size)
            else:
                head, size = self._sparse_header(rel, st, regions)
                short = self._copy(head, _region_chunks(fd, regions), size)
        finally:
            os.close(fd)
        if short:
            self.tally.skip(rel, "shrank while being read (zero-padded)", lost=True)
        else:  # as it was when opened: a change since makes the next backup take it again
            self.index.add(rel, fingerprint(st))
        if st.st_nlink > 1:
            self._links[key] = rel
        self.tally.files += 1
        self.tally.file_bytes += st.st_size

    def _copy(self, head: bytes, chunks: Iterable[bytes], size: int) -> bool:
        """Header, exactly `size` bytes of data from `chunks`, padding; True if the file came
        up short (it is zero-filled so the stream stays valid; bytes appended since are left
        out)."""
        pending, sent = head, 0
        for data in chunks:
            sent += len(data)
            tail = _padding(size) if sent == size else b""
            # Small files go out as one write (header + data + padding): fewer calls into zstd.
            self.out.write(pending + data + tail if pending or tail else data)
            pending = b""
        short = sent < size
        while sent < size:  # it shrank while being read
            zeros = _ZEROS[: min(COPY_CHUNK, size - sent)]
            sent += len(zeros)
            self.out.write(pending + zeros + (_padding(size) if sent == size else b""))
            pending = b""
        if pending:  # an empty file: its header alone
            self.out.write(pending)
        return short

    def _sparse_header(self, rel: str, st: os.stat_result, regions: list[tuple[int, int]]) -> tuple[bytes, int]:
        """A sparse file's header in GNU tar's PAX 1.0 format, with the start of its data: the
        map of its data regions (decimal numbers, one a line: how many, then offset and size
        of each; padded to a block). The regions' bytes follow, the holes are not stored.
        The ustar name is GNU tar's placeholder, for tars that know no sparse files; the real
        one is GNU.sparse.name. Returns the bytes and how many bytes of data follow."""
        sparse_map = b"%d\n" % len(regions) + b"".join(b"%d\n%d\n" % region for region in regions)
        sparse_map += b"\0" * (-len(sparse_map) % BLOCK)
        data = sum(length for _offset, length in regions)
        placeholder = f"GNUSparseFile.0/{os.path.basename(rel)}"
        info = tarfile.TarInfo(placeholder if len(os.fsencode(placeholder)) <= 100 else "GNUSparseFile.0/file")
        info.type, info.mode, info.mtime = tarfile.REGTYPE, stat.S_IMODE(st.st_mode), int(st.st_mtime)
        info.uid, info.gid, info.size = st.st_uid, st.st_gid, len(sparse_map) + data
        info.uname, info.gname = self._name("u", st.st_uid), self._name("g", st.st_gid)
        info.pax_headers = {
            tarstream.SPARSE_MAJOR: "1",
            tarstream.SPARSE_MINOR: "0",
            tarstream.SPARSE_NAME: rel,
            tarstream.SPARSE_REALSIZE: str(st.st_size),
        }
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + sparse_map, data

    def _header(self, rel: str, st: os.stat_result, kind: bytes, size: int = 0, linkname: str = "") -> bytes:
        return header(
            rel,
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            size,
            int(st.st_mtime),
            linkname,
            self._name("u", st.st_uid),
            self._name("g", st.st_gid),
        )

    def _name(self, kind: str, ident: int) -> str:
        key = (kind, ident)
        if key not in self._names:
            try:
                import grp
                import pwd

                self._names[key] = pwd.getpwuid(ident).pw_name if kind == "u" else grp.getgrgid(ident).gr_name
            except (KeyError, ImportError):
                self._names[key] = ""
        return self._names[key]


_ZEROS = bytes(COPY_CHUNK)


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    """At most `size` bytes of the file, in chunks; fewer if it shrank."""
    left = size
    while left:
        data = os.read(fd, min(COPY_CHUNK, left))
        if not data:
            return
        left -= len(data)
        yield data


# Holes shorter than this are stored as the zeros they read as: a map entry costs more than
# they do. Doubled while a file has more regions than MAX_REGIONS, so that the map stays small.
MIN_HOLE = 64 << 10
MAX_REGIONS = tarstream.MAX_SPARSE_REGIONS // 2


def data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the file's data (SEEK_DATA/SEEK_HOLE), nearby regions joined, and
    a last (size, 0) entry, as GNU tar writes it: a file that ends in a hole gets its size."""
    found: list[tuple[int, int]] = []
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole from here to the end
            break
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        found.append((start, end - start))
        position = end
    min_hole = MIN_HOLE
    while True:
        joined: list[tuple[int, int]] = []
        for start, length in found:
            if joined and start - sum(joined[-1]) < min_hole:
                joined[-1] = (joined[-1][0], start + length - joined[-1][0])
            else:
                joined.append((start, length))
        if len(joined) < MAX_REGIONS:
            return [*joined, (size, 0)]
        min_hole *= 2


def _region_chunks(fd: int, regions: list[tuple[int, int]]) -> Iterator[bytes]:
    """The bytes of each data region in turn, in chunks; fewer if the file shrank."""
    for offset, length in regions:
        os.lseek(fd, offset, os.SEEK_SET)
        read = 0
        for data in _chunks(fd, length):
            yield data
            read += len(data)
        if read < length:
            return


def write_tree(
    root: Path,
    out: BinaryIO,
    excludes: Iterable[str],
    previous: dict[str, bytes] | None = None,
    index: IndexWriter | None = None,
) -> tuple[ArchiveSummary, int]:
    """Write the tar stream (an increment against `previous` if given); returns the summary
    and the stream's size in bytes."""
    writer = TreeWriter(root, out, excludes, previous, index)
    return writer.write(), writer.out.count
