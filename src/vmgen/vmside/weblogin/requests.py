"""What the login service reads from a request: its cookies, where it comes from, and whether a
browser may have been tricked into sending it.

vmgen's own hostnames (page, code UI, desktop) accept from another origin nothing but a plain
top-level navigation: a page on a preview hostname is the same *site* (SameSite cookies go along),
so only the browser's Fetch Metadata and Origin headers tell its requests apart. A websocket must
come from the hostname itself. Clients that send neither header (curl, scripts) are not browsers
and cannot be tricked; they need the cookie like anyone else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ...contract.weblogin import COOKIE_BUDGET, SESSION_COOKIE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PATH = 2048
MAX_SESSION_TOKENS = 8  # values under our cookie's name that are looked up; tossed ones are junk
MAX_EXPIRED = 64  # cookie names expired in one answer (a browser holds at most 180 per domain)
# RFC 6265's cookie-name (an HTTP token): anything else is not ours to name in a Set-Cookie.
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")


@dataclass(frozen=True)
class Facts:
    """The parts of a (forwarded) request the decisions depend on."""

    host: str  # the Host header as sent: hostname[:port]
    method: str
    uri: str
    origin: str | None = None
    fetch_site: str | None = None  # Sec-Fetch-Site
    fetch_mode: str | None = None  # Sec-Fetch-Mode
    fetch_dest: str | None = None  # Sec-Fetch-Dest
    websocket: bool = False
    accept: str = ""
    service_worker: bool = False  # `Service-Worker: script`: the browser fetches a worker's script

    @property
    def hostname(self) -> str:
        return split_host(self.host)[0]

    @property
    def own_origin(self) -> str:
        return f"https://{self.host.lower()}"

    @property
    def navigation(self) -> bool:
        """A top-level page load (not a fetch, frame, image or websocket)."""
        if self.websocket or self.method not in ("GET", "HEAD"):
            return False
        if self.fetch_mode is not None:
            return self.fetch_mode == "navigate" and self.fetch_dest in (None, "document")
        return "text/html" in self.accept


def split_host(host: str) -> tuple[str, str]:
    """`Name:443` -> ("name", "443"); an IPv6 literal or junk gives a name no site has."""
    name, sep, port = host.lower().rpartition(":")
    if not sep or not port.isdigit():
        return host.lower(), ""
    return name, port


def cross_origin_refusal(facts: Facts) -> str | None:
    """Why a request to one of vmgen's own hostnames is refused before its cookie is looked at."""
    if facts.websocket:
        return None if facts.origin == facts.own_origin else "a websocket from another origin"
    if facts.method not in SAFE_METHODS:
        if facts.origin is not None and facts.origin != facts.own_origin:
            return "a request from another origin"
        if facts.fetch_site not in (None, "same-origin", "none"):
            return "a request from another origin"
        return None
    if facts.fetch_site in ("same-site", "cross-site") and not facts.navigation:
        return "a request from another origin that is not a navigation"
    return None


def cookie_pairs(headers: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for header in headers:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                pairs.append((name.strip(), value.strip()))
    return pairs


def session_tokens(headers: Iterable[str]) -> list[str]:
    """Values sent under the session cookie's exact name (a tossed cookie may sit beside ours)."""
    return [value for name, value in cookie_pairs(headers) if name == SESSION_COOKIE][:MAX_SESSION_TOKENS]


def ours(name: str) -> bool:
    """The session cookie, or another of the login's (`__Host-vmgen-...`), however spelled."""
    lowered = name.lower()
    return lowered == SESSION_COOKIE.lower() or lowered.startswith(SESSION_COOKIE.lower() + "-")


@dataclass(frozen=True)
class BackendCookies:
    header: str  # the Cookie header the backend gets
    dropped: tuple[str, ...] = ()  # names left out for the budget


def backend_cookies(headers: Iterable[str], budget: int | None = COOKIE_BUDGET) -> BackendCookies:
    """Everything but the login's own cookies; with a budget (vmgen's own hostnames), only what
    fits in it, smallest first, so that cookies a preview planted on the parent domain cannot make
    a backend refuse the request for its size (CloudCLI's Node answers 431 past 16 KB)."""
    pairs = [(name, value) for name, value in cookie_pairs(headers) if not ours(name)]
    if budget is None:
        return BackendCookies("; ".join(f"{name}={value}" for name, value in pairs))
    kept: set[int] = set()
    used = 0
    for index in sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1])):
        size = len(pairs[index][0]) + len(pairs[index][1]) + 3
        if used + size > budget:
            break
        kept.add(index)
        used += size
    dropped = dict.fromkeys(name for i, (name, _) in enumerate(pairs) if i not in kept)
    return BackendCookies(
        "; ".join(f"{name}={value}" for i, (name, value) in enumerate(pairs) if i in kept), tuple(dropped)
    )


def expiring(names: Iterable[str], hostname: str) -> list[str]:
    """Set-Cookie values that expire these cookies wherever a sibling could have set them for
    `hostname`: host-only, and for the hostname and each parent domain (a browser refuses the
    public suffix itself, and ignores a deletion that matches no cookie)."""
    labels = hostname.split(".")
    domains = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    values = []
    for name in [n for n in names if COOKIE_NAME.fullmatch(n) and not ours(n)][:MAX_EXPIRED]:
        gone = f"{name}=; Path=/; Max-Age=0; Secure"
        values.append(gone)
        values.extend(f"{gone}; Domain={domain}" for domain in domains)
    return values


def safe_path(path: str | None) -> str:
    """A path on the same hostname to go to after signing in, or "/"."""
    if (
        not path
        or not path.startswith("/")
        or path.startswith("//")
        or "\\" in path
        or len(path) > MAX_PATH
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in path)
    ):
        return "/"
    return path
