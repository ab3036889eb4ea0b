"""Root's side of the control socket, and the agent's side that asks (see contract/control.py).

systemd accepts each connection on the socket and starts `vmgen vmside control` with it as
stdin/stdout. Root asks the kernel who is on the other end (SO_PEERCRED): only root and the
agent user may ask. The request is read with a size cap and a timeout; answers are sent without
ever blocking on a client that stopped reading (a backup goes on when the laptop's SSH dies).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator

from ..contract import codec
from ..contract.control import (
    MAX_REPLY_LINE,
    MAX_REQUEST,
    ControlRequest,
    Reply,
    decode_reply,
    decode_request,
    encode_request,
    progress_line,
    refused_line,
    result_line,
)
from ..contract.names import AGENT_USER, VM, VmPaths
from ..errors import VmgenError
from ..privileges import RunAs

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = 10.0
FINAL_SEND_TIMEOUT = 10.0


class ControlUnavailable(VmgenError):
    """vmgen's control socket on the VM does not answer."""


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def serve(
    conn: socket.socket, paths: VmPaths = VM, agent: RunAs | None = None, allowed: frozenset[int] | None = None
) -> None:
    """Answer one request on an accepted connection (run as root). Only root and the agent
    user may ask (`allowed` replaces that set in tests)."""
    agent = agent or RunAs.lookup(AGENT_USER)
    uid = peer_uid(conn)
    try:  # read first, even a request that will be refused: closing on unread data resets it
        line = _read_line(conn)
    except (OSError, ValueError) as exc:
        _send(conn, refused_line(f"bad request: {exc}"), FINAL_SEND_TIMEOUT)
        return
    if uid not in (allowed if allowed is not None else {0, agent.uid}):
        log.warning("control: refused a request from uid %d", uid)
        _send(conn, refused_line("only the agent user and root may ask"), FINAL_SEND_TIMEOUT)
        return
    try:
        request = decode_request(line)
    except codec.DocumentError as exc:
        _send(conn, refused_line(f"bad request: {exc}"), FINAL_SEND_TIMEOUT)
        return
    log.info("control: %s requested by uid %d (%s)", request.op, uid, request.trigger)
    if request.op == "tick":
        _answer_tick(conn, paths)
        return

    def progress(message: str) -> None:
        _send(conn, progress_line(message), 0)  # dropped if the client is not reading

    from .backups import run_backup, run_restore

    result = (
        run_backup(request.trigger, paths, agent, progress)
        if request.op == "backup"
        else run_restore(request.identity, paths, agent, progress)
    )
    _send(conn, result_line(result), FINAL_SEND_TIMEOUT)


def _answer_tick(conn: socket.socket, paths: VmPaths) -> None:
    from .idlewatch.ondemand import TickUnavailable, request_tick

    try:
        state = request_tick(paths)
    except TickUnavailable as exc:
        _send(conn, refused_line(str(exc)), FINAL_SEND_TIMEOUT)
        return
    _send(conn, result_line(state), FINAL_SEND_TIMEOUT)


def _read_line(conn: socket.socket) -> bytes:
    conn.settimeout(REQUEST_TIMEOUT)
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
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


def main_from_stdin(paths: VmPaths = VM) -> None:
    """`vmgen vmside control`: the connection systemd accepted is our stdin."""
    conn = socket.socket(fileno=0)
    try:
        serve(conn, paths)
    finally:
        conn.detach()
