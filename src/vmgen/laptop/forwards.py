"""Ports of a workspace on this machine: `vmgen forward NAME 3000 5432:5433` (without ports: its
dev container's forwardPorts), an ssh -N -L with vmgen's own options (its pinned host key, its
keys), in the foreground until Ctrl-C or in the background (-d) with a record per forward in
vmgen's state folder; and the ports listening on the VM (`ss -Htln` over SSH as the login user)
for `vmgen info`.

A background forward is stopped only after checking that its recorded pid is still that very
ssh (its start time and command line): a pid the kernel handed to another process since is
left alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from ..errors import ForwardFailed, PortInUse, UsageError
from .config import state_dir
from .ssh import SSHTarget

STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class PortPair:
    local: int
    remote: int

    def describe(self, name: str) -> str:
        return f"localhost:{self.local} -> {name}:{self.remote}"


def parse_ports(specs: Sequence[str]) -> tuple[PortPair, ...]:
    """`3000` (the same port on both sides) or `5432:5433` (local:remote), each 1-65535."""
    pairs: list[PortPair] = []
    for spec in specs:
        match = re.fullmatch(r"(\d{1,5})(?::(\d{1,5}))?", spec)
        if match is None:
            raise UsageError(f"port {spec!r}: use PORT or LOCAL:REMOTE (e.g. 3000 or 5432:5433)")
        local = int(match[1])
        remote = int(match[2]) if match[2] else local
        for port in (local, remote):
            if not 1 <= port <= 65535:
                raise UsageError(f"port {spec!r}: ports are 1-65535")
        pairs.append(PortPair(local, remote))
    if not pairs:
        raise UsageError("name at least one port to forward (e.g. `vmgen forward NAME 3000`)")
    locals_ = [pair.local for pair in pairs]
    if len(set(locals_)) != len(locals_):
        raise UsageError("each local port can be forwarded once")
    return tuple(pairs)


def ports_to_forward(specs: Sequence[str], recorded: Sequence[int]) -> tuple[PortPair, ...]:
    """The ports named (parse_ports), or without any the workspace's recorded dev container
    ports (its forwardPorts and appPort, each on the same port here); with neither, the usage
    error of parse_ports."""
    return parse_ports(specs or [str(port) for port in recorded])


def check_local_ports(pairs: Iterable[PortPair]) -> None:
    """Before ssh starts: a local port already taken is one clear line, not ssh's bind error. The
    check binds as ssh does (127.0.0.1, SO_REUSEADDR: a port in TIME_WAIT is free for both)."""
    for pair in pairs:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", pair.local))
            except OSError as exc:
                if exc.errno == errno.EACCES:
                    raise PortInUse(
                        f"local port {pair.local} needs root; forward to one above 1023 "
                        f"(e.g. {pair.local + 8000 if pair.local + 8000 < 65536 else 8080}:{pair.remote})"
                    ) from None
                raise PortInUse(
                    f"local port {pair.local} is in use on this machine; pick another "
                    f"(e.g. `{pair.local + 1 if pair.local < 65535 else 1024}:{pair.remote}`)"
                ) from None


def forward_command(target: SSHTarget, pairs: Iterable[PortPair]) -> list[str]:
    """ssh -N -L for each pair: 127.0.0.1 here; `localhost` there, so a server listening on the
    VM's ::1 only (Node's default for `localhost`) is reached too (sshd tries each address)."""
    command = target.base_command()
    destination = command.pop()
    forwards: list[str] = []
    for pair in pairs:
        forwards += ["-L", f"127.0.0.1:{pair.local}:localhost:{pair.remote}"]
    return [*command, "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveCountMax=3", *forwards, destination]


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process listens on (psutil reads /proc: no connection is made)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return set()
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}


def wait_until_up(process: subprocess.Popen[bytes], pairs: Sequence[PortPair], why_not: Callable[[], str]) -> None:
    """Until ssh listens on every local port; ForwardFailed with ssh's own last line if it ends."""
    wanted = {pair.local for pair in pairs}
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            reason = why_not()
            ended = f"ssh ended before the forward was up (exit {process.returncode})"
            raise ForwardFailed(ended + (f": {reason}" if reason else ""))
        if wanted <= listening_ports(process.pid):
            return
        if time.monotonic() > deadline:
            process.terminate()
            raise ForwardFailed(f"ssh did not open the local port(s) within {STARTUP_SECONDS:.0f}s")
        time.sleep(0.1)  # /proc has no event for a new listening socket


# --- background forwards ----------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardRecord:
    pid: int
    name: str
    pairs: tuple[tuple[int, int], ...]
    started: float  # the process's own start time (psutil's create_time), to recognise it
    argv: tuple[str, ...]
    log: str

    def describe(self) -> str:
        return ", ".join(PortPair(local, remote).describe(self.name) for local, remote in self.pairs)


def forwards_dir(root: Path | None = None) -> Path:
    return (root or state_dir()) / "forwards"


def start_background(
    target: SSHTarget, name: str, pairs: Sequence[PortPair], root: Path | None = None
) -> ForwardRecord:
    """ssh in a session of its own (a terminal's Ctrl-C and vmgen's exit leave it running), its
    output in a log beside its record; returns once it listens on every local port."""
    folder = forwards_dir(root)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = forward_command(target, pairs)
    log = folder / f"{name}-{'-'.join(str(p.local) for p in pairs)}.log"
    with open(log, "wb") as output:
        os.fchmod(output.fileno(), 0o600)
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)

    def why_not() -> str:
        lines = log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    wait_until_up(process, pairs, why_not)
    record = ForwardRecord(
        pid=process.pid,
        name=name,
        pairs=tuple((p.local, p.remote) for p in pairs),
        started=psutil.Process(process.pid).create_time(),
        argv=tuple(argv),
        log=str(log),
    )
    path = folder / f"{process.pid}.json"
    path.write_text(json.dumps(asdict(record)) + "\n")
    path.chmod(0o600)
    return record


def _is_the_forward(record: ForwardRecord) -> bool:
    """The recorded pid is still that ssh: same start time, same command line."""
    try:
        process = psutil.Process(record.pid)
        return abs(process.create_time() - record.started) < 0.05 and tuple(process.cmdline()) == record.argv
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def running_forwards(root: Path | None = None) -> list[ForwardRecord]:
    """The background forwards still running; records of ended ones are removed."""
    folder = forwards_dir(root)
    found: list[ForwardRecord] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            data = json.loads(path.read_text())
            record = ForwardRecord(
                pid=int(data["pid"]),
                name=str(data["name"]),
                pairs=tuple((int(a), int(b)) for a, b in data["pairs"]),
                started=float(data["started"]),
                argv=tuple(str(word) for word in data["argv"]),
                log=str(data["log"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # not one vmgen wrote whole: nothing to stop by it
            continue
        if _is_the_forward(record):
            found.append(record)
        else:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(record.log).unlink()
    return sorted(found, key=lambda r: (r.name, r.pairs))


def stop_background(name: str | None, root: Path | None = None) -> list[ForwardRecord]:
    """Stop the background forwards of NAME (all without one); returns those stopped."""
    stopped = []
    for record in running_forwards(root):
        if name is not None and record.name != name:
            continue
        if _is_the_forward(record):  # checked again right before the signal
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                psutil.Process(record.pid).wait(timeout=5)
        (forwards_dir(root) / f"{record.pid}.json").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(record.log).unlink()
        stopped.append(record)
    return stopped


# --- what listens on the VM -------------------------------------------------------------------


LISTENING_COMMAND = ("ss", "-Htln")


def parse_listening(output: str) -> dict[int, list[str]]:
    """`ss -Htln` lines -> each port with the addresses it listens on (`*`, `127.0.0.1`, `[::1]`)."""
    ports: dict[int, list[str]] = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        address, _, port = words[3].rpartition(":")
        if not port.isdigit() or not address:
            continue
        address = address.split("%", 1)[0] or address  # 127.0.0.53%lo: the interface is noise
        ports.setdefault(int(port), [])
        if address not in ports[int(port)]:
            ports[int(port)].append(address)
    return dict(sorted(ports.items()))
