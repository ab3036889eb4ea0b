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
from vmgen.contract.phone_actions import PHONE_PATH
from vmgen.vmside.web.server import (
    CHANGES_SECONDS,
    HEARTBEAT_SECONDS,
    MAX_BODY,
    MAX_STREAMS,
    PHONE_PRESSES,
    PHONE_WINDOW_SECONDS,
    STALLED_SECONDS,
    ActionRefused,
    WebSettings,
    answer_get,
    answer_post,
    change_events,
    open_stream,
)

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


# --- an ntfy button pressed on the phone (contract.phone_actions) -----------------------------

BUTTON = "a.e30." + "0" * 64  # the shape of a capability; root decides what it is worth


def test_a_button_press_reaches_root_without_the_pages_header_or_origin(asked) -> None:
    settings, requests = asked
    # The phone's own request: a plain POST of the capability, no action header, no Origin.
    plain = Message()
    reply = answer_post(settings, PHONE_PATH, plain, BUTTON.encode() + b"\n")
    assert reply.status == 200 and requests == [PageRequest("phone", capability=BUTTON)]
    assert ("Access-Control-Allow-Origin", "*") in reply.headers  # ntfy's web app may read the answer


@pytest.mark.parametrize("raw", [b"", b"allow", b"\xff\xfe", b"a.e30." + b"0" * 64 + b"; rm", b"A" * (MAX_BODY - 1)])
def test_what_is_no_button_never_reaches_root(asked, raw: bytes) -> None:
    settings, requests = asked
    reply = answer_post(settings, PHONE_PATH, Message(), raw)
    assert reply.status in (400, 413) and requests == []


def test_button_presses_are_few_a_minute_whoever_sends_them(tmp_path) -> None:
    clock, requests = Clock(), []

    def ops(request: PageRequest) -> dict[str, Any]:
        requests.append(request)
        return {"done": "allow"}

    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=ops, clock=clock)
    statuses = [answer_post(settings, PHONE_PATH, Message(), BUTTON.encode()).status for _ in range(PHONE_PRESSES + 3)]
    assert statuses == [200] * PHONE_PRESSES + [429] * 3 and len(requests) == PHONE_PRESSES
    clock.sleep(PHONE_WINDOW_SECONDS)
    assert answer_post(settings, PHONE_PATH, Message(), BUTTON.encode()).status == 200


def test_roots_refusal_of_a_button_is_the_phones_failure(tmp_path) -> None:
    def refusing(request: PageRequest) -> dict[str, Any]:
        raise ActionRefused(503, "no such request: answered already, or no longer asked")

    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=refusing)
    reply = answer_post(settings, PHONE_PATH, Message(), BUTTON.encode())
    assert reply.status == 409 and json.loads(reply.body) == {
        "error": "no such request: answered already, or no longer asked"
    }


# --- the changes view: its JSON and its event stream -------------------------------------------


class Looks:
    """Root's page socket as far as the changes go: each look answers the next document (the last
    one again when they run out), counting how often root was asked."""

    def __init__(self, *documents: dict[str, Any]) -> None:
        self.documents = list(documents)
        self.asked = 0

    def __call__(self, request: PageRequest) -> dict[str, Any]:
        assert request.op == "changes"
        self.asked += 1
        return self.documents.pop(0) if len(self.documents) > 1 else self.documents[0]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def change(path: str, made_at: float = 0.0) -> dict[str, Any]:
    return {"files": [{"path": path, "state": "modified", "lines": [{"kind": "+", "text": "x"}]}], "made_at": made_at}


def test_the_changes_are_asked_of_root_at_most_every_few_seconds_however_many_ask(tmp_path) -> None:
    clock, looks = Clock(), Looks(change("a.py"), change("b.py"))
    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=looks, clock=clock)
    first = [json.loads(answer_get(settings, "/api/changes", b"").body) for _ in range(5)]
    assert looks.asked == 1 and all(doc["files"][0]["path"] == "a.py" for doc in first)
    clock.sleep(CHANGES_SECONDS)
    assert json.loads(answer_get(settings, "/api/changes", b"").body)["files"][0]["path"] == "b.py"
    assert looks.asked == 2


def test_after_a_look_git_did_not_finish_root_is_asked_again_later(tmp_path) -> None:
    clock, looks = Clock(), Looks({"cut": "time", "error": "git did not answer in time"}, change("a.py"))
    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=looks, clock=clock)
    assert settings.changes()["cut"] == "time"
    clock.sleep(CHANGES_SECONDS)
    assert settings.changes()["cut"] == "time" and looks.asked == 1
    clock.sleep(STALLED_SECONDS)
    assert settings.changes()["files"][0]["path"] == "a.py" and looks.asked == 2


def test_when_root_does_not_answer_the_last_look_stays_or_the_page_says_why(tmp_path) -> None:
    def refusing(request: PageRequest) -> dict[str, Any]:
        raise ActionRefused(503, "root's page service does not answer")

    clock = Clock()
    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=refusing, clock=clock)
    assert "does not answer" in settings.changes()["error"]
    settings = WebSettings(
        vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=Looks(change("a.py")), clock=clock
    )
    settings.changes()
    settings.ops = refusing
    clock.sleep(CHANGES_SECONDS)
    assert settings.changes()["files"][0]["path"] == "a.py"
    settings.ops = Looks({"files": [{"path": "x", "state": "<script>"}]})  # root's answer is checked too
    clock.sleep(CHANGES_SECONDS)
    assert settings.changes()["files"][0]["path"] == "a.py"


def test_the_stream_sends_a_change_once_heartbeats_between_and_ends(tmp_path) -> None:
    clock = Clock()
    # The same look twice (only its time differs), then a change, then nothing new.
    looks = Looks(change("a.py", 1.0), change("a.py", 2.0), change("b.py", 3.0))
    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=looks, clock=clock)
    chunks = list(change_events(settings, wait=clock.sleep, seconds=60))
    assert chunks[0] == b"retry: 5000\n\n"
    events = [json.loads(c.split(b"data: ", 1)[1]) for c in chunks if c.startswith(b"event: changes\n")]
    assert [e["files"][0]["path"] for e in events] == ["a.py", "b.py"]
    beats = [c for c in chunks if c.startswith(b":")]
    assert 2 <= len(beats) <= 60 / HEARTBEAT_SECONDS
    assert looks.asked == 60 / CHANGES_SECONDS


def test_an_event_stream_only_from_the_page_and_only_so_many(asked) -> None:
    settings, _ = asked
    stream = {"Accept": "text/event-stream"}
    assert open_stream(settings, headers(**stream, Origin="https://evil.example")).status == 403  # type: ignore[union-attr]
    assert open_stream(settings, headers()).status == 406  # type: ignore[union-attr]
    for _ in range(MAX_STREAMS):
        assert open_stream(settings, headers(**stream, Origin=f"https://{HOST}")) is None
    refused = open_stream(settings, headers(**stream))
    assert refused is not None and refused.status == 503 and "polls" in json.loads(refused.body)["error"]
    settings.streams.release()
    assert open_stream(settings, headers(**stream)) is None
