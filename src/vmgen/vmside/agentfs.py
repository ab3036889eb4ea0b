"""Reading, as root, what the agent user wrote: never through its links, never blocking.

Every path below the agent's home is the agent's to shape: any component may become a symlink
to /etc/shadow, the file a FIFO that blocks whoever opens it, /dev/zero, a hard link or 2 GB of
garbage, swapped between a check and its use. So root resolves such a path one component at a
time without following any symlink (openat with O_NOFOLLOW from /), looks at the final object
through an O_PATH descriptor (which opens nothing), and only when fstat says it is a regular file
owned by the expected user reopens that very inode for reading, non-blocking. What it then reads
is capped by the caller.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_ENTRIES = 10_000  # a directory listing past this is cut short: ticks stay cheap


class UnsafeFile(OSError):
    """The path leads through a symlink, or is not a regular file of the expected owner."""


class AgentFiles:
    """Reads files owned by `uid` (the agent) below any path, refusing anything else."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self._refused: set[str] = set()

    @contextmanager
    def open(self, path: Path | str) -> Iterator[BinaryIO]:
        """The regular file at `path`, opened for reading; UnsafeFile, FileNotFoundError or
        another OSError otherwise."""
        fd = self._open_checked(Path(path))
        with os.fdopen(fd, "rb", buffering=0) as f:
            yield f

    def read(self, path: Path | str, limit: int) -> bytes:
        """At most `limit` bytes from the start of the file (a larger file is refused)."""
        with self.open(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise UnsafeFile(f"{path}: {size} bytes, more than the {limit} allowed")
            return f.read(limit)

    def stat(self, path: Path | str) -> os.stat_result:
        """lstat without following any component: the object itself, whatever it is."""
        parent, name = self._parent(Path(path))
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)

    def listdir(self, path: Path | str) -> list[tuple[str, os.stat_result]]:
        """(name, lstat) of each entry of a real directory (not a symlink to one), capped."""
        fd = self._open_dir(Path(path))
        try:
            entries: list[tuple[str, os.stat_result]] = []
            with os.scandir(fd) as it:
                for entry in it:
                    try:
                        entries.append((entry.name, entry.stat(follow_symlinks=False)))
                    except OSError:
                        continue
                    if len(entries) >= MAX_ENTRIES:
                        break
            return entries
        finally:
            os.close(fd)

    def _open_checked(self, path: Path) -> int:
        parent, name = self._parent(path)
        try:
            handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            st = os.fstat(handle)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != self.uid:
                self._note_refusal(path, st)
                raise UnsafeFile(f"{path}: not a regular file owned by uid {self.uid}")
            # The inode just checked, reopened through the kernel's own link to it: no path
            # lookup the agent could redirect, and O_NONBLOCK in case of anything surprising.
            return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        finally:
            os.close(handle)

    def _parent(self, path: Path) -> tuple[int, str]:
        """An O_PATH descriptor of the path's parent directory, reached without following any
        symlink, and the final name."""
        if not path.is_absolute() or not path.name or path.name in (".", ".."):
            raise UnsafeFile(f"{path}: not an absolute path to a file")
        return self._walk(path.parts[1:-1]), path.name

    def _open_dir(self, path: Path) -> int:
        if not path.is_absolute():
            raise UnsafeFile(f"{path}: not an absolute path")
        fd = self._walk(path.parts[1:])
        try:  # O_PATH descriptors cannot be listed: reopen the same inode for reading
            return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(fd)

    @staticmethod
    def _walk(parts: tuple[str, ...]) -> int:
        fd = os.open("/", _DIR_FLAGS)
        try:
            for part in parts:
                if part in ("..", ".", ""):
                    raise UnsafeFile(f"path component {part!r} refused")
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except NotADirectoryError:
                    raise UnsafeFile(f"{part!r} is a symlink or not a directory") from None
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _note_refusal(self, path: Path, st: os.stat_result) -> None:
        key = str(path)
        if key not in self._refused:  # once per path: an attacker must not flood the journal
            self._refused.add(key)
            log.warning(
                "refusing to read %s: %s owned by uid %d (expected a regular file of uid %d)",
                path,
                _kind(st.st_mode),
                st.st_uid,
                self.uid,
            )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "something else"
