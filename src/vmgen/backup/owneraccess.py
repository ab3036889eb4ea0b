"""Getting into what its owner has shut itself out of: a folder of mode 000, a file of 0200.

The stages that read and write the agent's home run as the agent, the owner of what is there.
The kernel lets an owner change the mode of what it cannot read, so such a stage adds the
owner's read (and, for a folder, search) bits, opens it, and puts the mode back through the
descriptor it opened (fchmod: exactly that inode). Only the owner's bits are ever added. The
mode is added by path (an O_PATH descriptor takes no fchmod, and /proc/self/fd is root's in a
process that switched users): if the agent swaps a link in between, the open that follows
(O_NOFOLLOW) fails or finds another inode, and at worst one more of the agent's own files got
its owner's read bit; the stage runs as the agent, so it can do nothing the agent could not."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

READ = 0o400  # what a file needs to be read
LIST = 0o500  # what a folder needs to be listed and entered
USE = 0o700  # what a folder needs for a restore to write into it
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Lent:
    """An open folder or file whose mode was changed so that its owner got in."""

    def __init__(self, fd: int, mode: int) -> None:
        self.fd = fd
        self.mode = mode  # its permission bits before

    def give_back(self) -> None:
        """Its mode as it was, and the descriptor closed."""
        try:
            with contextlib.suppress(OSError):
                os.fchmod(self.fd, self.mode)
        finally:
            os.close(self.fd)


def lend(path: str, bits: int, kind: int) -> Lent | None:
    """Open `path` after adding the owner's `bits` to its mode, if it is of `kind`
    (stat.S_IFDIR or S_IFREG), ours, and lacks them. None if not (another's, another kind,
    gone, swapped meanwhile), and as root, whom no mode keeps out."""
    if os.geteuid() == 0:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_IFMT(st.st_mode) != kind or st.st_uid != os.geteuid() or mode & bits == bits:
        return None
    try:
        os.chmod(path, mode | bits)
    except OSError:
        return None
    try:
        fd = os.open(path, _OPEN | (os.O_DIRECTORY if kind == stat.S_IFDIR else 0))
    except OSError:
        with contextlib.suppress(OSError):
            os.chmod(path, mode)  # it did not let us in: as it was
        return None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)  # swapped since the lstat: not what was asked for
        return None
    return Lent(fd, mode)


def open_locked_file(path: str) -> int | None:
    """A descriptor for reading the regular file `path`, ours but without its read bit (mode
    000, 0200): the bit is lent for the open and given back at once, since an open descriptor
    reads on whatever the mode says after. None if it is not such a file."""
    lent = lend(path, READ, stat.S_IFREG)
    if lent is None:
        return None
    fd = os.dup(lent.fd)
    lent.give_back()
    return fd


class FolderStack(Generic[T]):
    """A depth-first walk's folders to visit, and the modes lent to enter them: a mode held
    with hold() is given back once everything pushed after it was walked, and, whatever
    happens, when the walk's `with` block ends."""

    def __init__(self, first: T) -> None:
        self._items: list[T | Lent] = [first]

    def __enter__(self) -> FolderStack[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        for item in self._items:
            if isinstance(item, Lent):
                item.give_back()
        self._items.clear()

    def __iter__(self) -> Iterator[T]:
        while self._items:
            item = self._items.pop()
            if isinstance(item, Lent):
                item.give_back()
            else:
                yield item

    def hold(self, lent: Lent | None) -> None:
        if lent is not None:
            self._items.append(lent)

    def extend(self, folders: Iterable[T]) -> None:
        self._items.extend(folders)
