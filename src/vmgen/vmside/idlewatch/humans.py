"""Is a human connected? SSH sessions, attached tmux clients, web/desktop connections, leases.

Everything is re-read every tick (never cached): a session that ended must stop counting at
once, and one that started must count before the countdown runs out.
"""

from __future__ import annotations

import glob
import json
import logging
import pwd
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from .model import Lease

log = logging.getLogger(__name__)

# "sshd: agent@pts/0", "sshd: agent@notty" (OpenSSH <= 9.7) and "sshd-session: agent@pts/0"
# (9.8+, where each session is its own sshd-session binary). "[priv]"/"[preauth]" processes
# are the privileged half or an unauthenticated client: not a session.
SSHD_SESSION = re.compile(r"^sshd(?:-session)?: (?P<user>[^\s@\[]+)@(?P<tty>\S+)")
SSHD_NAMES = frozenset({"sshd", "sshd-session"})
TCP_ESTABLISHED = "01"


@dataclass(frozen=True)
class HumansConfig:
    agent_user: str = "agent"
    ssh_excluded_users: tuple[str, ...] = ("root",)  # vmgen's own maintenance logins
    tmux_sockets: tuple[str, ...] | None = None  # globs; None: /tmp/tmux-<agent uid>/*
    web_ports: tuple[int, ...] = (80, 443)  # Caddy: the web UI and the desktop
    leases_path: Path = Path("/var/lib/vmgen/leases.json")
    tmux_timeout: float = 5.0


def count_ssh_sessions(excluded_users: Iterable[str] = ("root",)) -> int:
    """Logged-in SSH sessions (with or without a tty, so port forwards count too)."""
    excluded = set(excluded_users)
    count = 0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in SSHD_NAMES:
            continue
        try:
            title = " ".join(proc.cmdline()).strip()
        except psutil.Error:
            continue
        match = SSHD_SESSION.match(title)
        if match and match["user"] not in excluded:
            count += 1
    return count


def tmux_sockets(config: HumansConfig) -> list[str]:
    if config.tmux_sockets is not None:
        patterns = list(config.tmux_sockets)
    else:
        try:
            uid = pwd.getpwnam(config.agent_user).pw_uid
        except KeyError:
            return []
        patterns = [f"/tmp/tmux-{uid}/*"]
    return sorted({path for pattern in patterns for path in glob.glob(pattern)})


def count_tmux_clients(sockets: Iterable[str], timeout: float = 5.0) -> int:
    """Clients attached to any of the tmux servers; a stale socket (no server) counts 0.

    Root may talk to another user's tmux server (tmux lets root and the owner in).
    """
    total = 0
    for socket in sockets:
        try:
            out = subprocess.run(["tmux", "-S", socket, "list-clients", "-F", "#{client_pid}"],
                                 capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("tmux list-clients on %s failed: %s", socket, exc)
            continue
        if out.returncode == 0:
            total += sum(1 for line in out.stdout.splitlines() if line.strip())
    return total


def count_web_connections(ports: Iterable[int], proc_net: str = "/proc/net") -> int:
    """Established TCP connections whose local port is one of `ports` (clients of Caddy).

    Read straight from /proc/net/tcp{,6}: psutil.net_connections() would also map every
    socket of every process to its pid, which costs far more and is not needed here.
    """
    wanted = {f"{port:04X}" for port in ports}
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc_net}/{name}") as f:
                next(f, None)  # header
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == TCP_ESTABLISHED and \
                            fields[1].rsplit(":", 1)[-1] in wanted:
                        count += 1
        except OSError:
            continue  # no IPv6, or no /proc/net in this namespace
    return count


def read_leases(path: Path, monotonic: Callable[[], float] = time.monotonic,
                wall: Callable[[], float] = time.time) -> tuple[Lease, ...]:
    """Keepalive leases, converted from wall time to the monotonic clock; expired ones dropped.

    The file holds [{"until": <wall epoch>, "reason": "..."}]; a missing file means no lease,
    a broken one is logged and ignored rather than keeping the VM up forever.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable leases file %s: %s", path, exc)
        return ()
    mono_now, wall_now = monotonic(), wall()
    leases = []
    for item in data if isinstance(data, list) else []:
        until = item.get("until") if isinstance(item, dict) else None
        if not isinstance(until, (int, float)) or until <= wall_now:
            continue
        leases.append(Lease(until=mono_now + (until - wall_now), reason=str(item.get("reason") or "keepalive")))
    return tuple(leases)

