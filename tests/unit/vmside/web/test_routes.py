"""The page's routes as functions, without a socket: what each request gets, and that an action
reaches root only from the page itself (its header, its origin, a JSON object)."""

from __future__ import annotations

import json
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from vmgen.contract.names import VmPaths
from vmgen.contract.pageops import PageRequest
from vmgen.vmside.web.server import MAX_BODY, WebSettings, answer_get, answer_post

HOST = "app.dev.example.com"


def headers(**values: str) -> Message:
    """A request's headers: the page's own by default; a keyword (X_Vmgen_Action) replaces one,
    empty removes it."""
    chosen = {"Host": HOST, "Content-Type": "application/json", "X-Vmgen-Action": "1"}
    chosen |= {name.replace("_", "-"): value for name, value in values.items()}
    message = Message()
    for name, value in chosen.items():
        if value:
            message[name] = value
    return message


@pytest.fixture
def asked(tmp_path: Path) -> tuple[WebSettings, list[PageRequest]]:
    requests: list[PageRequest] = []

    def ops(request: PageRequest) -> dict[str, Any]:
        requests.append(request)
        return {"ok": True}

    return WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=ops), requests


def test_the_page_the_health_check_and_an_unknown_path(asked) -> None:
    settings, _ = asked
    assert answer_get(settings, "/", b"<html>").body == b"<html>"
    assert answer_get(settings, "/healthz", b"").body == b"ok\n"
    missing = answer_get(settings, "/etc/shadow", b"")
    assert (missing.status, json.loads(missing.body)) == (404, {"error": "not found"})


def test_an_action_from_the_page_reaches_root(asked) -> None:
    settings, requests = asked
    reply = answer_post(settings, "/api/keepalive", headers(Origin=f"https://{HOST}"), b'{"hours": 1}')
    assert reply.status == 200 and requests == [PageRequest("keepalive", hours=1)]


@pytest.mark.parametrize(
    ("path", "sent", "raw", "status", "error"),
    [
        ("/api/keepalive", headers(X_Vmgen_Action=""), b'{"hours": 1}', 403, "cross-site request refused"),
        ("/api/keepalive", headers(Origin="https://evil.example"), b'{"hours": 1}', 403, "cross-site request refused"),
        ("/api/keepalive", headers(Content_Type="text/plain"), b'{"hours": 1}', 415, "send JSON"),
        ("/api/keepalive", headers(), b"[1]", 400, "send a JSON object"),
        ("/api/keepalive", headers(), b"{", 400, "invalid JSON"),
        ("/api/keepalive", headers(), None, 413, "too large"),
        ("/api/keepalive", headers(), b'{"hours": 1000}', 400, "hours must be one of"),
        ("/api/reboot", headers(), b"{}", 404, "not found"),
        ("/api/send", headers(), json.dumps({"text": "x" * (MAX_BODY + 1)}).encode(), 400, "text must be"),
    ],
)
def test_what_is_refused_never_reaches_root(asked, path, sent, raw, status, error) -> None:
    settings, requests = asked
    reply = answer_post(settings, path, sent, raw)
    assert reply.status == status and error in json.loads(reply.body)["error"]
    assert requests == []
