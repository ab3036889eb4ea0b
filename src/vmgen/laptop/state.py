"""Per-workspace local state in the XDG state dir: pinned host key, provider, seed files.

Everything here is written 0600 in 0700 directories: it is the laptop's half of a workspace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..contract.names import AGENT_SESSION, agent_session
from ..errors import NameBusy
from .config import state_dir
from .values import SSHEndpoint, UptimeLog


@dataclass(frozen=True)
class WorkspaceRecord:
    name: str
    provider: str
    created_at: float
    source: str
    agent: str
    host: str = ""  # the public hostname, when launched with a domain
    backup_store: str = ""  # where its backups go (the store's description); "" without backups
    preview_host: str = ""  # with a preview domain: where its previews live (p3000.<this>)
    # The repository's folder on the VM (a workspace restored under another name keeps the
    # original's); "" in records made before it was kept: /home/agent/work/<name>.
    repo_dir: str = ""
    # Its dev container's forwardPorts and appPort's container ports: what `vmgen forward NAME`
    # forwards when given no ports.
    forward_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class SshReach:
    """How vmgen last reached a workspace that came up (its SSH endpoint and the keys it logged in
    with): what its `ssh vmgen-<name>` entry says (sshconfig.py)."""

    endpoint: SSHEndpoint
    identities: tuple[Path, ...] = ()


def ssh_alias(name: str) -> str:
    """`vmgen-<name>`: the Host of its ~/.ssh entry, and the name its host key is pinned under."""
    return f"vmgen-{name}"


class WorkspaceState:
    # Present while the workspace's backup identity is as new as the workspace and it has not
    # come up yet: if it never does, the identity goes with it (nothing was encrypted to it).
    NEW_IDENTITY = "new-identity"
    # Present from the record's creation until the workspace came up: without it, a record whose
    # server is gone is that of a workspace that was deleted later (by its own idle watchdog).
    LAUNCHING = "launching"
    # How it was reached once it came up (a launch, restore or start); absent before, and gone once
    # it is known to be gone (`vmgen list`): the entries of ~/.ssh/vmgen/config are made from it.
    SSH_REACH = "ssh.json"
    # The key this machine signs a running workspace's new share of the budget with (root on the
    # VM holds the same one; contract.budgetgrant). Absent for workspaces of an older vmgen.
    BUDGET_KEY = "budget-key"
    # What this machine saw of its uptime (stops, starts, when it was found gone, its price): what
    # `vmgen cost` counts it by (cost.py), kept until `vmgen destroy` forgets the workspace.
    UPTIME = "uptime.json"

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        self.dir = (root or state_dir()) / "workspaces" / name

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def host_alias(self) -> str:
        """The name SSH pins the host key under, independent of address and port."""
        return ssh_alias(self.name)

    def exists(self) -> bool:
        return (self.dir / "workspace.json").is_file()

    def any_left(self) -> bool:
        """Anything at all under this name, a half-written record included."""
        return self.dir.exists()

    def cut_short(self) -> bool:
        """What a launch that never came up left: a half-written record or one still launching."""
        return self.any_left() and (not self.exists() or self.has(self.LAUNCHING))

    def has(self, filename: str) -> bool:
        return (self.dir / filename).exists()

    def discard(self, filename: str) -> None:
        (self.dir / filename).unlink(missing_ok=True)

    def create(self, record: WorkspaceRecord, host_public_key: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self.write("workspace.json", json.dumps(asdict(record), indent=2) + "\n")
        self.write("known_hosts", f"{self.host_alias} {host_public_key}\n")

    @property
    def agent_session(self) -> str:
        """The tmux session its agent runs in: named for the agent (Claude Code's without a record)."""
        record = self.record()
        try:
            return agent_session(record.agent) if record else AGENT_SESSION
        except ValueError:
            return AGENT_SESSION

    def record(self) -> WorkspaceRecord | None:
        try:
            data = json.loads((self.dir / "workspace.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if isinstance(data.get("forward_ports"), list):
            data["forward_ports"] = tuple(data["forward_ports"])
        return WorkspaceRecord(**data)

    def write(self, filename: str, content: str) -> Path:
        path = self.dir / filename
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.chmod(path, 0o600)
        return path

    def record_reach(self, reach: SshReach) -> None:
        endpoint = reach.endpoint
        document = {
            "host": endpoint.host,
            "port": endpoint.port,
            "user": endpoint.user,
            "identities": [str(path) for path in reach.identities],
        }
        self.write(self.SSH_REACH, json.dumps(document, indent=2) + "\n")

    def reach(self) -> SshReach | None:
        try:
            data = json.loads((self.dir / self.SSH_REACH).read_text())
            endpoint = SSHEndpoint(str(data["host"]), int(data["port"]), str(data["user"]))
            return SshReach(endpoint, tuple(Path(str(path)) for path in data.get("identities", ())))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none recorded, or not one vmgen wrote: no entry rather than a wrong one

    def uptime(self) -> UptimeLog:
        try:
            data = json.loads((self.dir / self.UPTIME).read_text())
            price = data.get("price_hourly")
            return UptimeLog(
                stops=tuple((float(since), None if until is None else float(until)) for since, until in data["stops"]),
                seen_at=float(data.get("seen_at", 0.0)),
                gone_at=float(data.get("gone_at", 0.0)),
                price_hourly=None if price is None else float(price),
                currency=str(data.get("currency", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return UptimeLog()  # none recorded (an older vmgen), or not one vmgen wrote: from now on

    def record_uptime(self, log: UptimeLog) -> None:
        """Written only when it changed and the workspace's folder is there (not for a stranger's)."""
        if log != self.uptime() and self.exists():
            self.write(self.UPTIME, json.dumps(asdict(log), indent=2) + "\n")

    def budget_key(self) -> str:
        try:
            return (self.dir / self.BUDGET_KEY).read_text().strip()
        except FileNotFoundError:
            return ""

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def all_records(root: Path | None = None) -> list[WorkspaceRecord]:
    base = (root or state_dir()) / "workspaces"
    if not base.is_dir():
        return []
    records = (WorkspaceState(p.name, root).record() for p in sorted(base.iterdir()))
    return [r for r in records if r is not None]


def failed_boot_log(name: str, root: Path | None = None) -> Path:
    """Where a failed boot's provisioning log is kept on this machine: the workspace it came from
    is removed, its log is not."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return (root or state_dir()) / "logs" / f"{name}-{stamp}-provision.log"


def _lock_path(name: str, root: Path | None) -> Path:
    # Beside the workspaces' folders, not in one: a launch removes and remakes its folder.
    return (root or state_dir()) / "locks" / f"{name}.lock"


@contextmanager
def name_lock(name: str, doing: str, root: Path | None = None) -> Iterator[None]:
    """Held by the one vmgen that launches, restores or destroys NAME, for as long as it does:
    a second one is refused at once, before it looks at (or removes) anything of the first's.
    The kernel releases it with the process, however that ends (kill -9 too): no stale locks."""
    path = _lock_path(name, root)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            who = f"pid {holder[0]}, {' '.join(holder[1:])}" if holder else "another vmgen"
            raise NameBusy(
                f"{name!r} is busy: another vmgen is working on it right now ({who}); wait for it, "
                f"or interrupt it (Ctrl-C removes what a launch made)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {doing}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def busy_with(name: str, root: Path | None = None) -> str:
    """What another vmgen is doing with NAME right now ("launching"), or "" when none is."""
    path = _lock_path(name, root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            return " ".join(holder[1:]) or "busy"
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return ""
    finally:
        os.close(fd)


def write_atomically(path: Path, content: bytes, mode: int) -> None:
    """A temp file beside it (a leading dot: no glob of config files picks it up), synced, renamed."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.vmgen-")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
