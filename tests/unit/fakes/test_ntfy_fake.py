"""The fake ntfy server answers as ntfy does, driven with requests as a notifier would."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.ntfy import ATTACHMENT_TOO_LARGE, FakeNtfy, press

TOKEN = "tk_testtokentesttokentesttoken1"


@pytest.fixture
def ntfy() -> Iterator[FakeNtfy]:
    with FakeNtfy(protected={"alerts": {TOKEN}}, tokens=("tk_nogrant",)) as fake:
        yield fake


def test_a_post_with_headers_answers_the_message_json_and_reaches_subscribers(ntfy: FakeNtfy) -> None:
    actions = (
        "view, Open, https://ws.example.com/, clear=true; http, Keep alive 1 h, https://ws.example.com/k, "
        'method=POST, headers.Authorization=Bearer x, body={"hours":1}'
    )
    answer = requests.post(
        f"{ntfy.endpoint}/ws-events",
        data=b"Claude is waiting for you",
        timeout=5,
        headers={
            "Title": "ws1: permission prompt",
            "X-Priority": "high",
            "Tags": "warning, robot",
            "Click": "https://ws.example.com/",
            "Actions": actions,
        },
    )
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    message = answer.json()
    assert set(message) == {
        "id",
        "time",
        "expires",
        "event",
        "topic",
        "title",
        "message",
        "priority",
        "tags",
        "click",
        "actions",
    }
    assert len(message["id"]) == 12 and message["id"].isalnum()
    assert message["expires"] - message["time"] == 12 * 3600
    assert (message["event"], message["topic"], message["title"], message["message"]) == (
        "message",
        "ws-events",
        "ws1: permission prompt",
        "Claude is waiting for you",
    )
    assert (message["priority"], message["tags"], message["click"]) == (
        4,
        ["warning", "robot"],
        "https://ws.example.com/",
    )
    view, http = message["actions"]
    assert {k: v for k, v in view.items() if k != "id"} == {
        "action": "view",
        "label": "Open",
        "url": "https://ws.example.com/",
        "clear": True,
    }
    assert (
        http["method"] == "POST" and http["headers"] == {"Authorization": "Bearer x"} and http["body"] == '{"hours":1}'
    )
    assert ntfy.messages("ws-events") == [message]


def test_the_unprefixed_spellings_query_parameters_and_an_empty_body(ntfy: FakeNtfy) -> None:
    put = requests.put(f"{ntfy.endpoint}/t1?t=From+the+query&p=5", headers={"X-Tags": "tada"}, timeout=5).json()
    assert (put["title"], put["priority"], put["tags"], put["message"]) == ("From the query", 5, ["tada"], "triggered")
    got = requests.get(f"{ntfy.endpoint}/t1/publish?message=via+GET&priority=min", timeout=5).json()
    assert (got["message"], got["priority"]) == ("via GET", 1)
    utf8 = requests.post(
        f"{ntfy.endpoint}/t1",
        data=b"x",
        timeout=5,
        headers={"Title": "=?UTF-8?B?" + base64.b64encode("Ünïcode ✓".encode()).decode() + "?="},
    ).json()
    assert utf8["title"] == "Ünïcode ✓"
    assert "priority" not in requests.post(f"{ntfy.endpoint}/t1", data=b"plain", timeout=5).json()  # omitempty


def test_json_published_to_the_root_url(ntfy: FakeNtfy) -> None:
    body: dict[str, Any] = {
        "topic": "t2",
        "title": "Backup done",
        "message": "ws1: 12 MiB",
        "priority": 2,
        "tags": ["floppy_disk"],
        "click": "https://ws.example.com/",
        "actions": [{"action": "view", "label": "Open", "url": "https://ws.example.com/"}],
    }
    message = requests.post(ntfy.endpoint, json=body, timeout=5).json()
    assert (message["topic"], message["title"], message["message"], message["priority"]) == (
        "t2",
        "Backup done",
        "ws1: 12 MiB",
        2,
    )
    assert message["tags"] == ["floppy_disk"] and message["actions"][0]["url"] == "https://ws.example.com/"
    assert requests.post(ntfy.endpoint, data=b"{not json", timeout=5).json()["code"] == 40024
    assert requests.post(ntfy.endpoint, json={"topic": "bad/topic"}, timeout=5).json()["code"] == 40009


def test_a_protected_topic_wants_its_token(ntfy: FakeNtfy) -> None:
    url = f"{ntfy.endpoint}/alerts"
    anonymous = requests.post(url, data=b"x", timeout=5)
    assert anonymous.status_code == 403
    assert anonymous.json() == {
        "code": 40301,
        "http": 403,
        "error": "forbidden",
        "link": "https://ntfy.sh/docs/publish/#authentication",
    }
    wrong = requests.post(url, data=b"x", headers={"Authorization": "Bearer tk_wrong"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["code"] == 40101 and wrong.json()["error"] == "unauthorized"
    no_grant = requests.post(url, data=b"x", headers={"Authorization": "Bearer tk_nogrant"}, timeout=5)
    assert no_grant.status_code == 403
    # A wrong token is refused on an open topic too: ntfy authenticates before it routes.
    assert (
        requests.post(
            f"{ntfy.endpoint}/open", data=b"x", headers={"Authorization": "Bearer tk_wrong"}, timeout=5
        ).status_code
        == 401
    )
    assert ntfy.messages("alerts") == []
    ok = requests.post(url, data=b"x", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    basic = requests.post(url, data=b"y", auth=("", TOKEN), timeout=5)  # empty user: the password is a token
    assert ok.status_code == basic.status_code == 200
    assert [m["message"] for m in ntfy.messages("alerts")] == ["x", "y"]
    assert [p.status for p in ntfy.published if p.path == "/alerts"] == [403, 401, 403, 200, 200]


def test_poll_serves_the_cache_as_ntfy_does_and_guards_protected_topics(ntfy: FakeNtfy) -> None:
    first = requests.post(f"{ntfy.endpoint}/t3", data=b"one", timeout=5).json()
    requests.post(f"{ntfy.endpoint}/t3", data=b"two", timeout=5)
    requests.post(f"{ntfy.endpoint}/t4", data=b"other", timeout=5)
    answer = requests.get(f"{ntfy.endpoint}/t3/json?poll=1", timeout=5)
    assert answer.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert [json.loads(line)["message"] for line in answer.text.splitlines()] == ["one", "two"]
    since = requests.get(f"{ntfy.endpoint}/t3,t4/json?poll=1&since={first['id']}", timeout=5).text.splitlines()
    assert [json.loads(line)["message"] for line in since] == ["two", "other"]
    assert requests.get(f"{ntfy.endpoint}/t3/json?poll=1&since=latest", timeout=5).json()["message"] == "two"
    assert requests.get(f"{ntfy.endpoint}/t3/json?poll=1&since=nonsense", timeout=5).json()["code"] == 40008
    assert requests.get(f"{ntfy.endpoint}/alerts/json?poll=1", timeout=5).status_code == 403
    assert (
        requests.get(
            f"{ntfy.endpoint}/alerts/json?poll=1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        ).text
        == ""
    )


def test_wait_for_messages_wakes_on_a_publish_and_fails_clearly(ntfy: FakeNtfy) -> None:
    publisher = threading.Timer(0.05, lambda: requests.post(f"{ntfy.endpoint}/later", data=b"late", timeout=5))
    publisher.start()
    assert ntfy.wait_for_messages("later", timeout=5)[0]["message"] == "late"
    publisher.join()
    with pytest.raises(AssertionError, match="0 message"):
        ntfy.wait_for_messages("never", timeout=0.1)


def test_bad_parameters_are_refused_with_ntfys_codes(ntfy: FakeNtfy) -> None:
    assert requests.post(f"{ntfy.endpoint}/t5", headers={"Priority": "urgentest"}, timeout=5).json()["code"] == 40007
    four = ";".join(f"view, B{i}, https://x/" for i in range(4))
    too_many = requests.post(f"{ntfy.endpoint}/t5", headers={"Actions": four}, timeout=5).json()
    assert too_many["code"] == 40018 and too_many["error"].endswith("only 3 actions allowed")
    assert (
        requests.post(f"{ntfy.endpoint}/t5", headers={"Actions": "view, Open"}, timeout=5)
        .json()["error"]
        .endswith("parameter 'url' is required for action 'view'")
    )
    # Not UTF-8: ntfy would keep it as an attachment, and this server has attachments off.
    assert requests.post(f"{ntfy.endpoint}/t5", data=b"\xff\xfe", timeout=5).json()["code"] == 40014
    assert requests.delete(f"{ntfy.endpoint}/t5", timeout=5).status_code == 404
    assert ntfy.messages("t5") == []


def test_size_limits_413_and_attachments() -> None:
    with FakeNtfy() as plain:  # a server without attachment-cache-dir
        over = requests.post(f"{plain.endpoint}/big", data=b"x" * 4097, timeout=5)
        assert over.status_code == 400 and over.json()["code"] == 40014
        big_json = requests.post(plain.endpoint, json={"topic": "big", "message": "x" * 9000}, timeout=5)
        assert big_json.status_code == 413 and big_json.json() == {
            "code": 41303,
            "http": 413,
            "error": "JSON body too large",
        }
    with FakeNtfy(attachment_size_limit=10_000) as files:
        attached = requests.post(f"{files.endpoint}/big", data=b"x" * 5000, timeout=5).json()
        assert attached["attachment"]["size"] == 5000 and attached["message"] == "You received a file: attachment.txt"
        too_big = requests.post(f"{files.endpoint}/big", data=b"x" * 10_001, timeout=5)
        assert too_big.status_code == 413 and too_big.json()["code"] == 41301


def test_rate_limits_answer_429() -> None:
    with FakeNtfy(request_burst=2, daily_message_limit=5) as limited:
        codes = [requests.post(f"{limited.endpoint}/r", data=b"x", timeout=5).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert requests.post(f"{limited.endpoint}/r", data=b"x", timeout=5).json() == {
            "code": 42901,
            "http": 429,
            "error": "limit reached: too many requests",
            "link": "https://ntfy.sh/docs/publish/#limitations",
        }
    with FakeNtfy(daily_message_limit=1) as quota:
        assert requests.post(f"{quota.endpoint}/q", data=b"x", timeout=5).status_code == 200
        assert requests.post(f"{quota.endpoint}/q", data=b"x", timeout=5).json()["code"] == 42908


def test_injected_faults_come_first_then_normal_service(ntfy: FakeNtfy) -> None:
    ntfy.fail_next(1, ATTACHMENT_TOO_LARGE)
    assert requests.post(f"{ntfy.endpoint}/f", data=b"x", timeout=5).status_code == 413
    assert requests.post(f"{ntfy.endpoint}/f", data=b"x", timeout=5).status_code == 200
    assert len(ntfy.messages("f")) == 1


def test_a_hanging_server_makes_a_client_time_out_and_records_nothing() -> None:
    with FakeNtfy() as ntfy:
        ntfy.hang(30)  # released by stop(): the test does not wait for it
        with pytest.raises(requests.Timeout):
            requests.post(f"{ntfy.endpoint}/slow", data=b"x", timeout=0.2)
        assert ntfy.messages("slow") == []


def test_pressing_an_http_button_sends_what_the_phone_sends(ntfy: FakeNtfy) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((self.command, self.path, body))
            self.send_response(403 if body == b"refuse" else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        requests.post(
            ntfy.endpoint,
            timeout=5,
            json={
                "topic": "buttons",
                "message": "x",
                "actions": [
                    {"action": "http", "label": "Go", "url": "https://ws.example.com/api/phone", "body": "cap"},
                    {"action": "http", "label": "No", "url": "https://ws.example.com/x", "body": "refuse"},
                    {"action": "view", "label": "Open", "url": "https://ws.example.com/"},
                ],
            },
        )
        go, no, view = ntfy.messages("buttons")[0]["actions"]
        local = f"http://127.0.0.1:{server.server_address[1]}/api/phone"
        assert press(go, local) == (200, b"ok")
        assert press(no, local)[0] == 403
        assert got[0] == ("POST", "/api/phone", b"cap")  # no method given: POST, as the app does
        with pytest.raises(ValueError, match="sends no request"):
            press(view)
    finally:
        server.shutdown()
        server.server_close()
