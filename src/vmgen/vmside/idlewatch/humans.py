"""Is a person here? Interactive SSH sessions (a terminal), attached tmux clients, connections to
the web page, desktop or code UI; and keepalive leases.

Only a person's interactive session counts: vmgen's own SSH commands from the laptop (status,
send, keepalive, a launch's steps) run without a terminal and are no human, or every `vmgen
status` would hold an idle workspace up.

Everything is re-read every tick (never cached): a session that ended must stop counting at
once, and one that started must count before the countdown runs out.

The watchdog runs as root, and everything here but /proc is the agent user's: its tmux server
is asked by a tmux client running as the agent (a fake server must not be able to tell a root
client to run a shell), and its leases file is read through AgentFiles and clamped.
"""

from __future__ import annotations

import logging
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from ...contract.documents import Clocks, parse_leases
from ...contract.names import AGENT_USER, PORTS, VM
from ..agentfs import AgentFiles
from ..boot import clocks
from ..privileges import RunAs, run_as
from .model import Lease

log = logging.getLogger(__name__)

# "sshd: agent@pts/0", "sshd: agent@notty" (OpenSSH <= 9.7) and "sshd-session: agent@pts/0"
# (9.8+, where each session is its own sshd-session binary). "[priv]"/"[preauth]" processes
# are the privileged half or an unauthenticated client: not a session. "notty" is a command or a
# tunnel without a terminal (vmgen's own commands): not a person at a keyboard.
SSHD_SESSION = re.compile(r"^sshd(?:-session)?: (?P<user>[^\s@\[]+)@(?P<tty>\S+)")
SSHD_NAMES = frozenset({"sshd", "sshd-session"})
TCP_ESTABLISHED = "01"
LEASES_MAX = 64 << 10
MAX_TMUX_SOCKETS = 8  # the agent may create thousands: a tick must stay bounded


@dataclass(frozen=True)
class HumansConfig:
    agent_user: str = AGENT_USER
    ssh_excluded_users: tuple[str, ...] = ("root",)  # vmgen's own maintenance logins
    tmux_dir: Path | None = None  # None: /tmp/tmux-<agent uid>
    # Caddy (the page, code UI and desktop with a domain), and the code UI and noVNC themselves
    # (what `vmgen open` tunnels to without one).
    web_ports: tuple[int, ...] = (80, 443, PORTS.code_ui, PORTS.novnc)
    # The page's socket: `vmgen open` tunnels to it over SSH without a domain.
    web_sockets: tuple[Path, ...] = (VM.page_socket,)
    leases_path: Path = VM.leases
    tmux_timeout: float = 5.0


def count_ssh_sessions(excluded_users: Iterable[str] = ("root",)) -> int:
    """Logged-in SSH sessions with a terminal (`ssh`, `vmgen connect`); commands and port
    forwards without one do not count. A session process is the child of sshd's privileged
    monitor, which runs as root: a process the agent merely named like one does not count."""
    return len(person_terminals(excluded_users))


def person_terminals(excluded_users: Iterable[str] = ("root",)) -> list[str]:
    """The terminals ("pts/3") of those sessions: where a person at a keyboard reads."""
    excluded = set(excluded_users)
    found: list[str] = []
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] not in SSHD_NAMES:
            continue
        try:
            title = " ".join(proc.cmdline()).strip()
            parent = psutil.Process(proc.info["ppid"])
            monitored = parent.uids().real == 0 and parent.name() in SSHD_NAMES
        except psutil.Error:
            continue
        if monitored and (tty := person_tty(title, excluded)):
            found.append(tty)
    return found


def is_person(title: str, excluded_users: Iterable[str] = ("root",)) -> bool:
    """An sshd session process's title is a person's session: a user's, with a terminal."""
    return person_tty(title, excluded_users) is not None


def person_tty(title: str, excluded_users: Iterable[str] = ("root",)) -> str | None:
    """The terminal of a person's session from its sshd process's title, else None. sshd names
    the session's pty ("pts/0"), or "notty" when it has none (a command, a tunnel)."""
    match = SSHD_SESSION.match(title)
    if match is None or match["user"] in set(excluded_users) or not match["tty"].startswith(("pts/", "tty")):
        return None
    return match["tty"]


def tmux_sockets(directory: Path, files: AgentFiles) -> list[Path]:
    """The sockets in the agent's tmux folder (a real folder, not a link), at most a few."""
    try:
        entries = files.listdir(directory)
    except OSError:
        return []
    sockets = sorted(directory / name for name, st in entries if stat.S_ISSOCK(st.st_mode))
    return sockets[:MAX_TMUX_SOCKETS]


def count_tmux_clients(sockets: Iterable[Path | str], who: RunAs, timeout: float = 5.0) -> int:
    """Clients attached to any of the tmux servers, asked by a tmux client running as `who`
    (the agent); a stale socket (no server) counts 0. The whole count takes at most `timeout`."""
    total = 0
    deadline = time.monotonic() + timeout
    for socket in sockets:
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("tmux: out of time for this tick; the remaining sockets count 0")
            break
        try:
            code, out = run_as(
                who,
                ["tmux", "-S", str(socket), "list-clients", "-F", "#{client_pid}"],
                timeout=left,
                max_output=16 << 10,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("tmux list-clients on %s failed: %s", socket, exc)
            continue
        if code == 0:
            total += sum(1 for line in out.decode(errors="replace").splitlines() if line.strip())
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
                    if len(fields) > 3 and fields[3] == TCP_ESTABLISHED and fields[1].rsplit(":", 1)[-1] in wanted:
                        count += 1
        except OSError:
            continue  # no IPv6, or no /proc/net in this namespace
    return count


UNIX_CONNECTED = "03"


def count_unix_connections(paths: Iterable[Path], proc_net: str = "/proc/net") -> int:
    """Connections accepted on the unix sockets at `paths` (a server's accepted sockets carry
    the name it listens on; the listener itself is not connected)."""
    wanted = {str(path) for path in paths}
    count = 0
    try:
        with open(f"{proc_net}/unix") as f:
            next(f, None)  # header
            for line in f:
                fields = line.split()
                if len(fields) > 7 and fields[5] == UNIX_CONNECTED and fields[7] in wanted:
                    count += 1
    except OSError:
        return 0
    return count


def read_leases(
    path: Path,
    files: AgentFiles,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], Clocks] = clocks,
) -> tuple[Lease, ...]:
    """Keepalive leases on the monotonic clock: what remains of each (measured on CLOCK_BOOTTIME
    for a lease of this boot, so a wall-clock step neither drops nor stretches it) from now;
    expired ones dropped, each clamped to the longest lease the CLI gives. A missing file means
    no lease; one that is not the agent's regular file, too large or broken is logged and ignored
    rather than keeping the VM up forever."""
    try:
        raw = files.read(path, LEASES_MAX)
    except FileNotFoundError:
        return ()
    except OSError as exc:
        log.warning("ignoring the leases file %s: %s", path, exc)
        return ()
    mono_now, clocks_now = monotonic(), now()
    return tuple(
        Lease(until=mono_now + (lease.until - clocks_now.wall), reason=lease.reason)
        for lease in parse_leases(raw, clocks_now)
    )
