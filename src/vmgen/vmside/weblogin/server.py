"""The login service's HTTP side, on a unix socket behind Caddy: its state (LoginService) and its
handler, which answers through the routes (routes.py) and relays the live streams itself.

GET  /.vmgen/check       forward_auth's question for every other request: 200 (with the
                         cookies a backend may see), a redirect to sign in, 401 or 403
GET  /.vmgen/login       the form (the workspace's hostname only); POST checks the password
GET  /.vmgen/open        from the workspace's hostname to another one: a ticket, then
GET  /.vmgen/session     on that hostname: its own session cookie (and the code UI's token,
                         or the desktop's password)
POST /.vmgen/logout      ends the login on every hostname, and closes its live connections
GET  /.vmgen/signed-out  the walk after Sign out: each of vmgen's hostnames clears its site data
any other path           a websocket or event stream Caddy hands over whole: checked like the
                         rest, then relayed to its backend for as long as the login lasts
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...contract.names import UNITS, VM, VmPaths
from ...contract.weblogin import COOKIE_BUDGET, MAX_HEADER_BYTES, WebLoginSettings, WebSite
from ..activation import UnixHTTPServer, serve_unix
from ..httpbase import BaseHandler, Reply
from . import pages
from .requests import Facts, backend_cookies
from .routes import (
    Allowed,
    LoginRequest,
    answer,
    expired_cookies,
    main_origin,
    own_refusal,
    route_of,
    signed_in,
)
from .sessions import FailureLimiter, Sessions, SignOuts
from .streams import Streams, read_head, relay

log = logging.getLogger(__name__)
MAX_FORM = 4096
MAX_STREAM_BODY = 1 << 20
MAX_CONNECTIONS = 192  # Caddy's kept-alive connections and the live streams together
BACKEND_CONNECT_SECONDS = 5.0
BACKEND_ANSWER_SECONDS = 30.0
SWEEP_SECONDS = 1.0  # how soon an expired login's live connections close
# Hop-by-hop (RFC 9110 7.6.1) or ours: never passed on to a backend as they came.
NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "cookie"}
)


@dataclass(frozen=True)
class LoginConfig:
    settings: WebLoginSettings
    verifier: str
    desktop_password: str = ""


def load_config(vm: VmPaths = VM) -> LoginConfig:
    def optional(path: Path) -> str:
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            return ""

    return LoginConfig(
        settings=WebLoginSettings.loads(vm.web_login_settings.read_text(), str(vm.web_login_settings)),
        verifier=vm.web_login_verifier.read_text().strip(),
        desktop_password=optional(vm.web_login_desktop_password),
    )


class LoginService:
    """The state behind the handler: configuration, sessions and their live connections, the
    sign-out walks, the failure counter."""

    def __init__(
        self,
        config: LoginConfig,
        clock: Any = time.time,
        ports: dict[str, int] | None = None,
        page_socket: Path = VM.page_socket,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self.streams = Streams()
        self.sessions = Sessions(config.settings.session_hours * 3600, clock, on_end=self.streams.end_family)
        self.sign_outs = SignOuts(clock)
        self.limiter = FailureLimiter(config.settings.max_failures, config.settings.failure_window_seconds, clock)
        self.clock = clock
        self.ports = ports or {}  # a role's backend elsewhere than the contract's port (tests)
        self.page_socket = page_socket

    def backend(self, site: WebSite) -> tuple[str, int] | str | None:
        """Where a site's streams go: its backend on the loopback, or the page's unix socket (the
        changes view's events; the service's unit adds Caddy's group, which that socket admits)."""
        if site.role == "page":
            return str(self.page_socket)
        port = self.ports.get(site.role, site.port)
        return ("127.0.0.1", port) if port else None

    def sweep_forever(self, interval: float = SWEEP_SECONDS) -> None:
        while True:
            time.sleep(interval)
            self.sessions.sweep()


def make_handler(service: LoginService) -> type[BaseHandler]:
    settings = service.settings

    class Handler(BaseHandler):
        server_version = "vmgen-web-login"
        log = log
        page_headers = (
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", pages.PAGE_CSP),
        )
        body = b""
        protocol_version = "HTTP/1.1"  # Caddy keeps its connections to us open

        def do_GET(self) -> None:  # http.server's naming
            self._answer()

        def do_POST(self) -> None:
            body = self.read_body(MAX_STREAM_BODY if route_of(self.path) is None else MAX_FORM)
            if body is None:
                self._send(Reply.text(413, "too large"))
                return
            self.body = body
            self._answer()

        def _answer(self) -> None:
            request = LoginRequest(self.command, self.path, self.headers, self.body)
            try:
                if route_of(self.path) is None:
                    self._stream(request)
                else:
                    self._send(answer(service, request))
            except OSError:
                return  # Caddy or the client went away: nobody to answer
            except Exception:  # one bad request must not end the service
                log.exception("web login: %s %s failed", self.command, urlsplit(self.path).path)
                self._send(Reply.text(500, "the login service failed; see its journal"))

        def _send(self, reply: Reply) -> None:
            if isinstance(reply, Allowed) or not hasattr(self, "headers"):
                self.send(reply)
                return
            request = LoginRequest(self.command, self.path, self.headers)
            self.send(reply, tuple(expired_cookies(service, request)))

        # --- live connections ----------------------------------------------------------------
        def _stream(self, request: LoginRequest) -> None:
            """A websocket or an event stream: checked as any request, then relayed to the backend
            under its login, which closes it when the login ends."""
            facts = request.facts(stream=True)
            site = settings.site(facts.hostname)
            address = service.backend(site) if site else None
            self.close_connection = True  # the connection is the stream's, or it ends here
            if site is None or address is None or not (facts.websocket or "text/event-stream" in facts.accept):
                self._send(Reply.text(404, "not found"))
                return
            if site.own and (refusal := own_refusal(facts)):
                self._send(Reply.text(403, f"refused: {refusal}"))
                return
            family = signed_in(service, request, site.hostname)
            if family is None:
                self._send(Reply.text(401, f"sign in at {main_origin(service, facts)}/"))
                return
            try:
                backend = connect(address, BACKEND_CONNECT_SECONDS)
            except OSError:
                self._send(Reply.text(502, "the backend does not answer"))
                return
            with backend:
                try:
                    backend.settimeout(BACKEND_ANSWER_SECONDS)
                    backend.sendall(backend_head(request, site, facts) + self.body)
                    head, rest = read_head(backend)
                except OSError:
                    self._send(Reply.text(502, "the backend did not answer"))
                    return
                status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
                if facts.websocket and status != b"101":
                    # A kept-alive connection must not carry the backend's answer on: Caddy could
                    # send the next request down it, past the check.
                    self._send(Reply.text(502, "the backend refused the websocket"))
                    return
                stream = service.streams.add(family.id, self.connection, backend)
                if stream is None:
                    self._send(Reply.text(503, "too many live connections"))
                    return
                try:
                    if not service.sessions.alive(family.id):  # signed out in the meantime
                        return
                    backend.settimeout(None)
                    self.connection.sendall((head if facts.websocket else _closing(head)) + rest)
                    relay(stream, self.rfile.read1, self.connection, backend)
                finally:
                    stream.close()
                    service.streams.remove(stream)

        def address_string(self) -> str:  # Caddy says whose request it hands over
            return self.headers.get("X-Vmgen-Client", "-") if hasattr(self, "headers") else "-"

    return Handler


def connect(address: tuple[str, int] | str, timeout: float) -> socket.socket:
    """A backend on the loopback, or on a unix socket (a path)."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def backend_head(request: LoginRequest, site: WebSite, facts: Facts) -> bytes:
    """The head of a stream's request as its backend gets it: hop-by-hop and vmgen's own headers
    dropped, the foreign cookies within the budget."""
    lines = [f"{request.command} {request.path} HTTP/1.1"]
    for name, value in request.headers.items():
        if name.lower() not in NOT_FORWARDED and not name.lower().startswith("x-vmgen-"):
            lines.append(f"{name}: {' '.join(value.split())}")
    cookies = backend_cookies(request.cookies, COOKIE_BUDGET if site.own else None).header
    if cookies:
        lines.append(f"Cookie: {cookies}")
    lines += ["Connection: Upgrade", "Upgrade: websocket"] if facts.websocket else ["Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


def _closing(head: bytes) -> bytes:
    """A response head that ends its connection: the relay is no kept-alive connection."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [
        line
        for line in lines[1:]
        if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive", b"proxy-connection")
    ]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


def accept_large_headers() -> None:
    """http.server reads request headers with http.client's limits (a line of 64 KiB, 100 lines)
    and answers 431 past them: a preview's cookie bomb on the parent domain would lock the user out
    of every hostname. The login service reads what Caddy accepted (Caddy's own limit, which the
    Caddyfile sets), and ignores what it does not need."""
    http.client._MAXLINE = MAX_HEADER_BYTES  # type: ignore[attr-defined]  # no public setting
    http.client._MAXHEADERS = 1000  # type: ignore[attr-defined]


def serve(service: LoginService, path: Path | None = None) -> UnixHTTPServer:
    """Listen on `path`, or on the socket systemd passed (socket activation) when None; expired
    logins' live connections are closed from here on."""
    accept_large_headers()
    server = serve_unix(make_handler(service), path, UNITS.web_login, MAX_CONNECTIONS)
    threading.Thread(target=service.sweep_forever, daemon=True, name="sweep").start()
    return server
