"""The login service's memory: sessions per hostname within a login, single-use tickets bound to
one hostname, signing out everywhere, expiry, and caps on everything."""

from __future__ import annotations

from vmgen.vmside.weblogin.sessions import MAX_FAMILIES, TICKET_SECONDS, FailureLimiter, Sessions

HOST, CODE = "app.dev.example.com", "code.app.dev.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_opens_only_its_own_hostname():
    sessions = Sessions(3600)
    token, family = sessions.login(HOST)
    session = sessions.session(token, HOST)
    assert session is not None and session.family == family
    assert sessions.session(token, CODE) is None
    assert sessions.session("made-up", HOST) is None


def test_a_ticket_works_once_and_only_on_its_hostname():
    sessions = Sessions(3600)
    _, family = sessions.login(HOST)
    ticket = sessions.ticket(family, CODE, "/projects")
    assert sessions.redeem(ticket, HOST) is None  # spent by the wrong hostname, too
    ticket = sessions.ticket(family, CODE, "/projects")
    redeemed = sessions.redeem(ticket, CODE)
    assert redeemed is not None and redeemed.path == "/projects"
    session = sessions.session(redeemed.token, CODE)
    assert session is not None and session.family == family
    assert sessions.session(redeemed.token, HOST) is None
    assert sessions.redeem(ticket, CODE) is None


def test_tickets_and_sessions_expire():
    clock = Clock()
    sessions = Sessions(3600, clock)
    token, family = sessions.login(HOST)
    ticket = sessions.ticket(family, CODE, "/")
    clock.now += TICKET_SECONDS + 1
    assert sessions.redeem(ticket, CODE) is None
    assert sessions.session(token, HOST) is not None
    clock.now += 3600
    assert sessions.session(token, HOST) is None


def test_signing_out_ends_every_hostnames_session():
    sessions = Sessions(3600)
    token, family = sessions.login(HOST)
    redeemed = sessions.redeem(sessions.ticket(family, CODE, "/"), CODE)
    assert redeemed is not None
    code = redeemed.token
    pending = sessions.ticket(family, CODE, "/")
    other, _ = sessions.login(HOST)
    sessions.logout(family)
    assert sessions.session(token, HOST) is None and sessions.session(code, CODE) is None
    assert sessions.redeem(pending, CODE) is None
    assert sessions.session(other, HOST) is not None  # another browser's login stays


def test_logins_are_capped_oldest_first():
    sessions = Sessions(3600)
    first, _ = sessions.login(HOST)
    tokens = [sessions.login(HOST)[0] for _ in range(MAX_FAMILIES)]
    assert sessions.session(first, HOST) is None
    assert all(sessions.session(token, HOST) for token in tokens)


def test_failures_block_an_address_within_the_window_only():
    clock = Clock()
    limiter = FailureLimiter(3, 600, clock)
    for _ in range(3):
        assert not limiter.blocked("192.0.2.1")
        limiter.failed("192.0.2.1")
    assert limiter.blocked("192.0.2.1") and not limiter.blocked("192.0.2.2")
    clock.now += 601
    assert not limiter.blocked("192.0.2.1")
    limiter.failed("192.0.2.3")
    limiter.succeeded("192.0.2.3")
    assert not limiter.blocked("192.0.2.3")
