"""What the login service reads from a request: cross-origin refusals on vmgen's own hostnames
(Fetch Metadata, Origin, websockets), the session cookie among tossed ones, the cookies a backend
gets, and the paths it goes on to after signing in."""

from __future__ import annotations

from typing import Any

import pytest

from vmgen.vmside.weblogin.requests import (
    Facts,
    backend_cookies,
    cross_origin_refusal,
    expiring,
    safe_path,
    session_tokens,
)

CODE = "code.app.dev.example.com"
OWN = f"https://{CODE}"
PREVIEW = "https://p3000.app.dev.example.com"


def facts(**changes: Any) -> Facts:
    values: dict[str, Any] = {"host": CODE, "method": "GET", "uri": "/"}
    values.update(changes)
    return Facts(**values)


@pytest.mark.parametrize(
    "request_facts",
    [
        facts(fetch_site="same-origin", fetch_mode="cors", fetch_dest="empty"),
        facts(fetch_site="same-site", fetch_mode="navigate", fetch_dest="document"),  # a link from the page
        facts(fetch_site="none", fetch_mode="navigate", fetch_dest="document"),  # typed, bookmarked
        facts(method="POST", origin=OWN, fetch_site="same-origin"),
        facts(websocket=True, origin=OWN),
        facts(method="POST"),  # curl: no browser to trick
    ],
)
def test_allowed(request_facts):
    assert cross_origin_refusal(request_facts) is None


@pytest.mark.parametrize(
    "request_facts",
    [
        facts(websocket=True, origin=PREVIEW),  # the desktop driven from a preview
        facts(websocket=True),  # a websocket must say where it comes from
        facts(websocket=True, origin=OWN.replace("https", "http")),
        facts(method="POST", origin=PREVIEW),
        facts(method="POST", origin="null"),
        facts(method="POST", fetch_site="same-site", fetch_mode="navigate", fetch_dest="document"),  # a form post
        facts(fetch_site="same-site", fetch_mode="cors", fetch_dest="empty"),  # fetch() from a preview
        facts(fetch_site="same-site", fetch_mode="navigate", fetch_dest="iframe"),  # framing
        facts(fetch_site="cross-site", fetch_mode="no-cors", fetch_dest="script"),  # a script include
        facts(method="OPTIONS", fetch_site="same-site", fetch_mode="cors", fetch_dest="empty"),  # a preflight
    ],
)
def test_refused(request_facts):
    assert cross_origin_refusal(request_facts) is not None


def test_the_session_cookie_by_its_exact_name_among_tossed_ones():
    headers = ["theme=dark; __Host-vmgen=ours; __host-vmgen=tossed", "__Host-vmgen=second; vmgen=x"]
    assert session_tokens(headers) == ["ours", "second"]
    assert session_tokens(["=__Host-vmgen=nameless", "__Host-vmgenx=y"]) == []


def test_a_backend_gets_every_cookie_but_the_logins_own():
    headers = ["a=1; __Host-vmgen=secret; b=2", "__HOST-VMGEN=other; c=3; __Host-vmgen-tidy=1"]
    assert backend_cookies(headers).header == "a=1; b=2; c=3"
    assert backend_cookies([]).header == ""


def test_on_vmgens_hostnames_a_cookie_bomb_is_left_out_and_named_for_expiry():
    bomb = "; ".join(f"bomb{i}={'x' * 4000}" for i in range(20))
    own = backend_cookies([f"theme=dark; {bomb}; __Host-vmgen=ours; lang=en"])
    assert own.header.startswith("theme=dark; bomb0=") and own.header.endswith("lang=en")
    assert len(own.header) <= 8 << 10 and len(own.dropped) == 18  # two fit in the budget
    # A preview is the agent's app: it gets what the browser sent, its own cookies' size its own affair.
    assert len(backend_cookies([bomb], budget=None).header) > 80_000
    assert len(session_tokens([f"{bomb}; " + "; ".join(f"__Host-vmgen=t{i}" for i in range(100))])) == 8


def test_expiring_a_cookie_wherever_a_preview_could_have_set_it():
    values = expiring(["bomb0", "__Host-vmgen", "bad name", "x;y"], "code.app.dev.example.com")
    assert values == [
        "bomb0=; Path=/; Max-Age=0; Secure",
        "bomb0=; Path=/; Max-Age=0; Secure; Domain=code.app.dev.example.com",
        "bomb0=; Path=/; Max-Age=0; Secure; Domain=app.dev.example.com",
        "bomb0=; Path=/; Max-Age=0; Secure; Domain=dev.example.com",
        "bomb0=; Path=/; Max-Age=0; Secure; Domain=example.com",
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/projects?x=1", "/projects?x=1"),
        ("", "/"),
        (None, "/"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/a b", "/"),
        ("/\r\nSet-Cookie:x", "/"),
    ],
)
def test_where_to_go_after_signing_in_stays_on_the_hostname(path, expected):
    assert safe_path(path) == expected
