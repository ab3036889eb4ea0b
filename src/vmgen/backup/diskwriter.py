"""The filesystem side of an extraction, on its own thread.

Creating a file costs a few syscalls (open, write, fchmod, utime, close), and on ext4 the
open(O_CREAT) alone is ~80 us: most of a restore of many small files. Parsing the tar stream is
Python and holds the GIL; the syscalls do not. So the parser queues every filesystem operation,
in archive order, and this thread carries them out while the parser reads on, the way
`zstd -d | tar -x` splits the work between two processes. One thread, FIFO: operations happen in
exactly the order they would have happened inline (a hard link still finds its target, a file
still finds its directory). Memory is bounded: batches of at most BATCH_BYTES of file data, at
most QUEUED_BATCHES of them waiting."""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import threading
from collections.abc import Callable
from typing import Any

from vmgen.errors import ArchiveError

BATCH_OPS = 256
BATCH_BYTES = 4 << 20
QUEUED_BATCHES = 4
# Runs of zeros at least this long are skipped (a hole) rather than written: a sparse file stays
# sparse, and a restore never fills a disk with the zeros of a 3 GiB image of 4 bytes.
HOLE_BLOCK = 64 << 10
_ZEROS = bytes(HOLE_BLOCK)
_USABLE = 0o700  # a folder the restore writes into; its own mode is set at the end
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DiskWriter:
    """Queue filesystem operations; `finish()` waits for them and raises the first failure.

    A failed operation stops the rest: everything after it is dropped, and the error is raised
    to the parser at its next flush, or by finish()."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._batch: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._batch_bytes = 0
        self._queue: queue.Queue[list[Any] | None] = queue.Queue(maxsize=QUEUED_BATCHES)
        self._stop = threading.Event()
        self._fd = -1  # the file being written, between open_file() and close_file()
        self._ends_in_hole = False  # its last bytes were skipped, not written
        self._known_dirs: set[str] = set()  # parser-side: directories that exist or are queued
        self._thread = threading.Thread(target=self._run, name="extract-writer", daemon=True)
        self._thread.start()

    # ----- parser side -----

    def mkdir(self, path: str) -> None:
        if path not in self._known_dirs:
            self._known_dirs.add(path)
            self._add(_mkdir, path)

    def make_parent(self, path: str) -> None:
        # Our archives list every directory before its contents; others may not. Known
        # directories cost nothing here: no stat per member.
        parent = os.path.dirname(path)
        if parent not in self._known_dirs:
            self._known_dirs.add(parent)
            self._add(os.makedirs, parent, 0o700, True)

    def known_dir(self, path: str) -> None:
        self._known_dirs.add(path)

    def remove_file(self, path: str) -> None:
        """An increment's file, link or symlink replaces what an earlier archive put there."""
        self._add(_remove_file, path)

    def purge(self, path: str, listing: dict[str, str] | None) -> None:
        """Delete what the directory holds and `listing` does not (or lists as another kind);
        without a listing (a folder too large to list) delete nothing. Either way the folder
        becomes writable for what the increment puts in it."""
        self._add(_purge, path, listing)

    def symlink(self, target: str, path: str) -> None:
        self._add(os.symlink, target, path)

    def link(self, source: str, path: str) -> None:
        self._add(_hardlink, source, path)

    def open_file(self, path: str) -> None:
        self._add(self._open, path)

    def write(self, data: bytes | memoryview) -> None:
        self._batch_bytes += len(data)
        self._add(self._write, data)

    def seek(self, offset: int) -> None:
        """Where the file's next bytes go (a sparse file's next region): a hole up to there."""
        self._add(self._seek, offset)

    def close_file(self, mode: int, mtime: int, length: int | None = None) -> None:
        """`length`: the file's size (a sparse file, which may end in a hole)."""
        self._add(self._close, mode, mtime, length)

    def finish(self) -> None:
        """Wait for every queued operation; raise the first one that failed."""
        self._flush()
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Drop what is queued and stop the thread (the parser failed)."""
        self._stop.set()
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join()

    def _add(self, fn: Callable[..., Any], *args: Any) -> None:
        self._batch.append((fn, args))
        if len(self._batch) >= BATCH_OPS or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.error is not None:
            raise self.error
        if self._batch:
            self._queue.put(self._batch)
            self._batch, self._batch_bytes = [], 0

    # ----- writer thread -----

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.error is not None or self._stop.is_set():
                continue  # keep taking batches so the parser never blocks on a full queue
            try:
                for fn, args in batch:
                    fn(*args)
            except BaseException as e:  # noqa: BLE001 - the parsing thread raises it
                self.error = e
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self, path: str) -> None:
        # O_EXCL | O_NOFOLLOW: never write over or through anything already there.
        self._fd = os.open(path, _OPEN_FLAGS, 0o600)

    def _seek(self, offset: int) -> None:
        os.lseek(self._fd, offset, os.SEEK_SET)

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        start = 0  # of the bytes not yet written
        for block in range(0, len(view) - HOLE_BLOCK + 1, HOLE_BLOCK):
            part = view[block : block + HOLE_BLOCK]
            if part[0] == 0 and part[-1] == 0 and part == _ZEROS:
                _write_all(self._fd, view[start:block])
                os.lseek(self._fd, HOLE_BLOCK, os.SEEK_CUR)  # a hole
                start = block + HOLE_BLOCK
        self._ends_in_hole = start == len(view) > 0 or (self._ends_in_hole and not view)
        _write_all(self._fd, view[start:])

    def _close(self, mode: int, mtime: int, length: int | None) -> None:
        fd, self._fd = self._fd, -1
        try:
            if length is not None:
                os.ftruncate(fd, length)
            elif self._ends_in_hole:  # seeking past the end did not make it that long
                os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
            self._ends_in_hole = False
            if mode != 0o600:
                os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        # Only a real directory: with increments, an earlier archive's symlink may be there.
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise


def _remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise ArchiveError(f"the increment would replace the directory {path!r} by a file") from None


def _purge(path: str, listing: dict[str, str] | None) -> None:
    """GNU tar's purge_directory: remove each entry that the dumpdir does not list, or lists
    as a directory while it is none, or as a file while it is a directory. Through the
    directory's own descriptor, opened without following a link: nothing outside is touched.
    The folder becomes writable for what the increment puts in it (an earlier backup may have
    left it read-only, as a Go module cache is); its own mode is set again at the end."""
    # Usable before it is opened: the layer before may have left it at 000 (or 0300), which
    # its owner cannot open but may change. By path: _mkdir has just seen a real folder there,
    # and the open below follows no link that could have been swapped in since.
    os.chmod(path, _USABLE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, _USABLE)
        if listing is None:
            return
        doomed = []
        with os.scandir(fd) as it:
            for entry in it:
                want, is_dir = listing.get(entry.name), entry.is_dir(follow_symlinks=False)
                if want is None or (want == "D") != is_dir:
                    doomed.append((entry.name, is_dir))
        for name, is_dir in doomed:
            if is_dir:
                remove_tree(os.path.join(path, name))
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def remove_tree(top: str) -> None:
    """Delete a folder and everything below it: without recursion (a tree may be thousands of
    levels deep), making read-only folders writable first, never following a link (a link is
    unlinked, a folder is entered only when lstat says it is one)."""
    stack = [(top, False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            os.rmdir(path)
            continue
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            continue
        os.chmod(path, 0o700)
        stack.append((path, True))
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    os.unlink(entry.path)


def _hardlink(source: str, path: str) -> None:
    os.link(source, path, follow_symlinks=False)
