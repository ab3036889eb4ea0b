"""Sessions, hand-over tickets and the failed-login counter: the login service's memory.

A login starts a family; each hostname the browser is signed in to gets a session of that family
under its own cookie (host-only, `__Host-`), so a cookie sent to one hostname opens no other. A
ticket carries a family from the workspace's hostname to another one: single use, for one
hostname, valid a minute. Signing out ends the family and every session in it. Everything is
capped: nothing an unauthenticated client sends makes this memory grow without bound.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

TICKET_SECONDS = 60.0
SIGN_OUT_SECONDS = 120.0  # to walk the browser through every hostname, clearing each
MAX_FAMILIES = 64
MAX_TICKETS = 256
MAX_SIGN_OUTS = 64
MAX_CLIENTS = 4096


@dataclass(frozen=True)
class Family:
    id: str
    expires: float


@dataclass(frozen=True)
class Session:
    family: Family
    hostname: str


@dataclass(frozen=True)
class Ticket:
    family_id: str
    hostname: str
    path: str
    expires: float


@dataclass(frozen=True)
class Redeemed:
    token: str
    family: Family
    path: str


class Sessions:
    def __init__(
        self,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.time,
        on_end: Callable[[str], object] = lambda family_id: None,
    ) -> None:
        self.lifetime = lifetime_seconds
        self.clock = clock
        # Told the id of every family that ends (signed out, expired, pushed out by newer ones):
        # whatever was opened under it (a websocket) must end too.
        self.on_end = on_end
        self._lock = threading.Lock()
        self._families: OrderedDict[str, Family] = OrderedDict()
        self._sessions: dict[str, Session] = {}
        self._tickets: OrderedDict[str, Ticket] = OrderedDict()

    def login(self, hostname: str) -> tuple[str, Family]:
        """A new family, signed in on `hostname`: its session token and the family."""
        with self._lock:
            family = Family(secrets.token_urlsafe(16), self.clock() + self.lifetime)
            self._families[family.id] = family
            while len(self._families) > MAX_FAMILIES:  # the oldest login goes first
                self._end(next(iter(self._families)))
            return self._new_session(family, hostname), family

    def session(self, token: str, hostname: str) -> Session | None:
        with self._lock:
            found = self._sessions.get(token)
            if found is None or found.hostname != hostname or not self._alive(found.family.id):
                return None
            return found

    def ticket(self, family: Family, hostname: str, path: str) -> str:
        with self._lock:
            token = secrets.token_urlsafe(24)
            expires = min(self.clock() + TICKET_SECONDS, family.expires)
            self._tickets[token] = Ticket(family.id, hostname, path, expires)
            while len(self._tickets) > MAX_TICKETS:
                self._tickets.popitem(last=False)
            return token

    def redeem(self, ticket: str, hostname: str) -> Redeemed | None:
        """A ticket for `hostname` becomes a session there; any ticket works once at most."""
        with self._lock:
            found = self._tickets.pop(ticket, None)
            if found is None or found.hostname != hostname or found.expires <= self.clock():
                return None
            if not self._alive(found.family_id):
                return None
            family = self._families[found.family_id]
            return Redeemed(self._new_session(family, hostname), family, found.path)

    def logout(self, family: Family) -> None:
        with self._lock:
            self._end(family.id)

    def sweep(self) -> None:
        """End every family past its expiry (what a session check does lazily, done now)."""
        with self._lock:
            for family_id in [f for f, family in self._families.items() if family.expires <= self.clock()]:
                self._end(family_id)

    def alive(self, family_id: str) -> bool:
        with self._lock:
            return self._alive(family_id)

    def _new_session(self, family: Family, hostname: str) -> str:
        # One session per hostname and family: signing in to a hostname again replaces the last.
        for token in [t for t, s in self._sessions.items() if s.family.id == family.id and s.hostname == hostname]:
            del self._sessions[token]
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(family, hostname)
        return token

    def _alive(self, family_id: str) -> bool:
        family = self._families.get(family_id)
        if family is None:
            return False
        if family.expires <= self.clock():
            self._end(family_id)
            return False
        return True

    def _end(self, family_id: str) -> None:
        if self._families.pop(family_id, None) is not None:
            self.on_end(family_id)
        for token in [t for t, s in self._sessions.items() if s.family.id == family_id]:
            del self._sessions[token]
        for token in [t for t, k in self._tickets.items() if k.family_id == family_id]:
            del self._tickets[token]


@dataclass(frozen=True)
class SignOut:
    hostnames: tuple[str, ...]  # still to clear, in order
    expires: float


class SignOuts:
    """The walk through every hostname after Sign out, each answering with Clear-Site-Data: a
    token of the walk's own, so that no other site can send the browser through it (and clear
    the code UI's storage, say) while the user is signed in."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._walks: OrderedDict[str, SignOut] = OrderedDict()

    def start(self, hostnames: tuple[str, ...]) -> str:
        with self._lock:
            token = secrets.token_urlsafe(24)
            self._walks[token] = SignOut(hostnames, self.clock() + SIGN_OUT_SECONDS)
            while len(self._walks) > MAX_SIGN_OUTS:
                self._walks.popitem(last=False)
            return token

    def step(self, token: str, hostname: str) -> tuple[str, ...] | None:
        """On `hostname`, the next hostname of the walk: the ones after it, or None when the walk is
        unknown, over, or not at this hostname now."""
        with self._lock:
            walk = self._walks.pop(token, None)
            if walk is None or walk.expires <= self.clock() or not walk.hostnames or walk.hostnames[0] != hostname:
                return None
            rest = walk.hostnames[1:]
            if rest:
                self._walks[token] = SignOut(rest, walk.expires)
            return rest


class FailureLimiter:
    """Failed logins per client address within a window; past the limit, refused unchecked."""

    def __init__(self, max_failures: int, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client)) >= self.max_failures

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures[client] = [*self._recent(client), self.clock()]
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str) -> list[float]:
        since = self.clock() - self.window
        return [at for at in self._failures.get(client, ()) if at > since]
