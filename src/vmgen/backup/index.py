"""The file index an increment is made against: for every file and symlink of the last backup
(or of the tree a restore made), a fingerprint of its stat: kind, size, mtime, ctime, inode.
Same fingerprint, same contents as far as a backup can tell (restic and GNU tar decide the same
way); ctime catches contents written back with an old mtime (`cp -p`, `touch -r`), since
nobody but the kernel can set it.

The index is written and read only by the stages that walk the agent's home (as the agent);
root keeps the bytes between backups where the agent cannot change them (a file of root's),
caps their size and never parses them. A damaged or hostile index costs the next backup its
shortcut, nothing else: what cannot be read is treated as absent, so every file counts as
changed.

Format: b"vmgen-index 1\\n", then per entry `fingerprint TAB path NUL` (a path has no NUL; a
fingerprint has no TAB)."""

from __future__ import annotations

import contextlib
import os
import stat
from typing import BinaryIO

from vmgen.backup import owneraccess

MAGIC = b"vmgen-index 1\n"
# What the stage will read of a previous index: ~70 bytes an entry, so ~3.5 million files.
MAX_BYTES = 256 << 20


def fingerprint(st: os.stat_result) -> bytes:
    kind = b"l" if stat.S_ISLNK(st.st_mode) else b"f"
    return b"%s%d.%d.%d.%d" % (kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def load(fd: int) -> dict[str, bytes]:
    """The index on `fd` (closed here); empty if it is not one, too large or unreadable."""
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_BYTES + 1)
        except OSError:
            return {}
    if len(data) > MAX_BYTES or not data.startswith(MAGIC):
        return {}
    entries: dict[str, bytes] = {}
    for record in data[len(MAGIC) :].split(b"\0"):
        fp, tab, path = record.partition(b"\t")
        if tab and path:
            entries[os.fsdecode(path)] = fp
    return entries


class IndexWriter:
    """Writes entries as the walk finds them; a writer to nowhere when there is no `out`. A
    failed write (root stopped taking the index: too large) ends the index, not the walk."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self._write(MAGIC)

    @classmethod
    def to_fd(cls, fd: int | None) -> IndexWriter:
        # Closed by close(), the end of the walk that writes it.
        return cls(open(fd, "wb", buffering=1 << 20) if fd is not None else None)

    def add(self, rel: str, fp: bytes) -> None:
        if self.out is not None:
            self._write(b"%s\t%s\0" % (fp, os.fsencode(rel)))

    def _write(self, data: bytes) -> None:
        if self.out is None:
            return
        try:
            self.out.write(data)
        except OSError:
            self.close()

    def close(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()


def walk(root: str, skip: frozenset[str], out: IndexWriter) -> None:
    """Index the tree under `root` as a restore left it (files and symlinks; `skip` are
    relative paths left out so the next backup takes them whatever their stat says). Folders
    of ours that are shut to us (mode 000) are opened as the backup's walk opens them."""
    with owneraccess.FolderStack(("", 0o700)) as stack:
        for rel_dir, mode in stack:
            path = os.path.join(root, rel_dir) if rel_dir else root
            if mode & owneraccess.LIST != owneraccess.LIST:
                stack.hold(owneraccess.lend(path, owneraccess.LIST, stat.S_IFDIR))
            try:
                with os.scandir(path) as it:
                    entries = list(it)
            except OSError:
                continue
            folders = []
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    folders.append((rel, stat.S_IMODE(st.st_mode)))
                elif (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) and rel not in skip:
                    out.add(rel, fingerprint(st))
            stack.extend(folders)
