"""The login service's answers, as functions of the service and a request: each returns a
`Reply`, and the handler (server.py) writes it. Tested without a socket. Only the live streams,
which need the connection itself, are the handler's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from ...contract.weblogin import (
    CLEAR_SITE_DATA,
    COOKIE_BUDGET,
    LOGIN_PREFIX,
    SESSION_COOKIE,
    WebLoginSettings,
    WebSite,
    check_password,
)
from ..httpbase import Reply
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

log = logging.getLogger("vmgen.vmside.weblogin.server")
# The browser's "clean up after yourself" marker while foreign cookies are being expired: one
# round of expiring per minute at most, whatever a cookie's path makes of the attempt.
TIDY_COOKIE = f"{SESSION_COOKIE}-tidy"


class Secrets(Protocol):
    @property
    def verifier(self) -> str: ...
    @property
    def desktop_password(self) -> str: ...


class LoginState(Protocol):
    """What the routes use of the service (server.LoginService): its settings and secrets, the
    sessions, the sign-out walks, the failure counter and the clock."""

    @property
    def settings(self) -> WebLoginSettings: ...
    @property
    def config(self) -> Secrets: ...
    @property
    def sessions(self) -> Sessions: ...
    @property
    def sign_outs(self) -> SignOuts: ...
    @property
    def limiter(self) -> FailureLimiter: ...
    @property
    def clock(self) -> Callable[[], float]: ...


@dataclass(frozen=True)
class Allowed(Reply):
    """forward_auth's yes: Caddy copies its headers into the request it passes on, so the
    handler adds nothing to it (no expired cookies)."""


@dataclass(frozen=True)
class LoginRequest:
    """What a route reads of a request: its method, target, headers and (a POST's) body."""

    command: str
    path: str
    headers: Any  # http.server's message: get() and get_all()
    body: bytes = b""

    def facts(self, forwarded: bool = False, stream: bool = False) -> Facts:
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

    @property
    def cookies(self) -> list[str]:
        return self.headers.get_all("Cookie") or []

    @property
    def client(self) -> str:
        return self.headers.get("X-Vmgen-Client") or "unknown"

    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def form(self) -> dict[str, str]:
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return {}
        raw = self.body.decode(errors="replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def route_of(path: str) -> str | None:
    """The login's own path below /.vmgen/ ("" for an unknown one); None for any other path,
    which only a stream Caddy hands over can have."""
    path = urlsplit(path).path
    return path[len(LOGIN_PREFIX) :] if path.startswith(LOGIN_PREFIX + "/") else None


def answer(service: LoginState, request: LoginRequest) -> Reply:
    """A request to one of the login's own paths (route_of is not None)."""
    route = route_of(request.path)
    if request.command == "POST":
        chosen = {"/login": login, "/logout": logout}.get(route or "")
        return chosen(service, request) if chosen else Reply.text(404, "not found")
    if route == "/check":
        return check(service, request)
    handler = {
        "/login": login_form,
        "/open": open_elsewhere,
        "/session": session_from_ticket,
        "/signed-out": signed_out,
    }.get(route or "")
    if handler is None:
        return Reply.text(404, "not found")
    if refusal := own_refusal(request.facts()):
        return Reply.text(403, f"refused: {refusal}")
    return handler(service, request)


def own_refusal(facts: Facts) -> str | None:
    """Why a request to one of vmgen's own hostnames is refused before anything else."""
    if facts.service_worker:
        # A worker registered on a vmgen hostname would answer for it, the sign-in form
        # included, long after Sign out: vmgen serves none, so none is let in.
        return "no service worker on vmgen's own hostnames"
    return cross_origin_refusal(facts)


# --- forward_auth -------------------------------------------------------------------------------
def check(service: LoginState, request: LoginRequest) -> Reply:
    settings = service.settings
    facts = request.facts(forwarded=True)
    site = settings.site(facts.hostname)
    if site is None:
        return Reply.text(403, "not a hostname of this workspace")
    if site.own and (refusal := own_refusal(facts)):
        return Reply.text(403, f"refused: {refusal}")
    if signed_in(service, request, site.hostname) is None:
        if facts.navigation:
            return Reply.redirect(302, sign_in_url(service, facts, site))
        return Reply.text(401, f"sign in at {main_origin(service, facts)}/")
    cookies = backend_cookies(request.cookies, COOKIE_BUDGET if site.own else None)
    if cookies.dropped and facts.navigation and not tidied(request):
        # Foreign cookies past the budget (a preview's cookie bomb on the parent domain):
        # ignored already; on a page load, the browser is also told to drop them.
        marker = f"{TIDY_COOKIE}=1; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        return Reply.redirect(303, safe_path(facts.uri), (("Set-Cookie", marker),))
    if (
        site.role == "desktop"
        and facts.navigation
        and urlsplit(facts.uri).path == "/"
        and service.config.desktop_password
    ):
        return Reply.redirect(302, pages.desktop_start(service.config.desktop_password))
    return Allowed(200, b"", "text/plain", (("X-Vmgen-Cookie", cookies.header),))


# --- signing in on the workspace's hostname -----------------------------------------------------
def login_form(service: LoginState, request: LoginRequest) -> Reply:
    settings = service.settings
    facts = request.facts()
    if facts.hostname != settings.host:
        return Reply.redirect(303, f"{main_origin(service, facts)}{LOGIN_PREFIX}/login")
    query = request.query()
    to, path = query.get("to", ""), safe_path(query.get("path"))
    family = signed_in(service, request, settings.host)
    if family is not None:
        return go_on(service, facts, family, to, path)
    return Reply.html(200, pages.login_page(settings.host, settings.user, to, path))


def login(service: LoginState, request: LoginRequest) -> Reply:
    settings = service.settings
    facts = request.facts()
    if facts.hostname != settings.host or own_refusal(facts):
        return Reply.text(403, "sign in from the workspace's own page")
    form = request.form()
    to, path = form.get("to", ""), safe_path(form.get("path"))
    client = request.client
    if service.limiter.blocked(client):
        log.warning("web login: refused %s (too many failed logins)", client)
        return Reply.html(429, pages.login_page(settings.host, settings.user, to, path, "Too many failed logins."))
    user, password = form.get("user", ""), form.get("password", "")
    if user != settings.user or not check_password(service.config.verifier, password):
        service.limiter.failed(client)
        log.warning("web login: failed login from %s", client)
        error = "Wrong user or password."
        return Reply.html(401, pages.login_page(settings.host, settings.user, to, path, error))
    service.limiter.succeeded(client)
    token, family = service.sessions.login(settings.host)
    log.info("web login: signed in from %s", client)
    return go_on(service, facts, family, to, path, cookie=session_cookie(service, token, family, settings.host))


def open_elsewhere(service: LoginState, request: LoginRequest) -> Reply:
    settings = service.settings
    facts = request.facts()
    query = request.query()
    to, path = query.get("to", ""), safe_path(query.get("path"))
    family = signed_in(service, request, settings.host) if facts.hostname == settings.host else None
    if family is None:
        again = urlencode({"to": to, "path": path})
        return Reply.redirect(303, f"{main_origin(service, facts)}{LOGIN_PREFIX}/login?{again}")
    return go_on(service, facts, family, to, path)


def go_on(service: LoginState, facts: Facts, family: Family, to: str, path: str, cookie: str = "") -> Reply:
    """After signing in: the path on this hostname, or a ticket to another one."""
    headers = (("Set-Cookie", cookie),) if cookie else ()
    site = service.settings.labelled(to)
    if site is None:
        return Reply.redirect(303, path, headers)
    ticket = service.sessions.ticket(family, site.hostname, path)
    return Reply.redirect(303, f"{origin(facts, site.hostname)}{LOGIN_PREFIX}/session?ticket={ticket}", headers)


# --- arriving on another hostname ---------------------------------------------------------------
def session_from_ticket(service: LoginState, request: LoginRequest) -> Reply:
    settings = service.settings
    facts = request.facts()
    site = settings.site(facts.hostname)
    redeemed = service.sessions.redeem(request.query().get("ticket", ""), facts.hostname) if site else None
    if site is None or redeemed is None:
        return Reply.html(400, pages.message_page("Sign-in link expired", "Open it again from the workspace page."))
    cookie = (("Set-Cookie", session_cookie(service, redeemed.token, redeemed.family, site.hostname)),)
    if site.role == "code":
        body, csp = pages.code_ui_handoff(redeemed.path)
        return Reply.html(200, body, (*cookie, ("Content-Security-Policy", csp)))
    if site.role == "desktop" and redeemed.path == "/" and service.config.desktop_password:
        return Reply.redirect(303, pages.desktop_start(service.config.desktop_password), cookie)
    return Reply.redirect(303, redeemed.path, cookie)


# --- signing out --------------------------------------------------------------------------------
def logout(service: LoginState, request: LoginRequest) -> Reply:
    settings = service.settings
    facts = request.facts()
    if facts.hostname != settings.host or own_refusal(facts):
        return Reply.text(403, "sign out from the workspace's own page")
    family = signed_in(service, request, settings.host)
    if family is not None:
        service.sessions.logout(family)  # its live connections close with it
    others = tuple(site.hostname for site in settings.sites() if site.own and site.hostname != settings.host)
    walk = service.sign_outs.start(others) if others else ""
    return Reply.redirect(303, after_sign_out(service, facts, walk, others), cleared())


def signed_out(service: LoginState, request: LoginRequest) -> Reply:
    """One step of the walk through vmgen's hostnames after Sign out."""
    facts = request.facts()
    walk = request.query().get("walk", "")
    rest = service.sign_outs.step(walk, facts.hostname)
    if rest is None:
        return Reply.redirect(303, f"{main_origin(service, facts)}{LOGIN_PREFIX}/login")
    return Reply.redirect(303, after_sign_out(service, facts, walk, rest), cleared())


def after_sign_out(service: LoginState, facts: Facts, walk: str, hostnames: tuple[str, ...]) -> str:
    if not hostnames:
        return f"{main_origin(service, facts)}{LOGIN_PREFIX}/login"
    return f"{origin(facts, hostnames[0])}{LOGIN_PREFIX}/signed-out?{urlencode({'walk': walk})}"


def cleared() -> tuple[tuple[str, str], ...]:
    """What each of vmgen's hostnames answers on the way out: its site data cleared (a service
    worker, a page cached by the agent's backend, the code UI's storage) and the login's cookies
    expired."""
    return (
        ("Clear-Site-Data", CLEAR_SITE_DATA),
        ("Set-Cookie", f"{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
        ("Set-Cookie", f"{TIDY_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"),
    )


# --- what a request says ------------------------------------------------------------------------
def signed_in(service: LoginState, request: LoginRequest, hostname: str) -> Family | None:
    for token in session_tokens(request.cookies):
        found = service.sessions.session(token, hostname)
        if found is not None:
            return found.family
    return None


def tidied(request: LoginRequest) -> bool:
    return any(name == TIDY_COOKIE for name, _ in cookie_pairs(request.cookies))


def expired_cookies(service: LoginState, request: LoginRequest) -> list[tuple[str, str]]:
    """On vmgen's own hostnames, whatever the browser answers to comes with the foreign cookies
    past the budget expired (a preview's cookie bomb)."""
    site = service.settings.site(split_host(request.headers.get("Host") or "")[0])
    if site is None or not site.own:
        return []
    dropped = backend_cookies(request.cookies).dropped
    return [("Set-Cookie", value) for value in expiring(dropped, site.hostname)]


def origin(facts: Facts, hostname: str) -> str:
    port = split_host(facts.host)[1]
    return f"https://{hostname}{':' + port if port else ''}"


def main_origin(service: LoginState, facts: Facts) -> str:
    return origin(facts, service.settings.host)


def sign_in_url(service: LoginState, facts: Facts, site: WebSite) -> str:
    path = safe_path(facts.uri)
    if site.hostname == service.settings.host:
        return f"{LOGIN_PREFIX}/login?{urlencode({'path': path})}"
    return f"{main_origin(service, facts)}{LOGIN_PREFIX}/open?{urlencode({'to': site.label, 'path': path})}"


def session_cookie(service: LoginState, token: str, family: Family, hostname: str) -> str:
    seconds = max(0, int(family.expires - service.clock()))
    # Strict where the hostname is the page's site; a preview on its own domain (another site)
    # would never get a Strict cookie on a page load that came from the page.
    site = service.settings.site(hostname)
    same_site = "Strict" if site is None or site.same_site else "Lax"
    return f"{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={seconds}"
