"""The workspace page's HTTP server (stdlib): the page, its state as JSON, and three actions.

Caddy terminates TLS and does the auth; this binds 127.0.0.1 only. Actions are POSTs that must
carry a JSON body, a custom header and a same-origin Origin: a page on another site cannot
make the user's browser trigger them with its cached credentials.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...contract import codec
from ...contract.control import ControlRequest
from ...contract.documents import ACTION_WORDS, BackupResult, WatchdogState
from ...contract.names import AGENT_SESSION, PORTS, VM, VmPaths
from ...contract.verdict_words import verdict_word, what_happens, what_holds
from .. import leases
from ..boot import with_age
from .activity import recent_activity

log = logging.getLogger(__name__)
ACTION_HEADER = "X-Vmgen-Action"
KEEPALIVE_HOURS = (1, 4)
MAX_MESSAGE = 4000


@dataclass(frozen=True)
class WebSettings:
    port: int = PORTS.page
    session: str = AGENT_SESSION
    vm: VmPaths = VM  # the workspace's description, the watchdog's state, leases, backup results


class ActionRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def collect_state(settings: WebSettings) -> dict[str, Any]:
    workspace = _json_file(settings.vm.workspace_info) or {}
    watchdog = _json_file(settings.vm.watchdog_state) or {}
    backup = _json_file(settings.vm.backup_result)
    restore = _json_file(settings.vm.restore_result)
    activity = recent_activity(settings.vm.home / ".claude", workspace.get("repo_dir", ""))
    verdict = watchdog.get("verdict")
    return {
        "workspace": workspace.get("name", ""),
        "agent": watchdog.get("agent", {}),
        "verdict": verdict,
        # What the configured action does, for "backs up and deletes itself in 28 min".
        "action_words": ACTION_WORDS.get(verdict.get("action", ""), "") if isinstance(verdict, dict) else "",
        "said": said(watchdog),
        # The idle action or the hard lifetime, once under way: its step and what happened.
        "acting": watchdog.get("acting"),
        "leases": [{"until": lease.until, "reason": lease.reason} for lease in leases.read(settings.vm.leases)],
        "backup": {k: backup.get(k) for k in ("ok", "backup_id", "ciphertext_bytes", "finished_at", "error")}
        if backup
        else None,
        # The backup this workspace was restored from, until it makes one of its own.
        "restored": {k: restore.get(k) for k in ("backup_id", "workspace", "finished_at")}
        if restore and restore.get("ok") is True
        else None,
        "web": _json_file(settings.vm.web_links) or {},
        "activity": [item.to_json() for item in activity],
        "now": time.time(),
    }


def said(watchdog: dict[str, Any]) -> dict[str, str] | None:
    """The verdict in the watchdog's own words, as `vmgen status` says it (one verdict: what holds
    the workspace up, and what happens when)."""
    try:
        state = codec.from_value(WatchdogState, with_age(watchdog), "the watchdog's state", strict=False)
    except codec.DocumentError:
        return None
    return {"word": verdict_word(state), "now": what_holds(state), "next": what_happens(state)}


def keep_alive(settings: WebSettings, hours: object) -> dict[str, Any]:
    if hours not in KEEPALIVE_HOURS:
        raise ActionRefused(400, f"hours must be one of {KEEPALIVE_HOURS}")
    lease = leases.add(int(hours) * 3600, "from the workspace page", settings.vm.leases)
    return {"until": lease.until}


def request_backup(settings: WebSettings) -> dict[str, Any]:
    """Ask root for a backup and answer once it started; it goes on after this request ends."""
    from ..control import ControlUnavailable, ask

    try:
        for reply in ask(ControlRequest("backup", trigger="page"), settings.vm, timeout=30):
            if reply.refused or reply.busy:  # busy: another backup runs, or root is flooded
                raise ActionRefused(409, reply.refused or reply.busy)
            if reply.result is not None:
                return {"started": True, "result": codec.from_value(BackupResult, reply.result, strict=False).ok}
            return {"started": True}  # the first progress line: root is at work
    except (ControlUnavailable, OSError) as exc:
        raise ActionRefused(503, f"the backup service does not answer: {exc}") from None
    raise ActionRefused(503, "the backup service closed the connection")


def send_to_agent(settings: WebSettings, text: object) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE:
        raise ActionRefused(400, f"text must be 1 to {MAX_MESSAGE} characters")
    line = " ".join(text.splitlines())  # a newline would press Enter midway
    for keys in (["-l", "--", line], ["Enter"]):
        done = subprocess.run(
            ["tmux", "send-keys", "-t", settings.session, *keys], check=False, capture_output=True, timeout=10
        )
        if done.returncode != 0:
            raise ActionRefused(503, "the agent's session is not running")
    return {"sent": True}


ACTIONS = {
    "/api/keepalive": lambda settings, body: keep_alive(settings, body.get("hours")),
    "/api/backup": lambda settings, body: request_backup(settings),
    "/api/send": lambda settings, body: send_to_agent(settings, body.get("text")),
}


def make_handler(settings: WebSettings) -> type[BaseHTTPRequestHandler]:
    page = resources.files(__package__).joinpath("page.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "vmgen-web"

        def do_GET(self) -> None:  # http.server's naming
            path = urlsplit(self.path).path
            if path == "/":
                self._reply(200, page, "text/html; charset=utf-8")
            elif path == "/api/state":
                self._json(200, collect_state(settings))
            elif path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            action = ACTIONS.get(urlsplit(self.path).path)
            try:
                if action is None:
                    raise ActionRefused(404, "not found")
                self._check_same_origin()
                self._json(200, action(settings, self._body()))
            except ActionRefused as refused:
                self._json(refused.status, {"error": str(refused)})

        def _check_same_origin(self) -> None:
            origin = self.headers.get("Origin")
            if self.headers.get(ACTION_HEADER) != "1" or (
                origin and urlsplit(origin).netloc != self.headers.get("Host")
            ):
                raise ActionRefused(403, "cross-site request refused")

        def _body(self) -> dict[str, Any]:
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                raise ActionRefused(415, "send JSON")
            length = int(self.headers.get("Content-Length") or 0)
            if length > 16 * 1024:
                raise ActionRefused(413, "too large")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                raise ActionRefused(400, "invalid JSON") from None
            if not isinstance(body, dict):
                raise ActionRefused(400, "send a JSON object")
            return body

        def _json(self, status: int, value: Any) -> None:
            self._reply(status, json.dumps(value).encode(), "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "same-origin")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
                "frame-ancestors 'none'",
            )
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            # Prefixing http.server's own format keeps the formatting lazy.
            log.debug("%s " + format, self.address_string(), *args)  # noqa: G003

    return Handler


def serve(settings: WebSettings) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", settings.port), make_handler(settings))
