"""The login service's HTTP side, on a unix socket behind Caddy.

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
from urllib.parse import parse_qs, urlencode, urlsplit

from ...contract.names import UNITS, VM, VmPaths
from ...contract.weblogin import (
    CLEAR_SITE_DATA,
    COOKIE_BUDGET,
    LOGIN_PREFIX,
    MAX_HEADER_BYTES,
    SESSION_COOKIE,
    WebLoginSettings,
    WebSite,
    check_password,
)
from ..activation import UnixHTTPServer, serve_unix
from ..httpbase import BaseHandler, Reply
from . import pages
from .requests import (
    Facts,
    backend_cookies,
    cookie_pairs,
    cross_origin_refusal,
    expiring,
    safe_path,
    session_tokens,
    split_host,
)
from .sessions import FailureLimiter, Family, Sessions, SignOuts
from .streams import Streams, read_head, relay

log = logging.getLogger(__name__)
MAX_FORM = 4096
MAX_STREAM_BODY = 1 << 20
MAX_CONNECTIONS = 192  # Caddy's kept-alive connections and the live streams together
BACKEND_CONNECT_SECONDS = 5.0
BACKEND_ANSWER_SECONDS = 30.0
SWEEP_SECONDS = 1.0  # how soon an expired login's live connections close
# The browser's "clean up after yourself" marker while foreign cookies are being expired: one
# round of expiring per minute at most, whatever a cookie's path makes of the attempt.
TIDY_COOKIE = f"{SESSION_COOKIE}-tidy"
# Hop-by-hop (RFC 9110 7.6.1) or ours: never passed on to a backend as they came.
NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "cookie"}
)


@dataclass(frozen=True)
class LoginConfig:
    settings: WebLoginSettings
    verifier: str
    code_ui_secret: str = ""
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
        code_ui_secret=optional(vm.web_login_code_ui_secret),
        desktop_password=optional(vm.web_login_desktop_password),
    )


class LoginService:
    """The state behind the handler: configuration, sessions and their live connections, the
    sign-out walks, the failure counter."""

    def __init__(self, config: LoginConfig, clock: Any = time.time, ports: dict[str, int] | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.streams = Streams()
        self.sessions = Sessions(config.settings.session_hours * 3600, clock, on_end=self.streams.end_family)
        self.sign_outs = SignOuts(clock)
        self.limiter = FailureLimiter(config.settings.max_failures, config.settings.failure_window_seconds, clock)
        self.clock = clock
        self.ports = ports or {}  # a role's backend elsewhere than the contract's port (tests)

    def backend(self, site: WebSite) -> tuple[str, int] | None:
        """Where a site's streams go: its backend on the loopback (the page has none to stream)."""
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
        log = logging.getLogger(__name__)
        body = b""
        protocol_version = "HTTP/1.1"  # Caddy keeps its connections to us open

        # --- routing ------------------------------------------------------------------------
        def do_GET(self) -> None:  # http.server's naming
            route = self._route()
            if route is None:
                self._run(self._stream)
                return
            handler = {
                "/check": self._check,
                "/login": self._login_form,
                "/open": self._open,
                "/session": self._session_from_ticket,
                "/signed-out": self._signed_out,
            }.get(route)
            facts = self._facts()
            if handler not in (None, self._check) and (refusal := self._own_refusal(facts)):
                self._text(403, f"refused: {refusal}")
                return
            self._run(handler)

        def do_POST(self) -> None:
            route = self._route()
            body = self.read_body(MAX_STREAM_BODY if route is None else MAX_FORM)
            if body is None:
                self._text(413, "too large")
                return
            self.body = body
            if route is None:
                self._run(self._stream)
                return
            self._run({"/login": self._login, "/logout": self._logout}.get(route))

        def _route(self) -> str | None:
            """The login's own path below /.vmgen/ ("" for an unknown one); None for any other path,
            which only a stream Caddy hands over can have."""
            path = urlsplit(self.path).path
            return path[len(LOGIN_PREFIX) :] if path.startswith(LOGIN_PREFIX + "/") else None

        def _run(self, route: Any) -> None:
            if route is None:
                self._text(404, "not found")
                return
            try:
                route()
            except OSError:
                return  # Caddy or the client went away: nobody to answer
            except Exception:  # one bad request must not end the service
                log.exception("web login: %s %s failed", self.command, self.path)
                self._text(500, "the login service failed; see its journal")

        def _own_refusal(self, facts: Facts) -> str | None:
            """Why a request to one of vmgen's own hostnames is refused before anything else."""
            if facts.service_worker:
                # A worker registered on a vmgen hostname would answer for it, the sign-in form
                # included, long after Sign out: vmgen serves none, so none is let in.
                return "no service worker on vmgen's own hostnames"
            return cross_origin_refusal(facts)

        # --- forward_auth -------------------------------------------------------------------
        def _check(self) -> None:
            facts = self._facts(forwarded=True)
            site = settings.site(facts.hostname)
            if site is None:
                self._text(403, "not a hostname of this workspace")
                return
            if site.own and (refusal := self._own_refusal(facts)):
                self._text(403, f"refused: {refusal}")
                return
            if self._signed_in(site.hostname) is None:
                if facts.navigation:
                    self._redirect(302, self._sign_in_url(facts, site))
                else:
                    self._text(401, f"sign in at {self._main_origin(facts)}/")
                return
            cookies = backend_cookies(self._cookies(), COOKIE_BUDGET if site.own else None)
            if cookies.dropped and facts.navigation and not self._tidied():
                # Foreign cookies past the budget (a preview's cookie bomb on the parent domain):
                # ignored already; on a page load, the browser is also told to drop them.
                marker = f"{TIDY_COOKIE}=1; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
                self._redirect(303, safe_path(facts.uri), [("Set-Cookie", marker)])
                return
            if (
                site.role == "desktop"
                and facts.navigation
                and urlsplit(facts.uri).path == "/"
                and service.config.desktop_password
            ):
                self._redirect(302, pages.desktop_start(service.config.desktop_password))
                return
            self._reply(200, b"", "text/plain", [("X-Vmgen-Cookie", cookies.header)], tidy=False)

        # --- signing in on the workspace's hostname -----------------------------------------
        def _login_form(self) -> None:
            facts = self._facts()
            if facts.hostname != settings.host:
                self._redirect(303, f"{self._main_origin(facts)}{LOGIN_PREFIX}/login")
                return
            query = self._query()
            to, path = query.get("to", ""), safe_path(query.get("path"))
            signed_in = self._signed_in(settings.host)
            if signed_in is not None:
                self._go_on(facts, signed_in, to, path)
                return
            self._html(200, pages.login_page(settings.host, settings.user, to, path))

        def _login(self) -> None:
            facts = self._facts()
            if facts.hostname != settings.host or self._own_refusal(facts):
                self._text(403, "sign in from the workspace's own page")
                return
            form = self._form()
            to, path = form.get("to", ""), safe_path(form.get("path"))
            client = self.headers.get("X-Vmgen-Client") or "unknown"
            if service.limiter.blocked(client):
                log.warning("web login: refused %s (too many failed logins)", client)
                self._html(429, pages.login_page(settings.host, settings.user, to, path, "Too many failed logins."))
                return
            user, password = form.get("user", ""), form.get("password", "")
            if user != settings.user or not check_password(service.config.verifier, password):
                service.limiter.failed(client)
                log.warning("web login: failed login from %s", client)
                error = "Wrong user or password."
                self._html(401, pages.login_page(settings.host, settings.user, to, path, error))
                return
            service.limiter.succeeded(client)
            token, family = service.sessions.login(settings.host)
            log.info("web login: signed in from %s", client)
            self._go_on(facts, family, to, path, cookie=self._cookie(token, family, settings.host))

        def _open(self) -> None:
            facts = self._facts()
            query = self._query()
            to, path = query.get("to", ""), safe_path(query.get("path"))
            signed_in = self._signed_in(settings.host) if facts.hostname == settings.host else None
            if signed_in is None:
                again = urlencode({"to": to, "path": path})
                self._redirect(303, f"{self._main_origin(facts)}{LOGIN_PREFIX}/login?{again}")
                return
            self._go_on(facts, signed_in, to, path)

        def _go_on(self, facts: Facts, family: Family, to: str, path: str, cookie: str = "") -> None:
            """After signing in: the path on this hostname, or a ticket to another one."""
            headers = [("Set-Cookie", cookie)] if cookie else []
            site = settings.labelled(to)
            if site is None:
                self._redirect(303, path, headers)
                return
            ticket = service.sessions.ticket(family, site.hostname, path)
            target = f"{self._origin(facts, site.hostname)}{LOGIN_PREFIX}/session?ticket={ticket}"
            self._redirect(303, target, headers)

        # --- arriving on another hostname ----------------------------------------------------
        def _session_from_ticket(self) -> None:
            facts = self._facts()
            site = settings.site(facts.hostname)
            redeemed = service.sessions.redeem(self._query().get("ticket", ""), facts.hostname) if site else None
            if site is None or redeemed is None:
                self._html(
                    400,
                    pages.message_page("Sign-in link expired", "Open it again from the workspace page."),
                )
                return
            cookie = [("Set-Cookie", self._cookie(redeemed.token, redeemed.family, site.hostname))]
            if site.role == "code" and service.config.code_ui_secret:
                token = pages.code_ui_token(
                    service.config.code_ui_secret,
                    settings.code_ui_user_id,
                    settings.user,
                    redeemed.family.expires,
                    service.clock(),
                )
                body, csp = pages.code_ui_handoff(token, redeemed.path)
                self._reply(200, body, "text/html; charset=utf-8", cookie, csp=csp)
            elif site.role == "desktop" and redeemed.path == "/" and service.config.desktop_password:
                self._redirect(303, pages.desktop_start(service.config.desktop_password), cookie)
            else:
                self._redirect(303, redeemed.path, cookie)

        # --- signing out ---------------------------------------------------------------------
        def _logout(self) -> None:
            facts = self._facts()
            if facts.hostname != settings.host or self._own_refusal(facts):
                self._text(403, "sign out from the workspace's own page")
                return
            family = self._signed_in(settings.host)
            if family is not None:
                service.sessions.logout(family)  # its live connections close with it
            others = tuple(site.hostname for site in settings.sites() if site.own and site.hostname != settings.host)
            walk = service.sign_outs.start(others) if others else ""
            self._redirect(303, self._after_sign_out(facts, walk, others), self._cleared())

        def _signed_out(self) -> None:
            """One step of the walk through vmgen's hostnames after Sign out."""
            facts = self._facts()
            walk = self._query().get("walk", "")
            rest = service.sign_outs.step(walk, facts.hostname)
            if rest is None:
                self._redirect(303, f"{self._main_origin(facts)}{LOGIN_PREFIX}/login")
                return
            self._redirect(303, self._after_sign_out(facts, walk, rest), self._cleared())

        def _after_sign_out(self, facts: Facts, walk: str, hostnames: tuple[str, ...]) -> str:
            if not hostnames:
                return f"{self._main_origin(facts)}{LOGIN_PREFIX}/login"
            return f"{self._origin(facts, hostnames[0])}{LOGIN_PREFIX}/signed-out?{urlencode({'walk': walk})}"

        def _cleared(self) -> list[tuple[str, str]]:
            """What each of vmgen's hostnames answers on the way out: its site data cleared (a
            service worker, a page cached by the agent's backend, the code UI's token) and the
            login's cookies expired."""
            return [
                ("Clear-Site-Data", CLEAR_SITE_DATA),
                ("Set-Cookie", f"{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
                ("Set-Cookie", f"{TIDY_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"),
            ]

        # --- live connections ----------------------------------------------------------------
        def _stream(self) -> None:
            """A websocket or an event stream: checked as any request, then relayed to the backend
            under its login, which closes it when the login ends."""
            facts = self._facts(stream=True)
            site = settings.site(facts.hostname)
            address = service.backend(site) if site else None
            self.close_connection = True  # the connection is the stream's, or it ends here
            if site is None or address is None or not (facts.websocket or "text/event-stream" in facts.accept):
                self._text(404, "not found")
                return
            if site.own and (refusal := self._own_refusal(facts)):
                self._text(403, f"refused: {refusal}")
                return
            family = self._signed_in(site.hostname)
            if family is None:
                self._text(401, f"sign in at {self._main_origin(facts)}/")
                return
            try:
                backend = socket.create_connection(address, timeout=BACKEND_CONNECT_SECONDS)
            except OSError:
                self._text(502, "the backend does not answer")
                return
            with backend:
                try:
                    backend.settimeout(BACKEND_ANSWER_SECONDS)
                    backend.sendall(self._backend_head(site, facts) + self.body)
                    head, rest = read_head(backend)
                except OSError:
                    self._text(502, "the backend did not answer")
                    return
                status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
                if facts.websocket and status != b"101":
                    # A kept-alive connection must not carry the backend's answer on: Caddy could
                    # send the next request down it, past the check.
                    self._text(502, "the backend refused the websocket")
                    return
                stream = service.streams.add(family.id, self.connection, backend)
                if stream is None:
                    self._text(503, "too many live connections")
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

        def _backend_head(self, site: WebSite, facts: Facts) -> bytes:
            lines = [f"{self.command} {self.path} HTTP/1.1"]
            for name, value in self.headers.items():
                if name.lower() not in NOT_FORWARDED and not name.lower().startswith("x-vmgen-"):
                    lines.append(f"{name}: {' '.join(value.split())}")
            cookies = backend_cookies(self._cookies(), COOKIE_BUDGET if site.own else None).header
            if cookies:
                lines.append(f"Cookie: {cookies}")
            lines += ["Connection: Upgrade", "Upgrade: websocket"] if facts.websocket else ["Connection: close"]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")

        # --- reading the request ------------------------------------------------------------
        def _facts(self, forwarded: bool = False, stream: bool = False) -> Facts:
            header = self.headers.get
            # Caddy hands websockets over whole (never to forward_auth): only a stream is one.
            upgrade = header("Upgrade") if stream else None
            return Facts(
                host=header("Host") or "",
                method=(header("X-Forwarded-Method") if forwarded else None) or self.command,
                uri=(header("X-Forwarded-Uri") if forwarded else None) or self.path,
                origin=header("Origin"),
                fetch_site=header("Sec-Fetch-Site"),
                fetch_mode=header("Sec-Fetch-Mode"),
                fetch_dest=header("Sec-Fetch-Dest"),
                websocket=(upgrade or "").lower() == "websocket",
                accept=header("Accept") or "",
                service_worker=(header("Service-Worker") or "").lower() == "script",
            )

        def _cookies(self) -> list[str]:
            return self.headers.get_all("Cookie") or []

        def _signed_in(self, hostname: str) -> Family | None:
            for token in session_tokens(self._cookies()):
                found = service.sessions.session(token, hostname)
                if found is not None:
                    return found.family
            return None

        def _tidied(self) -> bool:
            return any(name == TIDY_COOKIE for name, _ in cookie_pairs(self._cookies()))

        def _query(self) -> dict[str, str]:
            return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

        def _form(self) -> dict[str, str]:
            if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
                return {}
            raw = self.body.decode(errors="replace")
            return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

        def _origin(self, facts: Facts, hostname: str) -> str:
            port = split_host(facts.host)[1]
            return f"https://{hostname}{':' + port if port else ''}"

        def _main_origin(self, facts: Facts) -> str:
            return self._origin(facts, settings.host)

        def _sign_in_url(self, facts: Facts, site: WebSite) -> str:
            path = safe_path(facts.uri)
            if site.hostname == settings.host:
                return f"{LOGIN_PREFIX}/login?{urlencode({'path': path})}"
            return f"{self._main_origin(facts)}{LOGIN_PREFIX}/open?{urlencode({'to': site.label, 'path': path})}"

        def _cookie(self, token: str, family: Family, hostname: str) -> str:
            seconds = max(0, int(family.expires - service.clock()))
            # Strict where the hostname is the page's site; a preview on its own domain (another
            # site) would never get a Strict cookie on a page load that came from the page.
            site = settings.site(hostname)
            same_site = "Strict" if site is None or site.same_site else "Lax"
            return f"{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={seconds}"

        # --- answering ----------------------------------------------------------------------
        def _redirect(self, status: int, location: str, headers: list[tuple[str, str]] | None = None) -> None:
            self._reply(status, b"", "text/plain", [("Location", location), *(headers or [])])

        def _text(self, status: int, text: str) -> None:
            self._reply(status, (text + "\n").encode(), "text/plain; charset=utf-8")

        def _html(self, status: int, body: bytes) -> None:
            self._reply(status, body, "text/html; charset=utf-8")

        def _reply(
            self,
            status: int,
            body: bytes,
            content_type: str,
            headers: list[tuple[str, str]] | None = None,
            csp: str = pages.PAGE_CSP,
            tidy: bool = True,
        ) -> None:
            own = (("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"), ("Content-Security-Policy", csp))
            self.send(Reply(status, body, content_type, tuple(headers or ())), (*self._expired(tidy), *own))

        def _expired(self, tidy: bool = True) -> list[tuple[str, str]]:
            """On vmgen's own hostnames, whatever the browser answers to comes with the foreign
            cookies past the budget expired (a preview's cookie bomb)."""
            if not tidy or not hasattr(self, "headers"):
                return []
            site = settings.site(split_host(self.headers.get("Host") or "")[0])
            if site is None or not site.own:
                return []
            dropped = backend_cookies(self._cookies()).dropped
            return [("Set-Cookie", value) for value in expiring(dropped, site.hostname)]

        def address_string(self) -> str:  # Caddy says whose request it hands over
            return self.headers.get("X-Vmgen-Client", "-") if hasattr(self, "headers") else "-"

    return Handler


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
