"""Root's side of incremental backups: keeping the file index between backups.

The index is made by the stage that walks the agent's home (as the agent) and comes back over
a pipe; root stores the bytes in a folder only root can read, next to a note of the backup they
describe, and hands them to the next backup's walk as a read-only descriptor. Root caps what it
takes (index.MAX_BYTES), never parses it, and never waits on it for long: the stage is the
agent's process. An index becomes the one the next backup builds on only once the backup it
describes is complete (its manifest written): a failed backup leaves the previous one in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from vmgen.backup import index

# How long root waits, once the stage has ended, for the rest of an index it is still sending.
_DRAIN_SECONDS = 10.0


@dataclass(frozen=True)
class IndexState:
    """Which backup the kept index describes, and so what the next increment builds on."""

    workspace: str
    recipient: str
    backup_id: str
    depth: int


class IndexReceiver(threading.Thread):
    """Reads an index from a stage into a new root-only file in the keeper's folder. The stage
    writes to `write_fd` (to be passed to it, then closed here by `sent()`)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(name="index-receiver", daemon=True)
        self._read_fd, self.write_fd = os.pipe()
        self.path = folder / f".index-{secrets.token_hex(4)}"
        self._out = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.complete = False
        self.error: OSError | None = None  # why root could not keep it (a full disk)
        self._halt = threading.Event()
        self.start()

    def sent(self) -> None:
        """The stage has its copy of the write end: ours goes, so its exit means EOF."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def run(self) -> None:
        taken = 0
        try:
            while not self._halt.is_set():
                ready, _, _ = select.select([self._read_fd], [], [], 0.5)
                if not ready:
                    continue
                data = os.read(self._read_fd, 1 << 20)
                if not data:
                    self.complete = True
                    return
                taken += len(data)
                if taken > index.MAX_BYTES:
                    return  # too large to be of use: the stage's further writes fail, quietly
                while data:
                    data = data[os.write(self._out, data) :]
        except OSError as exc:
            self.error = exc
            return
        finally:
            os.close(self._read_fd)
            os.close(self._out)

    def finish(self) -> bool:
        """Wait (a bounded time) for the end of the index; True if it came whole."""
        self.sent()
        self.join(_DRAIN_SECONDS)
        self._halt.set()
        self.join()
        if not self.complete:
            self.discard()
        return self.complete

    def discard(self) -> None:
        self.sent()
        self._halt.set()
        if self.is_alive():
            self.join()
        self.path.unlink(missing_ok=True)


class IndexKeeper:
    """The folder (root's, 0700) where the index of the last backup or restore is kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.index = self.folder / "index"
        self.state = self.folder / "state.json"

    def _ensure(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)

    def previous(self, workspace: str, recipient: str) -> IndexState | None:
        """The kept index's state if it describes a backup of this workspace to this recipient."""
        try:
            raw = json.loads(self.state.read_text())
            state = IndexState(**raw)
        except (OSError, ValueError, TypeError):
            return None
        if state.workspace != workspace or state.recipient != recipient or not self.index.is_file():
            return None
        return state

    def open_index(self) -> int:
        """A read-only descriptor of the kept index, for the walk to read (never its path)."""
        return os.open(self.index, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def receive(self) -> IndexReceiver:
        self._ensure()
        return IndexReceiver(self.folder)

    def commit(self, received: IndexReceiver, state: IndexState) -> None:
        """Make the received index the one the next backup builds on (if it came whole)."""
        if not received.finish():
            self.forget()
            return
        os.replace(received.path, self.index)
        tmp = self.folder / f".state-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(state), f)
        os.replace(tmp, self.state)

    def forget(self) -> None:
        """No index: the next backup is a full one."""
        for path in (self.state, self.index):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
