"""What the login service reads from a request: cross-origin refusals on vmgen's own hostnames
(Fetch Metadata, Origin, websockets), the session cookie among tossed ones, the cookies a backend
gets, and the paths it goes on to after signing in."""

from __future__ import annotations

import pytest

from vmgen.vmside.weblogin.requests import Facts, cross_origin_refusal, safe_path, session_tokens, without_session

CODE = "code.app.dev.example.com"
OWN = f"https://{CODE}"
PREVIEW = "https://p3000.app.dev.example.com"


def facts(**changes) -> Facts:
    values = dict(host=CODE, method="GET", uri="/")
    values.update(changes)
    return Facts(**values)


@pytest.mark.parametrize("request_facts", [
    facts(fetch_site="same-origin", fetch_mode="cors", fetch_dest="empty"),
    facts(fetch_site="same-site", fetch_mode="navigate", fetch_dest="document"),  # a link from the page
    facts(fetch_site="none", fetch_mode="navigate", fetch_dest="document"),  # typed, bookmarked
    facts(method="POST", origin=OWN, fetch_site="same-origin"),
    facts(websocket=True, origin=OWN),
    facts(method="POST"),  # curl: no browser to trick
])
def test_allowed(request_facts):
    assert cross_origin_refusal(request_facts) is None


@pytest.mark.parametrize("request_facts", [
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
])
def test_refused(request_facts):
    assert cross_origin_refusal(request_facts) is not None


def test_the_session_cookie_by_its_exact_name_among_tossed_ones():
    headers = ["theme=dark; __Host-vmgen=ours; __host-vmgen=tossed", "__Host-vmgen=second; vmgen=x"]
    assert session_tokens(headers) == ["ours", "second"]
    assert session_tokens(["=__Host-vmgen=nameless", "__Host-vmgenx=y"]) == []


def test_a_backend_gets_every_cookie_but_the_session():
    assert without_session(["a=1; __Host-vmgen=secret; b=2", "__HOST-VMGEN=other; c=3"]) == "a=1; b=2; c=3"
    assert without_session([]) == ""


@pytest.mark.parametrize(("path", "expected"), [
    ("/projects?x=1", "/projects?x=1"), ("", "/"), (None, "/"), ("//evil.example/", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("/a b", "/"), ("/\r\nSet-Cookie:x", "/"),
])
def test_where_to_go_after_signing_in_stays_on_the_hostname(path, expected):
    assert safe_path(path) == expected
