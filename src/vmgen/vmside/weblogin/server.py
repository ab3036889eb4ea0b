"""The login service's HTTP side, on a unix socket behind Caddy.

GET  /.vmgen/check     forward_auth's question for every other request: 200 (with the
                       cookies a backend may see), a redirect to sign in, 401 or 403
GET  /.vmgen/login     the form (the workspace's hostname only); POST checks the password
GET  /.vmgen/open      from the workspace's hostname to another one: a ticket, then
GET  /.vmgen/session   on that hostname: its own session cookie (and the code UI's token,
                       or the desktop's password)
POST /.vmgen/logout    ends the login on every hostname
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ...contract.names import VM, VmPaths
from ...contract.weblogin import LOGIN_PREFIX, SESSION_COOKIE, WebLoginSettings, WebSite, check_password
from . import pages
from .requests import Facts, cross_origin_refusal, safe_path, session_tokens, split_host, without_session
from .sessions import FailureLimiter, Family, Sessions

log = logging.getLogger(__name__)
MAX_FORM = 4096
# systemd's socket activation hands over the listening socket as this descriptor.
SD_LISTEN_FDS_START = 3


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
    """The state behind the handler: configuration, sessions, the failure counter."""

    def __init__(self, config: LoginConfig, clock: Any = time.time) -> None:
        self.config = config
        self.settings = config.settings
        self.sessions = Sessions(config.settings.session_hours * 3600, clock)
        self.limiter = FailureLimiter(config.settings.max_failures, config.settings.failure_window_seconds, clock)
        self.clock = clock


def make_handler(service: LoginService) -> type[BaseHTTPRequestHandler]:
    settings = service.settings

    class Handler(BaseHTTPRequestHandler):
        server_version = "vmgen-web-login"
        body = b""
        protocol_version = "HTTP/1.1"  # Caddy keeps its connections to us open

        # --- routing ------------------------------------------------------------------------
        def do_GET(self) -> None:  # http.server's naming
            route = {
                "/check": self._check,
                "/login": self._login_form,
                "/open": self._open,
                "/session": self._session_from_ticket,
            }.get(self._route())
            # Hand-overs are page loads: from another origin, a fetch never gets one going.
            if route not in (None, self._check) and (refusal := cross_origin_refusal(self._facts())):
                self._text(403, f"refused: {refusal}")
                return
            self._run(route)

        def do_POST(self) -> None:
            # The body is read before any answer: left unread, it would be taken for the next
            # request on this kept-alive connection.
            declared = self.headers.get("Content-Length") or "0"
            length = int(declared) if declared.isdigit() else MAX_FORM + 1
            if length > MAX_FORM:
                self.close_connection = True
                self._text(413, "too large")
                return
            self.body = self.rfile.read(length)
            route = {"/login": self._login, "/logout": self._logout}.get(self._route())
            self._run(route)

        def _route(self) -> str:
            path = urlsplit(self.path).path
            return path[len(LOGIN_PREFIX) :] if path.startswith(LOGIN_PREFIX + "/") else ""

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

        # --- forward_auth -------------------------------------------------------------------
        def _check(self) -> None:
            facts = self._facts(forwarded=True)
            site = settings.site(facts.hostname)
            if site is None:
                self._text(403, "not a hostname of this workspace")
                return
            if site.own and (refusal := cross_origin_refusal(facts)):
                self._text(403, f"refused: {refusal}")
                return
            if self._signed_in(site.hostname) is None:
                if facts.navigation:
                    self._redirect(302, self._sign_in_url(facts, site))
                else:
                    self._text(401, f"sign in at {self._main_origin(facts)}/")
                return
            if (
                site.role == "desktop"
                and facts.navigation
                and urlsplit(facts.uri).path == "/"
                and service.config.desktop_password
            ):
                self._redirect(302, pages.desktop_start(service.config.desktop_password))
                return
            self._reply(200, b"", "text/plain", [("X-Vmgen-Cookie", without_session(self._cookies()))])

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
            if facts.hostname != settings.host or cross_origin_refusal(facts):
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
            self._go_on(facts, family, to, path, cookie=self._cookie(token, family))

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
            site = settings.site(f"{to}.{settings.host}") if to else None
            if site is None:
                self._redirect(303, path, headers)
                return
            ticket = service.sessions.ticket(family, site.hostname, path)
            port = split_host(facts.host)[1]
            target = f"https://{site.hostname}{':' + port if port else ''}{LOGIN_PREFIX}/session?ticket={ticket}"
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
            cookie = [("Set-Cookie", self._cookie(redeemed.token, redeemed.family))]
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

        def _logout(self) -> None:
            facts = self._facts()
            if facts.hostname != settings.host or cross_origin_refusal(facts):
                self._text(403, "sign out from the workspace's own page")
                return
            family = self._signed_in(settings.host)
            if family is not None:
                service.sessions.logout(family)
            gone = f"{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
            self._redirect(303, f"{LOGIN_PREFIX}/login", [("Set-Cookie", gone)])

        # --- reading the request ------------------------------------------------------------
        def _facts(self, forwarded: bool = False) -> Facts:
            header = self.headers.get
            return Facts(
                host=header("Host") or "",
                method=(header("X-Forwarded-Method") if forwarded else None) or self.command,
                uri=(header("X-Forwarded-Uri") if forwarded else None) or self.path,
                origin=header("Origin"),
                fetch_site=header("Sec-Fetch-Site"),
                fetch_mode=header("Sec-Fetch-Mode"),
                fetch_dest=header("Sec-Fetch-Dest"),
                websocket=(header("X-Vmgen-Upgrade") or "").lower() == "websocket" if forwarded else False,
                accept=header("Accept") or "",
            )

        def _cookies(self) -> list[str]:
            return self.headers.get_all("Cookie") or []

        def _signed_in(self, hostname: str) -> Family | None:
            for token in session_tokens(self._cookies()):
                found = service.sessions.session(token, hostname)
                if found is not None:
                    return found.family
            return None

        def _query(self) -> dict[str, str]:
            return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

        def _form(self) -> dict[str, str]:
            if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
                return {}
            raw = self.body.decode(errors="replace")
            return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

        def _main_origin(self, facts: Facts) -> str:
            port = split_host(facts.host)[1]
            return f"https://{settings.host}{':' + port if port else ''}"

        def _sign_in_url(self, facts: Facts, site: WebSite) -> str:
            path = safe_path(facts.uri)
            if site.hostname == settings.host:
                return f"{LOGIN_PREFIX}/login?{urlencode({'path': path})}"
            label = site.hostname[: -len(settings.host) - 1]
            return f"{self._main_origin(facts)}{LOGIN_PREFIX}/open?{urlencode({'to': label, 'path': path})}"

        def _cookie(self, token: str, family: Family) -> str:
            seconds = max(0, int(family.expires - service.clock()))
            return f"{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={seconds}"

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
        ) -> None:
            self.send_response(status)
            for name, value in headers or []:
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", csp)
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def address_string(self) -> str:  # a unix socket has no peer address
            return self.headers.get("X-Vmgen-Client", "-") if hasattr(self, "headers") else "-"

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            log.debug("%s " + format, self.address_string(), *args)  # noqa: G003

    return Handler


class LoginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(service: LoginService, path: Path | None = None) -> LoginServer:
    """Listen on `path`, or on the socket systemd passed (socket activation) when None."""
    handler = make_handler(service)
    if path is not None:
        path.unlink(missing_ok=True)
        return LoginServer(str(path), handler)
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        raise RuntimeError("no socket from systemd (LISTEN_FDS): run as vmgen-web-login.service")
    server = LoginServer(str(VM.web_login_socket), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=SD_LISTEN_FDS_START)
    return server
