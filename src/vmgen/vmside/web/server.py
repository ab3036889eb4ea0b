"""The workspace page's HTTP server (stdlib): the page, its state as JSON, the agent's changes (as
JSON, and live as server-sent events), and three actions.

It runs as its own user (`vmgen-page`), on a unix socket systemd made as root: with a domain only
Caddy may connect (root:caddy 0660), and the web login has vouched for every request Caddy sends.
The agent can neither kill, replace nor feed code to this process, nor bind its address first.
What the page needs of the agent or of root (the agent's activity and leases, typing into its
pane, a keepalive lease, a backup) it asks root for over root's page socket (`vmside/pageops.py`);
root's own documents (the watchdog's state, the last backup, the links) are world-readable.

The changes view is made by root running git as the agent (pageops' `changes`); however many
viewers there are, root is asked at most once every CHANGES_SECONDS, and only while somebody looks:
an event stream asks on its own clock and sends the document again only when it changed. With a
domain the stream reaches the browser through the web login's relay, which ends it at Sign out.

Actions are POSTs that must carry a JSON body, a custom header and a same-origin Origin: a page
on another site cannot make the user's browser trigger them. One POST is the exception, an ntfy
button pressed on the phone (PHONE_PATH, the one path Caddy sends here without the login's check):
its body is a capability root minted, and root alone decides what it is worth (pageops' `phone`);
the page only checks its shape and how often such requests come before it asks root. Routes are functions of a request's
parts that return a `Reply` (vmside/httpbase.py); the handler reads and writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...contract import codec
from ...contract.changes import Changes
from ...contract.control import decode_reply
from ...contract.documents import ACTION_WORDS, WatchdogState
from ...contract.names import UNITS, VM, VmPaths
from ...contract.pageops import KEEPALIVE_HOURS, MAX_MESSAGE, PageActivity, PageRequest, encode_request
from ...contract.permissions import DECISIONS, ID_CHARS, PermissionsView
from ...contract.phone_actions import MAX_CAPABILITY, PHONE_PATH, read_capability
from ...contract.verdict_words import budget_words, lifetime_words, verdict_word, what_happens, what_holds
from ...errors import DocumentError
from ..activation import UnixHTTPServer, serve_unix
from ..boot import with_age
from ..httpbase import BaseHandler, Reply, same_origin
from ..services import code_ui_progress
from .certificates import report as certificate_report

log = logging.getLogger(__name__)
ACTION_HEADER = "X-Vmgen-Action"
MAX_BODY = 16 * 1024
ACTIVITY_SECONDS = 2.0  # polls from several tabs within this share one question to root
OPS_TIMEOUT = 45.0  # root's own deadlines are shorter; this only ends a hung connection
DOCUMENT_MAX = 1 << 20
CHANGES_SECONDS = 3.0  # the agent's changes are looked at no more often, whoever asks
STALLED_SECONDS = 30.0  # ... and after a look git did not finish in time (a hanging repository)
STREAM_PATH = "/api/changes/stream"
STREAM_SECONDS = 600.0  # a stream ends after this and the browser opens it again (EventSource)
HEARTBEAT_SECONDS = 15.0  # a comment when nothing changed: a closed connection shows on a write
MAX_STREAMS = 8
STREAM_RETRY_MS = 5000
# ntfy buttons: anyone on the internet can post to PHONE_PATH, and each post that looks like a
# button costs a root process; a person presses a few a minute.
PHONE_PRESSES = 12
PHONE_WINDOW_SECONDS = 60.0


class ActionRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Ops = Callable[[PageRequest], dict[str, Any]]


def root_ops(paths: VmPaths = VM) -> Ops:
    """Ask root's page socket one request; its answer, or ActionRefused."""

    def ask(request: PageRequest) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(OPS_TIMEOUT)
                conn.connect(str(paths.page_ops_socket))
                conn.sendall(encode_request(request))
                data = b""
                while b"\n" not in data and len(data) < DOCUMENT_MAX:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            reply = decode_reply(data.split(b"\n", 1)[0])
        except (OSError, DocumentError) as exc:
            raise ActionRefused(503, f"root's page service does not answer ({exc})") from None
        if reply.busy:  # nothing was done; it may work in a moment
            raise ActionRefused(409, reply.busy)
        if reply.refused:
            raise ActionRefused(503, reply.refused)
        if reply.result is None:
            raise ActionRefused(503, "root's page service sent no result")
        return reply.result

    return ask


@dataclass
class WebSettings:
    vm: VmPaths = VM  # the workspace's description, the watchdog's state, backup results, links
    ops: Ops = field(default_factory=root_ops)
    _activity: tuple[float, PageActivity] = (0.0, PageActivity())
    _permissions: tuple[float, dict[str, Any]] = (0.0, {})  # permissions_state's, as _activity
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changes: tuple[float, dict[str, Any] | None] = (0.0, None)
    _changes_lock: threading.Lock = field(default_factory=threading.Lock)
    streams: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(MAX_STREAMS))
    clock: Callable[[], float] = time.monotonic
    _presses: list[float] = field(default_factory=list)
    _presses_lock: threading.Lock = field(default_factory=threading.Lock)

    def admit_press(self) -> bool:
        """Whether another ntfy button may be asked about now (PHONE_PRESSES a window)."""
        with self._presses_lock:
            now = self.clock()
            self._presses[:] = [t for t in self._presses if now - t < PHONE_WINDOW_SECONDS]
            if len(self._presses) >= PHONE_PRESSES:
                return False
            self._presses.append(now)
            return True

    def changes(self) -> dict[str, Any]:
        """The agent's changes as root last made them, at most CHANGES_SECONDS old; when root does
        not answer, the last good look (or why there is none)."""
        with self._changes_lock:
            at, cached = self._changes
            wait = STALLED_SECONDS if cached is not None and cached.get("cut") == "time" else CHANGES_SECONDS
            if cached is not None and self.clock() - at < wait:
                return cached
            try:
                fresh = codec.to_value(Changes.from_result(self.ops(PageRequest("changes"))))
            except (ActionRefused, DocumentError) as exc:
                log.warning("the agent's changes: %s", exc)
                fresh = cached if cached is not None else codec.to_value(Changes(error=str(exc)))
            self._changes = (self.clock(), fresh)
            return fresh

    def activity(self) -> PageActivity:
        with self._lock:
            at, cached = self._activity
            if time.monotonic() - at < ACTIVITY_SECONDS:
                return cached
            try:
                fresh = PageActivity.from_result(self.ops(PageRequest("activity")))
            except (ActionRefused, DocumentError) as exc:
                log.warning("the page's activity: %s", exc)
                fresh = cached
            self._activity = (time.monotonic(), fresh)
            return fresh


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read(DOCUMENT_MAX))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def collect_state(settings: WebSettings) -> dict[str, Any]:
    workspace = _json_file(settings.vm.workspace_info) or {}
    watchdog = _json_file(settings.vm.watchdog_state) or {}
    backup = _json_file(settings.vm.backup_result)
    restore = _json_file(settings.vm.restore_result)
    activity = settings.activity()
    verdict = watchdog.get("verdict")
    now = time.time()
    return {
        "workspace": workspace.get("name", ""),
        "agent": watchdog.get("agent", {}),
        "verdict": verdict,
        # What the configured action does, for "backs up and deletes itself in 28 min".
        "action_words": ACTION_WORDS.get(verdict.get("action", ""), "") if isinstance(verdict, dict) else "",
        "said": said(watchdog, now),
        # The idle action or the hard lifetime, once under way: its step and what happened.
        "acting": watchdog.get("acting"),
        # With a budget: this workspace's spend against its share of budget_month (root's count).
        "budget": watchdog.get("budget"),
        "leases": [{"until": lease.until, "reason": lease.reason} for lease in activity.leases],
        "backup": {k: backup.get(k) for k in ("ok", "backup_id", "ciphertext_bytes", "finished_at", "error")}
        if backup
        else None,
        # The backup this workspace was restored from, until it makes one of its own.
        "restored": {k: restore.get(k) for k in ("backup_id", "workspace", "finished_at")}
        if restore and restore.get("ok") is True
        else None,
        "web": _json_file(settings.vm.web_links) or {},
        # The code UI installs in the background after `ready`: how far it is until it answers.
        "code_ui": code_ui_progress(settings.vm),
        # Hostnames without a certificate, each with why (DNS, the ACME server's refusal or limit).
        "certificates": certificate_report(settings.vm).lines(),
        "activity": [codec.to_value(item) for item in activity.items],
        "permissions": permissions_state(settings),
        "now": now,
    }


def said(watchdog: dict[str, Any], now: float | None = None) -> dict[str, str] | None:
    """The verdict in the watchdog's own words, as `vmgen status` says it (one verdict: what holds
    the workspace up, and what happens when); `now`: this VM's wall clock, for the clock time the
    hard lifetime ends at."""
    try:
        state = codec.from_value(WatchdogState, with_age(watchdog), "the watchdog's state", strict=False)
    except DocumentError:
        return None
    return {
        "word": verdict_word(state),
        "now": what_holds(state),
        "next": what_happens(state),
        "lifetime": lifetime_words(state, now=now),
        "budget": budget_words(state),
    }


def keep_alive(settings: WebSettings, hours: object) -> dict[str, Any]:
    if not isinstance(hours, int) or isinstance(hours, bool) or hours not in KEEPALIVE_HOURS:
        raise ActionRefused(400, f"hours must be one of {KEEPALIVE_HOURS}")
    return settings.ops(PageRequest("keepalive", hours=hours))


def request_backup(settings: WebSettings) -> dict[str, Any]:
    """Ask root for a backup and answer once it started; it goes on after this request ends."""
    return settings.ops(PageRequest("backup"))


def send_to_agent(settings: WebSettings, text: object) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE:
        raise ActionRefused(400, f"text must be 1 to {MAX_MESSAGE} characters")
    return settings.ops(PageRequest("send", text=text))


# --- permission prompts (contract/permissions.py) -------------------------------------------


def permissions_state(settings: WebSettings) -> dict[str, Any]:
    """The agent's pending permission prompts as root holds them (every text cut and cleaned by
    root; the page shows them as text), and whether this page may answer them. Polls from
    several tabs within ACTIVITY_SECONDS share one question to root (a root process each)."""
    with settings._lock:
        at, cached = settings._permissions
        if at and time.monotonic() - at < ACTIVITY_SECONDS:
            return cached
    try:
        view = codec.from_value(
            PermissionsView, settings.ops(PageRequest("permissions")), "the pending permissions", strict=False
        )
    except (ActionRefused, DocumentError) as exc:
        log.warning("the page's permissions: %s", exc)
        view = PermissionsView()
    fresh = codec.to_value(view)
    with settings._lock:
        settings._permissions = (time.monotonic(), fresh)
    return fresh


def answer_permission(settings: WebSettings, request_id: object, decision: object) -> dict[str, Any]:
    if not isinstance(request_id, str) or not ID_CHARS.fullmatch(request_id) or decision not in DECISIONS:
        raise ActionRefused(400, "an answer names a request id and allow or deny")
    try:
        return settings.ops(PageRequest("answer", request_id=request_id, decision=str(decision)))
    except ActionRefused as refused:
        raise ActionRefused(409 if refused.status == 503 else refused.status, str(refused)) from None
    finally:
        with settings._lock:
            settings._permissions = (0.0, {})  # the next look asks root again


ACTIONS = {
    "/api/keepalive": lambda settings, body: keep_alive(settings, body.get("hours")),
    "/api/backup": lambda settings, body: request_backup(settings),
    "/api/send": lambda settings, body: send_to_agent(settings, body.get("text")),
    "/api/permission": lambda settings, body: answer_permission(settings, body.get("id"), body.get("decision")),
}


PAGE_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "worker-src 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = (("Referrer-Policy", "same-origin"), ("Content-Security-Policy", PAGE_CSP))


def page_html() -> bytes:
    return resources.files(__package__).joinpath("page.html").read_bytes()


def answer_get(settings: WebSettings, path: str, page: bytes) -> Reply:
    """GET: the page, its state, the health check."""
    if path == "/":
        return Reply(200, page, "text/html; charset=utf-8")
    if path == "/api/state":
        return Reply.json(200, collect_state(settings))
    if path == "/api/changes":  # the event stream's fallback: polled
        return Reply.json(200, settings.changes())
    if path == "/healthz":
        return Reply(200, b"ok\n", "text/plain")
    return Reply.json(404, {"error": "not found"})


def change_version(document: dict[str, Any]) -> str:
    """What tells two looks apart: everything but when it was made."""
    return hashlib.sha256(json.dumps({**document, "made_at": 0}, sort_keys=True).encode()).hexdigest()


def change_events(
    settings: WebSettings, wait: Callable[[float], object] = time.sleep, seconds: float = STREAM_SECONDS
) -> Iterator[bytes]:
    """The event stream's bytes: the changes at once, then again each time they differ (looked at
    every CHANGES_SECONDS), a heartbeat comment when nothing was sent for HEARTBEAT_SECONDS; it ends
    after `seconds` (the browser reconnects after `retry`)."""
    yield f"retry: {STREAM_RETRY_MS}\n\n".encode()
    end = settings.clock() + seconds
    sent, quiet_since = "", settings.clock()
    while settings.clock() < end:
        document = settings.changes()
        version = change_version(document)
        if version != sent:
            sent, quiet_since = version, settings.clock()
            yield b"event: changes\ndata: " + json.dumps(document).encode() + b"\n\n"
        elif settings.clock() - quiet_since >= HEARTBEAT_SECONDS:
            quiet_since = settings.clock()
            yield b": nothing new\n\n"
        wait(CHANGES_SECONDS)


def open_stream(settings: WebSettings, headers: Any) -> Reply | None:
    """None when an event stream may start (a slot was taken: release it at its end); else the
    refusal. The page's own script asks (same origin); past MAX_STREAMS it polls instead."""
    if "text/event-stream" not in (headers.get("Accept") or ""):
        return Reply.json(406, {"error": "an event stream: send Accept: text/event-stream"})
    if not same_origin(headers):
        return Reply.json(403, {"error": "cross-site request refused"})
    if not settings.streams.acquire(blocking=False):
        return Reply.json(503, {"error": "too many live views; the page polls instead"})
    return None


# ntfy's web app presses an http button with fetch() from its own origin: it may read the answer
# (which says only done or why not). No cookie is involved: the capability is the credential.
PHONE_HEADERS = (("Access-Control-Allow-Origin", "*"),)


def press_button(settings: WebSettings, raw: bytes) -> Reply:
    """An ntfy button's POST: its body is the capability (contract.phone_actions)."""
    try:
        if len(raw) > MAX_CAPABILITY:
            raise ActionRefused(413, "too large")
        try:
            capability = raw.decode().strip()
            read_capability(capability)
        except (UnicodeDecodeError, DocumentError):
            raise ActionRefused(400, "not a vmgen button") from None
        if not settings.admit_press():
            raise ActionRefused(429, "too many buttons pressed; try again in a minute")
        try:
            done = settings.ops(PageRequest("phone", capability=capability))
        except ActionRefused as refused:
            raise ActionRefused(409 if refused.status == 503 else refused.status, str(refused)) from None
        finally:
            with settings._lock:
                settings._permissions = (0.0, {})
        return Reply(200, json.dumps(done).encode(), "application/json", PHONE_HEADERS)
    except ActionRefused as refused:
        return Reply(refused.status, json.dumps({"error": str(refused)}).encode(), "application/json", PHONE_HEADERS)


def answer_post(settings: WebSettings, path: str, headers: Any, raw: bytes | None) -> Reply:
    """POST: an action, from the page itself only (a JSON body, the action header, a same-origin
    Origin), or an ntfy button's (PHONE_PATH); `raw` is None for a body over MAX_BODY."""
    try:
        if raw is None:
            raise ActionRefused(413, "too large")
        if path == PHONE_PATH:
            return press_button(settings, raw)
        body = _json_body(headers, raw)
        action = ACTIONS.get(path)
        if action is None:
            raise ActionRefused(404, "not found")
        if headers.get(ACTION_HEADER) != "1" or not same_origin(headers):
            raise ActionRefused(403, "cross-site request refused")
        return Reply.json(200, action(settings, body))
    except ActionRefused as refused:
        return Reply.json(refused.status, {"error": str(refused)})


def _json_body(headers: Any, raw: bytes) -> dict[str, Any]:
    if not (headers.get("Content-Type") or "").startswith("application/json"):
        raise ActionRefused(415, "send JSON")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ActionRefused(400, "invalid JSON") from None
    if not isinstance(body, dict):
        raise ActionRefused(400, "send a JSON object")
    return body


def make_handler(settings: WebSettings) -> type[BaseHandler]:
    page = page_html()

    class Handler(BaseHandler):
        server_version = "vmgen-web"
        log = logging.getLogger(__name__)
        page_headers = PAGE_HEADERS

        def do_GET(self) -> None:  # http.server's naming
            path = urlsplit(self.path).path
            if path == STREAM_PATH:
                self._stream()
                return
            self.send(answer_get(settings, path, page))

        def _stream(self) -> None:
            refused = open_stream(settings, self.headers)
            if refused is not None:
                self.send(refused)
                return
            try:
                self.close_connection = True
                self.send_response(200)
                for name, value in (
                    ("Content-Type", "text/event-stream"),
                    ("Cache-Control", "no-store"),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Connection", "close"),
                    *PAGE_HEADERS,
                ):
                    self.send_header(name, value)
                self.end_headers()
                for chunk in change_events(settings):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except OSError:
                pass  # the viewer went away (or signed out: the login closed its relay)
            finally:
                settings.streams.release()

        def do_POST(self) -> None:
            raw = self.read_body(MAX_BODY)  # before any answer: this connection may be kept alive
            self.send(answer_post(settings, urlsplit(self.path).path, self.headers, raw))

    return Handler


def serve(settings: WebSettings, path: Path | None = None) -> UnixHTTPServer:
    """Listen on `path`, or on the socket systemd passed (socket activation) when None."""
    return serve_unix(make_handler(settings), path, UNITS.web)
