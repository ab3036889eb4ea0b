"""The scripted fake Anthropic API speaks the real Messages API wire format."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests` is not an installed package
    sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_api import FakeAnthropicServer, Rule, Script, ToolUse  # noqa: E402

WRITE_INPUT = {"file_path": "/work/HELLO.md", "content": "hello from the scripted model\n"}
TOOLS = [{"name": "Write", "description": "write a file", "input_schema": {"type": "object"}}]


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    script = Script(
        rules=[
            Rule("HELLO.md", tool=ToolUse("Write", WRITE_INPUT), after_tool_text="Created it."),
            Rule("say hi", text="Hi there, this is a scripted reply that spans chunks."),
            Rule("slowly", text="late", delay=0.5),
        ]
    )
    with FakeAnthropicServer(script) as srv:
        yield srv


def request(
    srv: FakeAnthropicServer, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request(
        method,
        path,
        body=json.dumps(body) if body is not None else None,
        headers={"Content-Type": "application/json", "x-api-key": "test"},
    )
    resp = conn.getresponse()
    data = resp.read().decode()
    conn.close()
    return resp.status, resp.getheader("Content-Type") or "", data


def messages_body(
    *messages: dict[str, Any], stream: bool = True, tools: bool = True, model: str = "claude-sonnet-4-5"
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": 1024, "stream": stream, "messages": list(messages)}
    if tools:
        body["tools"] = TOOLS
    return body


def user(text: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>"},
            {"type": "text", "text": text},
        ],
    }


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        events.append((lines["event"], data))
    return events


def skeleton(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Event names with pings dropped and runs of deltas collapsed to one."""
    names: list[str] = []
    for name, _ in events:
        if name != "ping" and not (names and name == names[-1] == "content_block_delta"):
            names.append(name)
    return names


EXPECTED = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]


def test_text_turn_streams_the_real_event_sequence(server: FakeAnthropicServer) -> None:
    status, ctype, raw = request(server, "POST", "/v1/messages?beta=true", messages_body(user("please say hi")))
    assert status == 200 and ctype.startswith("text/event-stream")
    events = parse_sse(raw)
    assert skeleton(events) == EXPECTED
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == []
    assert start["stop_reason"] is None and start["model"] == "claude-sonnet-4-5"
    block = next(d for n, d in events if n == "content_block_start")
    assert block["index"] == 0 and block["content_block"] == {"type": "text", "text": ""}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert len(deltas) > 1 and all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == ("Hi there, this is a scripted reply that spans chunks.")
    final = next(d for n, d in events if n == "message_delta")
    assert final["delta"]["stop_reason"] == "end_turn" and "output_tokens" in final["usage"]


def test_tool_use_turn_then_tool_result_gets_final_text(server: FakeAnthropicServer) -> None:
    prompt = user("please create HELLO.md")
    _, _, raw = request(server, "POST", "/v1/messages", messages_body(prompt))
    events = parse_sse(raw)
    assert skeleton(events) == EXPECTED
    block = next(d for n, d in events if n == "content_block_start")["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "Write" and block["input"] == {}
    assert block["id"].startswith("toolu_")
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert json.loads("".join(d["partial_json"] for d in deltas)) == WRITE_INPUT
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "tool_use"

    assistant = {"role": "assistant", "content": [dict(block, input=WRITE_INPUT)]}
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "File created: HELLO.md"}],
    }
    _, _, raw = request(server, "POST", "/v1/messages", messages_body(prompt, assistant, result))
    events = parse_sse(raw)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Created it."
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "end_turn"
    last = server.requests[-1]
    assert last.tool_result_for == block["id"] and last.rule is None


@pytest.mark.parametrize(
    "body",
    [
        messages_body(user("please create HELLO.md"), tools=False),  # side request: no tools
        messages_body(user("please create HELLO.md"), model="claude-haiku-4-5"),  # haiku side call
        messages_body(user("something unscripted")),  # main loop, no rule matches
    ],
)
def test_unmatched_requests_get_the_fallback_reply(server: FakeAnthropicServer, body: dict[str, Any]) -> None:
    _, _, raw = request(server, "POST", "/v1/messages", body)
    events = parse_sse(raw)
    assert skeleton(events) == EXPECTED
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "OK."
    assert server.requests[-1].rule is None


def test_non_streaming_returns_a_plain_message(server: FakeAnthropicServer) -> None:
    status, ctype, raw = request(server, "POST", "/v1/messages", messages_body(user("say hi"), stream=False))
    msg = json.loads(raw)
    assert status == 200 and ctype == "application/json"
    assert msg["type"] == "message" and msg["stop_reason"] == "end_turn"
    assert msg["content"][0]["text"].startswith("Hi there")


def test_delay_stalls_before_the_content(server: FakeAnthropicServer) -> None:
    began = time.monotonic()
    _, _, raw = request(server, "POST", "/v1/messages", messages_body(user("answer slowly")))
    assert time.monotonic() - began >= 0.5
    assert skeleton(parse_sse(raw)) == EXPECTED


def test_other_endpoints_and_the_request_log(server: FakeAnthropicServer) -> None:
    status, _, raw = request(server, "POST", "/v1/messages/count_tokens", messages_body(user("count me"), stream=False))
    assert status == 200 and json.loads(raw)["input_tokens"] > 0
    status, _, _ = request(server, "HEAD", "/api/hello")
    assert status == 200
    status, _, raw = request(server, "GET", "/api/oauth/whatever")
    assert status == 404 and json.loads(raw)["type"] == "error"
    request(server, "POST", "/v1/messages", messages_body(user("please say hi")))
    assert server.wait_for("say hi", timeout=1).rule == "say hi"
    _, _, raw = request(server, "GET", "/_fake/requests")
    logged = json.loads(raw)
    assert [r["path"] for r in logged] == [
        "/v1/messages/count_tokens",
        "/api/hello",
        "/api/oauth/whatever",
        "/v1/messages",
    ]
    assert logged[-1]["last_user_text"] == "please say hi" and logged[-1]["has_tools"] is True


def test_script_loads_from_json(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            {
                "default_text": "Fine.",
                "rules": [
                    {"trigger": "x", "tool": {"name": "Bash", "input": {"command": "ls"}}, "delay": 1},
                    {"trigger": "y", "text": "why"},
                ],
            }
        )
    )
    script = Script.load(path)
    assert script.default_text == "Fine."
    assert script.rules[0] == Rule("x", tool=ToolUse("Bash", {"command": "ls"}), delay=1.0)
    assert script.rules[1] == Rule("y", text="why")


def test_module_cli_prints_port_first(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"trigger": "ping me", "text": "pong"}]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.anthropic_api",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--script",
            str(path),
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/messages", json.dumps(messages_body(user("ping me"), stream=False)))
        assert json.loads(conn.getresponse().read())["content"][0]["text"] == "pong"
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
