"""Root's side of the control socket, and the agent's side that asks (see contract/control.py).

systemd listens on the socket and starts one root daemon (`vmgen vmside control`, Accept=no) on
the first connection; it answers every connection and exits after a while without any. One
daemon rather than one process per connection (Accept=yes), because the agent can connect as
often as it likes: per connection, systemd would start a root interpreter (500 connections, 500
processes), drop whatever exceeds MaxConnections without a word, key its per-source limit on the
uid (the laptop arrives as the agent too, over SSH) and, past its trigger limit, put the socket
into a failed state until reboot. Here a connection costs a thread and is bounded on every side:

- the request line must arrive within REQUEST_DEADLINE seconds of connecting, in total;
- at most MAX_OPEN connections are open, at most PER_PEER from one peer: the agent's own
  processes are one peer, each SSH session another (the session process is the child of sshd's
  root monitor), so a flood from the agent's shell leaves room for the laptop's request. When a
  peer is at its bound, its oldest connection that has not sent its request yet makes room
  (a slow client never holds a place against a new one); else the new one hears "busy" at once;
- one backup at a time: a second one hears "busy" at once (the client asks again);
- verdicts asked for together share one tick of the watchdog;
- a permission prompt's hook waits at most its own deadline of root's (vmside/permissions.py);
  only root sees pending prompts and answers them (asked by root's page socket), or the laptop,
  whose answer from the phone the agent relays signed with a key it does not hold.

Root asks the kernel who is on the other end (SO_PEERCRED): only root and the agent user may ask.
Answers never block on a client that stopped reading (a backup goes on when the laptop's SSH dies).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..contract.control import (
    MAX_REPLY_LINE,
    MAX_REQUEST,
    REQUEST_DEADLINE,
    ROOT_ONLY,
    ControlRequest,
    Reply,
    busy_line,
    decode_reply,
    decode_request,
    encode_request,
    progress_line,
    refused_line,
    result_line,
)
from ..contract.documents import WatchdogState
from ..contract.names import AGENT_USER, VM, VmPaths
from ..errors import ConfigError, ControlUnavailable, DocumentError
from .permissions import DESK, DeskFull, PermissionDesk, PromptNotifier, hook_gone
from .privileges import RunAs

log = logging.getLogger(__name__)
FINAL_SEND_TIMEOUT = 10.0
MAX_OPEN = 32
PER_PEER = 8
IDLE_EXIT = 120.0  # seconds without a connection before the daemon exits (systemd restarts it)
SD_LISTEN_FDS_START = 3
SSHD = ("sshd", "sshd-session")


def peer_credentials(conn: socket.socket) -> tuple[int, int]:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def peer_uid(conn: socket.socket) -> int:
    return peer_credentials(conn)[1]


def serve(
    conn: socket.socket,
    paths: VmPaths = VM,
    agent: RunAs | None = None,
    allowed: frozenset[int] | None = None,
    deadline: float | None = None,
    ticks: TickShare | None = None,
    on_request: Callable[[], None] | None = None,
    desk: PermissionDesk | None = None,
) -> None:
    """Answer one request on an accepted connection (run as root). Only root and the agent
    user may ask (`allowed` replaces that set in tests). The request must be in by `deadline`
    (time.monotonic(); default REQUEST_DEADLINE from now)."""
    agent = agent or RunAs.lookup(AGENT_USER)
    uid = peer_uid(conn)
    try:  # read first, even a request that will be refused: closing on unread data resets it
        line = read_request_line(conn, deadline if deadline is not None else time.monotonic() + REQUEST_DEADLINE)
    except (OSError, ValueError) as exc:
        _send(conn, refused_line(f"bad request: {exc}"), FINAL_SEND_TIMEOUT)
        return
    if on_request is not None:
        on_request()
    if uid not in (allowed if allowed is not None else {0, agent.uid}):
        log.warning("control: refused a request from uid %d", uid)
        _send(conn, refused_line("only the agent user and root may ask"), FINAL_SEND_TIMEOUT)
        return
    try:
        request = decode_request(line)
    except DocumentError as exc:
        _send(conn, refused_line(f"bad request: {exc}"), FINAL_SEND_TIMEOUT)
        return
    if request.op in ROOT_ONLY and uid != 0:
        log.warning("control: refused %s from uid %d (root's alone)", request.op, uid)
        _send(conn, refused_line(f"only root may ask for {request.op}"), FINAL_SEND_TIMEOUT)
        return
    log.info("control: %s requested by uid %d (%s)", request.op, uid, request.trigger)
    if request.op == "tick":
        _answer_tick(conn, paths, ticks)
        return
    if request.op == "budget":
        _answer_budget(conn, request, paths)
        return
    if request.op in ("permission", "permissions", "answer"):
        _answer_permission(conn, request, desk or DESK)
        return
    if request.op in ("signed-answer", "phone-answer"):
        _answer_signed(conn, request, paths, desk or DESK)
        return

    def progress(message: str) -> None:
        _send(conn, progress_line(message), 0)  # dropped if the client is not reading

    from ..errors import BackupBusy, BackupRefused
    from .backups import run_backup, run_restore

    try:
        result = (
            run_backup(request.trigger, paths, agent, progress)
            if request.op == "backup"
            else run_restore(request.identity, paths, agent, progress)
        )
    except BackupBusy as exc:
        _send(conn, busy_line(str(exc)), FINAL_SEND_TIMEOUT)
        return
    except BackupRefused as exc:
        _send(conn, refused_line(str(exc)), FINAL_SEND_TIMEOUT)
        return
    _send(conn, result_line(result), FINAL_SEND_TIMEOUT)


def _answer_budget(conn: socket.socket, request: ControlRequest, paths: VmPaths) -> None:
    """A new share of the budget: taken only with the laptop's signature, for this workspace,
    and issued after the one root holds (the watchdog reads it at its next tick)."""
    from .idlewatch import budget, settings

    try:
        grant = budget.accept_grant(request.grant, request.mac, settings.load(paths).name, paths)
    except (DocumentError, ConfigError) as exc:
        log.warning("control: budget grant refused: %s", exc)
        _send(conn, refused_line(str(exc)), FINAL_SEND_TIMEOUT)
        return
    _send(conn, result_line(grant), FINAL_SEND_TIMEOUT)


class TickShare:
    """Verdicts asked for at the same time share one tick: a flood of `vmgen status` costs the
    watchdog one tick, not one each."""

    def __init__(self, ask: Callable[[VmPaths], WatchdogState] | None = None) -> None:
        self._lock = threading.Lock()
        self._pending: Future[WatchdogState] | None = None
        self._ask = ask

    def get(self, paths: VmPaths) -> WatchdogState:
        with self._lock:
            pending, mine = self._pending, self._pending is None
            if mine:
                pending = self._pending = Future()
        assert pending is not None
        if mine:
            try:
                pending.set_result(self._request(paths))
            except BaseException as exc:  # noqa: BLE001 - handed to every asker
                pending.set_exception(exc)
            finally:
                with self._lock:
                    self._pending = None
        return pending.result()

    def _request(self, paths: VmPaths) -> WatchdogState:
        if self._ask is not None:
            return self._ask(paths)
        from .idlewatch.ondemand import request_tick

        return request_tick(paths)


def _answer_tick(conn: socket.socket, paths: VmPaths, ticks: TickShare | None) -> None:
    from ..errors import TickUnavailable

    try:
        state = (ticks or TickShare()).get(paths)
    except TickUnavailable as exc:
        _send(conn, refused_line(str(exc)), FINAL_SEND_TIMEOUT)
        return
    _send(conn, result_line(state), FINAL_SEND_TIMEOUT)


def _answer_permission(conn: socket.socket, request: ControlRequest, desk: PermissionDesk) -> None:
    from ..contract import codec

    if request.op == "permissions":
        _send(conn, result_line({"pending": [codec.to_value(p) for p in desk.pending()]}), FINAL_SEND_TIMEOUT)
    elif request.op == "answer":
        if desk.answer(request.request_id, request.decision):
            _send(conn, result_line({"answered": True}), FINAL_SEND_TIMEOUT)
        else:
            _send(conn, refused_line("no such request: answered already, or no longer asked"), FINAL_SEND_TIMEOUT)
    else:
        assert request.ask is not None  # decode_request checked it
        try:
            decision = desk.ask(request.ask, hook_gone(conn))
        except DeskFull as exc:
            _send(conn, busy_line(f"{exc}: answer this one in the terminal"), FINAL_SEND_TIMEOUT)
            return
        if decision:
            _send(conn, result_line({"decision": decision}), FINAL_SEND_TIMEOUT)
        else:
            _send(conn, refused_line("no answer from the page"), FINAL_SEND_TIMEOUT)


def _answer_signed(conn: socket.socket, request: ControlRequest, paths: VmPaths, desk: PermissionDesk) -> None:
    """An answer from the phone: relayed by the agent (signed-answer, the laptop's from Telegram) or
    by root's page socket (phone-answer, an ntfy button's, which root signed when it sent the
    message). Taken only with the signature of the workspace's key (root's secret) under the
    purpose of its kind, for this workspace, for a request still pending, signed within its
    lifetime, once."""
    from ..contract.permission_answer import PURPOSE, verified_answer
    from ..contract.phone_actions import ANSWER_PURPOSE
    from ..contract.signed import KEY_VARIABLE
    from .idlewatch import settings

    purpose = ANSWER_PURPOSE if request.op == "phone-answer" else PURPOSE
    try:
        key = settings.read_secrets(paths).get(KEY_VARIABLE, "")
        answer = verified_answer(request.answer, request.mac, key, settings.load(paths).name, purpose)
    except (DocumentError, ConfigError) as exc:
        log.warning("control: a signed answer refused: %s", exc)
        _send(conn, refused_line(str(exc)), FINAL_SEND_TIMEOUT)
        return
    refusal = desk.answer_signed(answer)
    if refusal:
        log.warning("control: a signed answer refused: %s", refusal)
        _send(conn, refused_line(refusal), FINAL_SEND_TIMEOUT)
        return
    _send(conn, result_line({"ok": True, "answered": True, "decision": answer.decision}), FINAL_SEND_TIMEOUT)


def read_request_line(conn: socket.socket, deadline: float) -> bytes:
    """One request line, capped, by `deadline` (time.monotonic()) in total: a slow client gets no more."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ValueError(f"no request within {REQUEST_DEADLINE:g}s")
        conn.settimeout(left)
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            raise ValueError(f"no request within {REQUEST_DEADLINE:g}s") from None
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"more than {MAX_REQUEST} bytes")
    return data.split(b"\n", 1)[0]


def _send(conn: socket.socket, line: bytes, timeout: float) -> None:
    """Best effort: a client that went away or stopped reading never holds root up."""
    try:
        conn.settimeout(timeout if timeout > 0 else 0.0)
        conn.sendall(line)
    except OSError:
        pass


# --- the daemon ------------------------------------------------------------------------------


def peer_of(pid: int, uid: int) -> str:
    """Who is asking, for fairness: the SSH session a process runs in (the child of sshd's root
    monitor: the laptop's `vmgen` runs in one), else its uid. Not a security boundary: the agent
    can log in over SSH itself; it only keeps the agent's local processes to their share."""
    import psutil

    try:
        proc = psutil.Process(pid)
        for _ in range(64):
            parent = proc.parent()
            if parent is None:
                break
            if proc.name() in SSHD and parent.uids().real == 0 and parent.name() in SSHD:
                return f"ssh session {proc.pid}"
            proc = parent
    except psutil.Error:
        pass
    return f"uid {uid}"


@dataclass
class _Connection:
    conn: socket.socket
    peer: str
    opened: float
    requested: bool = False  # its request line is in: it is being answered, never evicted


@dataclass
class ControlServer:
    """The daemon: accepts on `listener`, answers each connection in a thread (see the module's
    docstring for the bounds)."""

    listener: socket.socket
    paths: VmPaths = VM
    agent: RunAs | None = None
    allowed: frozenset[int] | None = None
    max_open: int = MAX_OPEN
    per_peer: int = PER_PEER
    peer: Callable[[int, int], str] = peer_of
    ticks: TickShare = field(default_factory=TickShare)
    desk: PermissionDesk | None = None  # default: one that tells the phone (PromptNotifier)
    _open: list[_Connection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_active: float = field(default_factory=time.monotonic)

    def serve_forever(self, idle_exit: float | None = IDLE_EXIT, stop: threading.Event | None = None) -> None:
        self.agent = self.agent or RunAs.lookup(AGENT_USER)
        self.desk = self.desk or PermissionDesk(on_ask=PromptNotifier(self.paths))
        self.listener.settimeout(1.0)
        while stop is None or not stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                with self._lock:
                    idle = not self._open and time.monotonic() - self._last_active > (idle_exit or 0)
                if idle_exit is not None and idle:
                    log.info("control: no requests for %.0fs; exiting (systemd starts it again)", idle_exit)
                    return
                continue
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        now = time.monotonic()
        try:
            pid, uid = peer_credentials(conn)
            peer = self.peer(pid, uid)
        except OSError:
            conn.close()
            return
        with self._lock:
            self._last_active = now
            refusal = self._make_room(peer)
            entry = _Connection(conn, peer, now)
            if not refusal:
                self._open.append(entry)
        if refusal:
            log.warning("control: busy (%s)", refusal)
            _send(conn, busy_line(f"root's control socket is busy: {refusal}; ask again in a moment"), 0)
            conn.close()
            return
        threading.Thread(target=self._handle, args=(entry,), name="control-connection", daemon=True).start()

    def _make_room(self, peer: str) -> str:
        """Under the lock: "" if a connection of `peer` may open (evicting, if need be, the oldest
        one that has not sent its request: of the same peer, or at the global bound of the
        busiest one); else why not."""
        mine = [c for c in self._open if c.peer == peer]
        if len(mine) >= self.per_peer:
            pool, reason = mine, f"{len(mine)} requests of {peer} are open"
        elif len(self._open) >= self.max_open:
            pool, reason = self._busiest(), f"{len(self._open)} requests are open"
        else:
            return ""
        victim = next((c for c in sorted(pool, key=lambda c: c.opened) if not c.requested), None)
        if victim is None:
            return reason
        self._open.remove(victim)
        _send(victim.conn, busy_line(f"root's control socket is busy: {reason}; ask again in a moment"), 0)
        with contextlib.suppress(OSError):
            victim.conn.shutdown(socket.SHUT_RDWR)  # its thread ends and closes it
        return ""

    def _busiest(self) -> list[_Connection]:
        counts: dict[str, int] = {}
        for c in self._open:
            counts[c.peer] = counts.get(c.peer, 0) + 1
        top = max(counts, key=lambda p: counts[p], default="")
        return [c for c in self._open if c.peer == top]

    def _handle(self, entry: _Connection) -> None:
        def requested() -> None:
            with self._lock:
                entry.requested = True

        try:
            serve(
                entry.conn,
                self.paths,
                self.agent,
                self.allowed,
                deadline=entry.opened + REQUEST_DEADLINE,
                ticks=self.ticks,
                on_request=requested,
                desk=self.desk,
            )
        except Exception:  # one connection's failure is logged; the daemon goes on
            log.exception("control: answering a request failed")
        finally:
            with self._lock:
                if entry in self._open:
                    self._open.remove(entry)
                self._last_active = time.monotonic()
            entry.conn.close()


def main_listening(paths: VmPaths = VM) -> None:
    """`vmgen vmside control`: systemd passes the listening socket (Accept=no) as fd 3."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        raise ControlUnavailable("vmgen vmside control runs under systemd (vmgen-control.socket passes its socket)")
    listener = socket.socket(fileno=SD_LISTEN_FDS_START)
    try:
        ControlServer(listener, paths).serve_forever()
    finally:
        listener.detach()  # systemd's socket: it goes on listening for the next start


# --- the asking side (the agent user: over SSH from the laptop, or the workspace page) ---------


def ask(request: ControlRequest, paths: VmPaths = VM, timeout: float | None = None) -> Iterator[Reply]:
    """Send one request to root and yield the answer's lines as they come."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(10)
        try:
            conn.connect(str(paths.control_socket))
        except OSError as exc:
            raise ControlUnavailable(f"vmgen's control socket {paths.control_socket} does not answer ({exc})") from None
        conn.sendall(encode_request(request))
        conn.settimeout(timeout)
        buffer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield decode_reply(line)
            if len(buffer) > MAX_REPLY_LINE:
                raise ControlUnavailable("the control socket sent an overlong line")
    finally:
        conn.close()


def ask_patiently(
    request: ControlRequest,
    paths: VmPaths = VM,
    timeout: float | None = None,
    patience: float = 120.0,
    said: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Reply]:
    """`ask`, asking again while root answers "busy" (another backup running, a flood of
    connections), for up to `patience` seconds; each busy answer is passed to `said` once. The
    last busy answer is yielded when patience runs out."""
    started, delay, last = time.monotonic(), 1.0, ""
    while True:
        busy = None
        for reply in ask(request, paths, timeout):
            if reply.busy:
                busy = reply
                break
            yield reply
        if busy is None:
            return
        if busy.busy != last:
            said(busy.busy)
            last = busy.busy
        if time.monotonic() - started + delay > patience:
            yield busy
            return
        sleep(delay)
        delay = min(delay * 2, 10.0)
