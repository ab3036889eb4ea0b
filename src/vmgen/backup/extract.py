"""Extracting a backup's tar stream safely into a staging directory, and putting the result
in place."""

from __future__ import annotations

import errno
import math
import os
import secrets
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmgen.backup.diskwriter import DiskWriter
from vmgen.backup.tarstream import DUMPDIR, TarReader
from vmgen.errors import ArchiveError

if TYPE_CHECKING:
    from vmgen.backup.store import Readable

COPY_CHUNK = 1 << 20
# Failures of the disk, not of what the archive asks for: said as they are.
_NOT_THE_ARCHIVE = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
# Modification times are kept within what every filesystem and os.utime take.
_MTIME_MAX = 253402300799  # 9999-12-31
# Names as trees of their parts; a part is never empty, so "" marks a node that is a symlink.
_Parts = dict[str, "_Parts"]
_SYMLINK = ""


class _Guard:
    """Decides what may be extracted into a fresh, empty staging directory, without a syscall
    per member (tarfile's "data" filter realpath()s every path, a third of restore time):
    names are relative with no `..`; nothing is written below or over a symlink taken from
    the archive (the only symlinks that can exist in staging), so no member can land outside;
    hard links point to earlier members the same way; only files, dirs, symlinks and hard
    links; permission bits kept minus setuid/setgid/sticky; ownership left to the caller.
    Symlinks themselves may point anywhere (~/.local/bin/x -> /usr/bin/y is normal in a
    home): they are created, never followed.

    An increment is extracted over the tree its chain made so far, where symlinks of earlier
    archives exist too. It lists every directory (with its dumpdir) before what is in it, so
    a member is taken only below a directory member of this very archive, each listed once:
    that member made it a real directory (DiskWriter.mkdir refuses anything else), and the
    dumpdir's purge has removed whatever of the old tree is not listed."""

    def __init__(self, increment: bool = False) -> None:
        # The archive's symlinks so far, as a tree of their names' parts: a member's parts walk
        # down it one lookup each, so a member N directories deep costs N lookups, not the N
        # joined paths of up to N parts each (a 1,500-deep tree took seconds of CPU that way).
        self.symlinks: _Parts = {}
        self.increment = increment
        self.dirs: set[str] = set()  # an increment's directory members so far

    def _path(self, name: str, what: str) -> str:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts or (not parts and what != "path"):
            raise ArchiveError(f"unsafe archive member refused: {what} {name!r}")
        node = self.symlinks
        for part in parts:
            below = node.get(part)
            if below is None:
                break
            if _SYMLINK in below:
                raise ArchiveError(f"unsafe archive member refused: {what} {name!r} goes through a symlink")
            node = below
        return "/".join(parts)

    def _add_symlink(self, name: str) -> None:
        node = self.symlinks
        for part in name.split("/"):
            node = node.setdefault(part, {})
        node[_SYMLINK] = {}

    def check(self, member: tarfile.TarInfo) -> _Member | None:
        """What to extract, None to skip the member (the root entry "./" of GNU tar, unless it
        is an increment's, with the top directory's dumpdir)."""
        supported = member.isreg() or member.isdir() or member.issym() or member.islnk()
        if not supported or member.type == tarfile.GNUTYPE_SPARSE:  # older sparse formats are "S"
            raise ArchiveError(f"unsupported archive member refused: {member.name!r} (type {member.type!r})")
        name = self._path(member.name, "path")
        if not name and not (self.increment and member.isdir()):
            return None
        linkname = member.linkname
        if member.islnk():
            linkname = self._path(member.linkname, "hard link to")
        listing = None
        if self.increment:
            listing = self._check_increment(member, name, linkname)
        if member.issym():
            self._add_symlink(name)
        mtime = int(min(max(member.mtime, 0), _MTIME_MAX)) if math.isfinite(member.mtime) else 0
        # A sparse file's regions: TarReader checked them (and the size is the real one).
        regions: list[tuple[int, int]] | None = member.sparse  # type: ignore[assignment]
        sparse = tuple(regions) if regions else None
        return _Member(name, member.type, member.mode & 0o777, linkname, member.size, mtime, listing, sparse)

    def _check_increment(self, member: tarfile.TarInfo, name: str, linkname: str) -> dict[str, str] | None:
        for path, what in ((name, "path"), *([(linkname, "hard link to")] if member.islnk() else [])):
            if path and os.path.dirname(path) not in self.dirs:
                raise ArchiveError(
                    f"unsafe archive member refused: {what} {path!r} is outside the increment's directories"
                )
        if not member.isdir():
            return None
        if name in self.dirs:
            raise ArchiveError(f"the increment lists the directory {name or '.'!r} twice")
        self.dirs.add(name)
        dumpdir = member.pax_headers.get(DUMPDIR)
        return None if dumpdir is None else parse_dumpdir(dumpdir, name)


@dataclass(frozen=True)
class _Member:
    """A checked member: the relative path to create and what it is."""

    name: str
    kind: bytes
    mode: int  # permission bits only: no setuid/setgid/sticky
    linkname: str
    size: int
    mtime: int
    # An increment's directory: what it holds (name -> Y, N or D); the rest is deleted.
    listing: dict[str, str] | None = None
    # A sparse file: (offset, length) of each region of data; the rest of `size` is holes.
    sparse: tuple[tuple[int, int], ...] | None = None


def parse_dumpdir(value: str, where: str) -> dict[str, str]:
    """A GNU dumpdir: entries `<kind><name>` each ended by NUL, an empty one at the end. We
    write only Y (in this archive), N (in an earlier one) and D (a directory); GNU tar's
    rename records (R, T, X) and anything else are refused, as are names that are not a
    single path component."""
    listing: dict[str, str] = {}
    for entry in value.split("\0"):
        if not entry:
            continue
        kind, name = entry[0], entry[1:]
        if kind not in "YND" or name in ("", ".", "..") or "/" in name:
            raise ArchiveError(f"unsafe archive member refused: directory {where or '.'!r} lists {entry!r}")
        listing[name] = kind
    return listing


def extract_stream(src: Readable, dest: Path, increment: bool = False) -> int:
    """Extract a tar stream into `dest`, a new empty directory, or, for an increment, the tree
    its chain made so far (files it holds replace theirs, what its dumpdirs do not list is
    deleted); returns the member count.

    Members are written with a few plain syscalls each (TarFile.extract costs ~10 per file:
    stats, chown, chmod, isatty...), on a DiskWriter thread while this one parses on (see
    tarstream.py and diskwriter.py). Memory stays flat: nothing is kept per member but a
    few dozen bytes per directory, and the writer's queue is bounded."""
    dirs: list[tuple[str, int, int]] = []  # (path, mode, mtime)
    writer = DiskWriter()
    try:
        try:
            tar = TarReader(lambda: src.read(COPY_CHUNK))
            count = _extract_all(tar, _Guard(increment), writer, str(dest), dirs)
            writer.finish()
        except BaseException as e:
            writer.abort()
            # A failed write concerns an earlier member than whatever the parser hit since.
            if writer.error is not None and writer.error is not e:
                raise writer.error from None
            raise
        # Directory modes and mtimes last, deepest first: a 0500 directory would refuse its
        # children, and each child created would reset the mtime.
        for path, mode, mtime in sorted(dirs, reverse=True):
            os.utime(path, (mtime, mtime), follow_symlinks=False)
            os.chmod(path, mode)
    except FileExistsError as e:
        raise ArchiveError(f"the archive holds {e.filename!r} twice; refusing to overwrite") from e
    except (OSError, ValueError) as e:  # a link to nowhere, a NUL in a name: the archive's doing
        if isinstance(e, OSError) and e.errno in _NOT_THE_ARCHIVE:
            raise
        raise ArchiveError(f"the archive cannot be extracted: {e}") from e
    return count


def _extract_all(tar: TarReader, guard: _Guard, writer: DiskWriter, dest: str, dirs: list[tuple[str, int, int]]) -> int:
    """Parse every member and queue its creation; returns the member count."""
    count = 0
    writer.known_dir(dest)
    while (member := tar.next()) is not None:
        safe = guard.check(member)
        if safe is None:
            continue
        path = os.path.join(dest, safe.name) if safe.name else dest
        if guard.increment:
            _queue_replacement(writer, path, safe)
            if not safe.name:  # the top directory (the staging folder): its dumpdir only
                continue
        _queue_member(tar, writer, dest, path, safe)
        if safe.kind == tarfile.DIRTYPE:
            dirs.append((path, safe.mode, safe.mtime))
        count += 1
    return count


def _queue_member(tar: TarReader, writer: DiskWriter, dest: str, path: str, member: _Member) -> None:
    writer.make_parent(path)
    if member.kind == tarfile.DIRTYPE:
        writer.mkdir(path)
    elif member.kind == tarfile.SYMTYPE:
        writer.symlink(member.linkname, path)
    elif member.kind == tarfile.LNKTYPE:
        writer.link(os.path.join(dest, member.linkname), path)
    elif member.sparse is not None:
        writer.open_file(path)
        _write_regions(tar, writer, member.name, member.sparse)
        writer.close_file(member.mode, member.mtime, length=member.size)
    else:
        writer.open_file(path)
        left = member.size
        for data in tar.data():
            writer.write(data)
            left -= len(data)
        if left:
            raise ArchiveError(f"the archive ends inside {member.name!r}")
        writer.close_file(member.mode, member.mtime)


def _write_regions(tar: TarReader, writer: DiskWriter, name: str, regions: tuple[tuple[int, int], ...]) -> None:
    """A sparse file's data, each region at its offset; what lies between stays a hole."""
    pending = iter([region for region in regions if region[1]])
    left = 0
    for data in tar.data():
        view, at = memoryview(data), 0
        while at < len(view):
            if not left:
                offset, left = next(pending)  # the reader checked: the data fits the regions
                writer.seek(offset)
            piece = view[at : at + left]
            writer.write(piece)
            at += len(piece)
            left -= len(piece)
    if left or next(pending, None) is not None:
        raise ArchiveError(f"the archive ends inside {name!r}")


def _queue_replacement(writer: DiskWriter, path: str, member: _Member) -> None:
    """What an increment's member does to the tree before it is written: a directory deletes
    what its dumpdir does not list; anything else takes the place of what is there."""
    if member.kind != tarfile.DIRTYPE:
        writer.remove_file(path)
    else:
        writer.mkdir(path)
        writer.purge(path, member.listing)


def staging_path(target: Path, backup_id: str, merge: bool) -> Path:
    """Where a restore stages its tree, on the target's filesystem so that moving into place
    is a rename: inside the target when merging into it (the agent's home, where the
    restoring user may create folders), else beside it."""
    name = f".vmgen-restore-{backup_id}-{secrets.token_hex(4)}"
    return target / name if merge else target.parent / name


def make_staging(target: Path, staging: Path, merge: bool) -> None:
    """The new, empty staging folder (and the target, or its parent, if missing)."""
    (target if merge else target.parent).mkdir(parents=True, exist_ok=True)
    staging.mkdir(mode=0o700)


def keep_current(target: Path, staging: Path, keep: list[str]) -> None:
    """Files of the target that win over the backup's (the new VM's authorized_keys): copied
    into the staged tree before it moves in. Only regular files, never through a symlink."""
    for rel in keep:
        try:
            fd = os.open(target / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):
                continue
            content = src.read()
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest.unlink(missing_ok=True)
        fd = os.open(
            dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, stat.S_IMODE(st.st_mode)
        )
        with os.fdopen(fd, "wb") as out:
            out.write(content)


def move_into_place(staging: Path, target: Path) -> None:
    """Rename the staged tree in. If `target` exists, its other entries stay; an entry also in
    the backup is replaced, the old one moved aside into staging (deleted with it)."""
    if not target.exists():
        os.rename(staging, target)
        return
    aside = staging / f".replaced-{os.getpid()}"
    for entry in sorted(staging.iterdir()):
        dest = target / entry.name
        if dest.exists() or dest.is_symlink():
            aside.mkdir(exist_ok=True)
            _rename(dest, aside / entry.name)
        _rename(entry, dest)


def _rename(source: Path, dest: Path) -> None:
    """A folder moved to another parent needs its owner's write bit (its ".." changes): one
    the backup holds at 000 or 0555 gets it for the move, and its mode back after."""
    st = os.lstat(source)
    locked = stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IWUSR
    if locked:
        os.chmod(source, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
    os.rename(source, dest)
    if locked:
        os.chmod(dest, stat.S_IMODE(st.st_mode))
