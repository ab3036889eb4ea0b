"""Extracting a backup's tar stream safely into a staging directory, and putting the result
in place."""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmgen.backup.manifest import ArchiveError

COPY_CHUNK = 1 << 20


class _ForwardReader:
    """Full reads, tell() and forward-only seek() over a stream: enough for TarFile's plain
    "r:" mode, which copies member data straight through. ("r|" re-slices a bytes buffer on
    every 512-byte header read, which made extraction several times slower.)"""

    def __init__(self, src: BinaryIO) -> None:
        self.src, self.pos = src, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise ValueError("unbounded read on an archive stream")
        chunks, got = [], 0
        while got < n:
            data = self.src.read(n - got)
            if not data:
                break
            chunks.append(data)
            got += len(data)
        self.pos += got
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self.pos + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self.pos:
            raise tarfile.ReadError("the archive stream can only be read forward")
        while self.pos < target:
            if not self.read(min(COPY_CHUNK, target - self.pos)):
                raise tarfile.ReadError("unexpected end of data")
        return self.pos


class _Guard:
    """Decides what may be extracted into a fresh, empty staging directory, without a syscall
    per member (tarfile's "data" filter realpath()s every path, a third of restore time):
    names are relative with no `..`; nothing is written below or over a symlink taken from
    the archive (the only symlinks that can exist in staging), so no member can land outside;
    hard links point to earlier members the same way; only files, dirs, symlinks and hard
    links; permission bits kept minus setuid/setgid/sticky; ownership left to the caller.
    Symlinks themselves may point anywhere (~/.local/bin/x -> /usr/bin/y is normal in a
    home): they are created, never followed."""

    def __init__(self) -> None:
        self.symlinks: set[str] = set()

    def _path(self, name: str, what: str) -> str:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts or (not parts and what != "path"):
            raise ArchiveError(f"unsafe archive member refused: {what} {name!r}")
        for i in range(1, len(parts) + 1):
            if "/".join(parts[:i]) in self.symlinks:
                raise ArchiveError(f"unsafe archive member refused: {what} {name!r} goes through a symlink")
        return "/".join(parts)

    def check(self, member: tarfile.TarInfo) -> _Member | None:
        """What to extract, None to skip the member (the root entry "./" of GNU tar)."""
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()) or member.sparse:
            raise ArchiveError(f"unsupported archive member refused: {member.name!r} (type {member.type!r})")
        name = self._path(member.name, "path")
        if not name:
            return None
        linkname = member.linkname
        if member.islnk():
            linkname = self._path(member.linkname, "hard link to")
        if member.issym():
            self.symlinks.add(name)
        return _Member(name, member.type, member.mode & 0o777, linkname, member.size, int(member.mtime),
                       member.offset_data)


@dataclass(frozen=True)
class _Member:
    """A checked member: the relative path to create and what it is."""

    name: str
    kind: bytes
    mode: int  # permission bits only: no setuid/setgid/sticky
    linkname: str
    size: int
    mtime: int
    offset_data: int


def extract_stream(src: BinaryIO, dest: Path) -> int:
    """Extract a tar stream into `dest`, a new empty directory; returns the member count.

    TarFile only parses headers here; the members are written with a few plain syscalls each
    (TarFile.extract costs ~10 per file: stats, chown, chmod, isatty...), which made restores
    of many small files half as fast as GNU tar. Memory stays flat: TarFile's member list is
    emptied as we go (it keeps every TarInfo otherwise)."""
    dest_s, guard, count = str(dest), _Guard(), 0
    reader = _ForwardReader(src)
    dirs: list[tuple[str, int, int]] = []  # (path, mode, mtime): a few dozen bytes per directory
    try:
        with tarfile.open(fileobj=reader, mode="r:") as tar:  # type: ignore[call-overload]
            while (member := tar.next()) is not None:
                tar.members.clear()
                safe = guard.check(member)
                if safe is None:
                    continue
                path = os.path.join(dest_s, safe.name)
                _make_parent(path)
                if safe.kind == tarfile.DIRTYPE:
                    if not os.path.isdir(path):
                        os.mkdir(path, 0o700)
                    dirs.append((path, safe.mode, safe.mtime))
                elif safe.kind == tarfile.SYMTYPE:
                    os.symlink(safe.linkname, path)
                elif safe.kind == tarfile.LNKTYPE:
                    os.link(os.path.join(dest_s, safe.linkname), path, follow_symlinks=False)
                else:
                    reader.seek(safe.offset_data)
                    _write_member(reader, path, safe)
                count += 1
    except tarfile.TarError as e:
        raise ArchiveError(f"the archive is not a valid tar stream: {e}") from e
    except FileExistsError as e:
        raise ArchiveError(f"the archive holds {e.filename!r} twice; refusing to overwrite") from e
    # Directory modes and mtimes last, deepest first: a 0500 directory would refuse its
    # children, and each child created would reset the mtime.
    for path, mode, mtime in sorted(dirs, reverse=True):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
        os.chmod(path, mode)
    return count


def _make_parent(path: str) -> None:
    # Our archives list every directory before its contents; others may not.
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o700, exist_ok=True)


def _write_member(reader: _ForwardReader, path: str, member: _Member) -> None:
    # O_EXCL | O_NOFOLLOW: never write over or through anything already there.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        left = member.size
        while left:
            data = reader.read(min(COPY_CHUNK, left))
            if not data:
                raise ArchiveError(f"the archive ends inside {member.name!r}")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            left -= len(data)
        if member.mode != 0o600:
            os.fchmod(fd, member.mode)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)


def chown_tree(root: Path, owner: tuple[int, int]) -> None:
    """Give a restored tree to its user (restores run as root; the archive's owners are not
    applied, the VM's agent user may have another uid than the one that made the backup)."""
    uid, gid = owner
    os.lchown(root, uid, gid)
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(dirpath, name), uid, gid)


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
            os.rename(dest, aside / entry.name)
        os.rename(entry, dest)
