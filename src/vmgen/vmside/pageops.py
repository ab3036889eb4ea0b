"""Root's side of the page socket: the few things the workspace page may ask (contract/pageops.py).

systemd accepts each connection on the socket (root:vmgen-page 0660) and starts this module, as
root, with the connection as stdin. Only the page's user (and root) may ask; each answer has a
deadline of root's own, because whatever touches the agent runs as the agent, which can stop or
slow any process of its uid:

- activity: the agent's leases and the tail of its transcript, read through `AgentFiles` (no link
  followed, regular files of the agent only, never blocking, capped), every value clamped;
- send: `tmux send-keys` into the agent's pane, run as the agent, killed at its deadline;
- keepalive: a lease added by vmgen's own interpreter (`python -I`) running as the agent;
- backup: root's control socket asked for a backup, answered once it started;
- changes: the repository's working tree against HEAD and its recent commits, from git run as the
  agent with a deadline and a size cap of root's (vmside/web/changes.py);
- permissions, answer: the agent's pending permission prompts, and the page's answer to one, both
  through root's control socket (as root: the agent can neither see nor answer them there). An
  answer is taken only where the page is behind vmgen's login: without a domain the page's own
  socket is the agent's to reach (`vmgen open` tunnels to it as the agent), so the terminal answers.
- phone: an ntfy button pressed on the phone (contract.phone_actions), the one request that comes
  without the login (Caddy opens the page's PHONE_PATH alone for it): its capability is the whole
  of its authority. Allow / Deny go to root's control socket (`phone-answer`, root's alone), which
  checks them as it checks the laptop's signed answers; Keep alive is checked here (root's key,
  root's clock, root's record of the buttons that acted) and writes the lease as `keepalive` does.

Run as `python -I -m vmgen.vmside.pageops`: it imports only what these need.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..contract import codec
from ..contract.control import REQUEST_DEADLINE, ControlRequest, busy_line
from ..contract.documents import parse_leases
from ..contract.names import AGENT_SESSION, AGENT_USER, PAGE_USER, VM, VmPaths, agent_session
from ..contract.pageops import (
    PageActivity,
    PageRequest,
    decode_request,
    refused_line,
    result_line,
)
from ..errors import DocumentError
from .agentfs import AgentFiles
from .control import FINAL_SEND_TIMEOUT, peer_uid, read_request_line
from .privileges import RunAs, run_as

log = logging.getLogger(__name__)
LEASES_MAX = 64 << 10
WORKSPACE_INFO_MAX = 64 << 10
TMUX_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 20.0
BACKUP_START_TIMEOUT = 30.0
GIT_TIMEOUT = 10.0


# Adds a keepalive lease to the file named, as whoever runs it (the agent): vmgen's own code, in an
# isolated interpreter.
LEASE_WRITER = (
    "import sys; from pathlib import Path; from vmgen.vmside.leases import add; "
    "add(float(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))"
)


class Refused(Exception):
    """The request cannot be done now; the reason is the page's to show."""


class Busy(Refused):
    """Nothing was done, and the same request may succeed in a moment (a backup runs already)."""


@dataclass(frozen=True)
class Context:
    paths: VmPaths
    agent: RunAs  # whom everything that touches the agent's processes runs as
    session: str = AGENT_SESSION  # the agent's tmux session
    tmux_seconds: float = TMUX_TIMEOUT  # each tmux client's deadline
    tmux_socket: str = ""  # the agent's default server ("": tmux's own default for its uid)
    git_seconds: float = GIT_TIMEOUT  # all of git's runs for one look at the changes


def serve(conn: socket.socket, context: Context | None = None, page_uid: int | None = None) -> None:
    """Answer one request on an accepted connection (as root)."""
    context = context or Context(VM, RunAs.lookup(AGENT_USER), session=_agent_session(VM))
    allowed = {0, page_uid if page_uid is not None else RunAs.lookup(PAGE_USER).uid}
    uid = peer_uid(conn)
    try:  # read first, even a request that will be refused: closing on unread data resets it
        line = read_request_line(conn, time.monotonic() + REQUEST_DEADLINE)
    except (OSError, ValueError) as exc:
        _send(conn, refused_line(f"bad request: {exc}"))
        return
    if uid not in allowed:
        log.warning("page ops: refused a request from uid %d", uid)
        _send(conn, refused_line("only the workspace page may ask"))
        return
    try:
        request = decode_request(line)
    except DocumentError as exc:
        _send(conn, refused_line(str(exc)))
        return
    try:
        result = OPERATIONS[request.op](request, context)
    except Busy as busy:
        _send(conn, busy_line(str(busy)))
        return
    except Refused as refused:
        _send(conn, refused_line(str(refused)))
        return
    _send(conn, result_line(result))


# --- the operations ---------------------------------------------------------------------------


def activity(_request: PageRequest, context: Context) -> dict[str, Any]:
    from .web.activity import recent_activity

    files = AgentFiles(context.agent.uid)
    now = time.time()
    try:
        leases = parse_leases(files.read(context.paths.leases, LEASES_MAX), now)
    except OSError:  # none, or not the agent's regular file: no lease
        leases = ()
    repo_dir = _repo_dir(context.paths)
    items = recent_activity(files, context.paths.claude_dir, repo_dir) if repo_dir else []
    return codec.to_value(PageActivity(leases=leases, items=tuple(items)))


def send(request: PageRequest, context: Context) -> dict[str, Any]:
    line = " ".join(request.text.splitlines())  # a newline would press Enter midway
    for keys in (["-l", "--", line], ["Enter"]):
        try:
            server = ["-S", context.tmux_socket] if context.tmux_socket else []
            argv = ["tmux", *server, "send-keys", "-t", context.session, *keys]
            code, _ = run_as(context.agent, argv, timeout=context.tmux_seconds)
        except (OSError, subprocess.TimeoutExpired):
            code = -1
        if code != 0:
            raise Refused("the agent's session is not running")
    return {"sent": True}


def keepalive(request: PageRequest, context: Context, reason: str = "from the workspace page") -> dict[str, Any]:
    seconds = request.hours * 3600
    python = str(context.paths.venv / "bin" / "python")
    argv = [python, "-I", "-c", LEASE_WRITER, str(seconds), reason, str(context.paths.leases)]
    try:
        code, _ = run_as(context.agent, argv, timeout=KEEPALIVE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        code = -1
    if code != 0:
        raise Refused("the keepalive lease could not be written")
    return {"until": time.time() + seconds}


def backup(_request: PageRequest, context: Context) -> dict[str, Any]:
    """Ask root's control socket (root's own, as root) and answer once the backup started; it
    goes on in the control service after this answer."""
    from ..errors import ControlUnavailable
    from .control import ask

    try:
        request = ControlRequest("backup", trigger="page")
        for reply in ask(request, context.paths, timeout=BACKUP_START_TIMEOUT):
            if reply.busy:  # a backup runs already, or root is flooded
                raise Busy(reply.busy)
            if reply.refused:
                raise Refused(reply.refused)
            if reply.result is not None:
                return {"started": True, "ok": reply.result.get("ok") is True}
            return {"started": True}  # the first progress line: root is at work
    except (ControlUnavailable, DocumentError, OSError) as exc:
        raise Refused(f"the backup service does not answer: {exc}") from None
    raise Refused("the backup service closed the connection")


def changes(_request: PageRequest, context: Context) -> dict[str, Any]:
    """git as the agent, in the repository root's own description names (never a path the agent
    wrote), bounded by root's deadline and size caps."""
    from ..contract.changes import Changes
    from .web.changes import read_changes

    repo_dir = _repo_dir(context.paths)
    if not repo_dir:
        return codec.to_value(Changes(error="this workspace has no repository"))
    return codec.to_value(read_changes(context.agent, repo_dir, context.git_seconds))


def page_behind_login(context: Context) -> bool:
    """Whether only the login's side (Caddy) can reach the page: its socket (systemd's, root's
    /run/vmgen) is neither the agent's, nor its group's, nor everyone's to connect to."""
    try:
        st = os.stat(context.paths.page_socket)
    except OSError:
        return False
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o002:
        return False
    return not (st.st_gid == context.agent.gid and st.st_mode & 0o020)


def _ask_control(request: ControlRequest, context: Context) -> dict[str, Any]:
    from ..errors import ControlUnavailable
    from .control import ask

    try:
        for reply in ask(request, context.paths, timeout=FINAL_SEND_TIMEOUT):
            if reply.busy:
                raise Busy(reply.busy)
            if reply.refused:
                raise Refused(reply.refused)
            if reply.result is not None:
                return reply.result
    except (ControlUnavailable, DocumentError, OSError) as exc:
        raise Refused(f"root's control service does not answer: {exc}") from None
    raise Refused("root's control service closed the connection")


def permissions(context: Context) -> dict[str, Any]:
    """The pending permission prompts, and whether this page may answer them."""
    from ..contract.permissions import PendingPermission, PermissionsView

    result = _ask_control(ControlRequest("permissions"), context)
    pending = result.get("pending")
    items = tuple(
        codec.from_value(PendingPermission, item, "a pending permission", strict=False)
        for item in (pending if isinstance(pending, list) else [])
    )
    return codec.to_value(PermissionsView(pending=items, answerable=page_behind_login(context)))


def answer(request: PageRequest, context: Context) -> dict[str, Any]:
    if not page_behind_login(context):
        raise Refused("this workspace's page has no login of its own (no domain): answer in the terminal")
    request_line = ControlRequest("answer", request_id=request.request_id, decision=request.decision)
    _ask_control(request_line, context)
    return {"answered": True, "decision": request.decision}


def phone(request: PageRequest, context: Context) -> dict[str, Any]:
    """An ntfy button: Allow / Deny through the control daemon's check, Keep alive checked here."""
    from ..contract.phone_actions import ANSWER_KIND, KEEPALIVE_HOURS, read_capability, verified_keepalive
    from ..contract.signed import KEY_VARIABLE
    from ..errors import ConfigError
    from .idlewatch.settings import load, read_secrets
    from .phone_actions import take_once

    if not page_behind_login(context):
        raise Refused("this workspace's page has no login of its own (no domain)")
    try:
        kind, text, mac = read_capability(request.capability)
        if kind == ANSWER_KIND:
            result = _ask_control(ControlRequest("phone-answer", trigger="page", answer=text, mac=mac), context)
            return {"done": str(result.get("decision", ""))}
        now = time.time()
        key = read_secrets(context.paths).get(KEY_VARIABLE, "")
        ticket = verified_keepalive(text, mac, key, load(context.paths).name, now)
    except (DocumentError, ConfigError) as exc:
        log.warning("page ops: an ntfy button refused: %s", exc)
        raise Refused(str(exc)) from None
    if not take_once(context.paths.phone_buttons_used, ticket.nonce, ticket.issued_at, now):
        log.warning("page ops: an ntfy Keep alive button pressed again")
        raise Refused("already used: each button acts once")
    done = keepalive(PageRequest("keepalive", hours=KEEPALIVE_HOURS), context, "from the phone")
    return {"done": "keepalive", **done}


OPERATIONS: dict[str, Callable[[PageRequest, Context], dict[str, Any]]] = {
    "activity": activity,
    "send": send,
    "keepalive": keepalive,
    "backup": backup,
    "changes": changes,
    "permissions": lambda request, context: permissions(context),
    "answer": answer,
    "phone": phone,
}


def _repo_dir(paths: VmPaths) -> str:
    """The repository folder, from root's own description of the workspace."""
    import json

    try:
        with open(paths.workspace_info, "rb") as f:
            value = json.loads(f.read(WORKSPACE_INFO_MAX)).get("repo_dir")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) and value.startswith("/") else ""


def _agent_session(paths: VmPaths) -> str:
    """The agent's tmux session, named for the agent root's description of the workspace names."""
    import json

    try:
        with open(paths.workspace_info, "rb") as f:
            return agent_session(json.loads(f.read(WORKSPACE_INFO_MAX)).get("agent"))
    except (OSError, ValueError, AttributeError, TypeError):
        return AGENT_SESSION


def _send(conn: socket.socket, line: bytes) -> None:
    """Best effort: a page that went away never holds root up."""
    try:
        conn.settimeout(FINAL_SEND_TIMEOUT)
        conn.sendall(line)
    except OSError:
        pass


def main() -> None:
    """The connection systemd accepted is our stdin."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    conn = socket.socket(fileno=0)
    try:
        serve(conn)
    finally:
        conn.detach()


if __name__ == "__main__":
    main()
