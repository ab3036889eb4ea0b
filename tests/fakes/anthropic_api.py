"""Scripted stand-in for the Anthropic Messages API, for driving the real Claude Code CLI.

Point Claude Code at it with ``ANTHROPIC_BASE_URL=<server.url>``. Standard library only.
Rules match (substring) the LAST user message text of requests that carry ``tools`` (the main
agent loop) and answer with text or a tool_use; the follow-up carrying the tool_result gets
``after_tool_text``. Everything else (title generation, haiku side calls) gets ``default_text``.

CLI: python -m tests.fakes.anthropic_api --host 0.0.0.0 --port 0 --script script.json
prints the bound port as its first stdout line and one JSON line per request on stderr. Script:
{"default_text": "OK.", "rules": [{"trigger": "HELLO.md", "tool": {"name": "Write", "input":
 {...}}, "after_tool_text": "Created it."}, {"trigger": "hi", "text": "Hello!", "delay": 2.5}]}
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.fakes.scripted_server import JsonHandler, RecordingServer

Json = dict[str, Any]


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: Json


@dataclass(frozen=True)
class Rule:
    trigger: str
    text: str | None = None
    tool: ToolUse | None = None
    delay: float = 0.0  # seconds to stall (after message_start) before the content streams
    after_tool_text: str = "Done."

    @classmethod
    def from_dict(cls, d: Json) -> Rule:
        tool = d.get("tool")
        return cls(
            trigger=d["trigger"],
            text=d.get("text"),
            tool=ToolUse(tool["name"], dict(tool.get("input", {}))) if tool else None,
            delay=float(d.get("delay", 0.0)),
            after_tool_text=d.get("after_tool_text", "Done."),
        )


@dataclass
class Script:
    rules: list[Rule] = field(default_factory=list)
    default_text: str = "OK."
    skip_haiku: bool = True  # "haiku" requests are Claude Code's side calls: never match rules

    @classmethod
    def from_dict(cls, d: Json | list[Json]) -> Script:
        d = {"rules": d} if isinstance(d, list) else d
        return cls(
            [Rule.from_dict(r) for r in d.get("rules", [])],
            d.get("default_text", "OK."),
            bool(d.get("skip_haiku", True)),
        )

    @classmethod
    def load(cls, path: str | Path) -> Script:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    model: str | None = None
    has_tools: bool = False
    stream: bool = False
    last_user_text: str = ""  # text blocks of the last user message, system reminders left out
    tool_result_for: str | None = None  # tool_use_id when the last user message is a tool_result
    rule: str | None = None  # trigger of the rule that answered, if any
    at: float = field(default_factory=time.time)
    # The tool_result's text (the command's output, or Claude Code's refusal), when there is one.
    tool_result_text: str = ""


@dataclass(frozen=True)
class Reply:
    blocks: list[Json]
    stop_reason: str
    delay: float = 0.0


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _text(text: str, delay: float = 0.0) -> Reply:
    return Reply([{"type": "text", "text": text}], "end_turn", delay)


def _tool_result_text(block: Json) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content or [] if isinstance(part, dict))


def _newest_tool_results(messages: list[Json]) -> str:
    """The text of the newest user message's tool results that has any (a user message of
    reminders may follow it)."""
    for msg in reversed(messages):
        content = msg.get("content") if msg.get("role") == "user" else None
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        results = [_tool_result_text(b) for b in blocks if b.get("type") == "tool_result"]
        if results:
            return "\n".join(results)
    return ""


def _last_user(messages: list[Json]) -> tuple[str, str | None]:
    """Text of the last user message (without <system-reminder> blocks) and its tool_result id."""
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content, None
        texts, tool_id = [], None
        for block in content or []:
            if block.get("type") == "tool_result":
                tool_id = block.get("tool_use_id")
            elif block.get("type") == "text" and not block.get("text", "").lstrip().startswith("<system-reminder>"):
                texts.append(block.get("text", ""))
        return "\n".join(texts), tool_id
    return "", None


def message_json(reply: Reply, model: str, content: list[Json] | None = None) -> Json:
    """A complete (non-streamed) Message; with ``content=[]`` the message_start payload."""
    done = content is None
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.blocks if done else content,
        "stop_reason": reply.stop_reason if done else None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 12 if done else 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def sse_events(reply: Reply, model: str) -> list[tuple[str, Json]]:
    """The (event, data) sequence the real API streams for ``reply``."""
    events: list[tuple[str, Json]] = [
        ("message_start", {"type": "message_start", "message": message_json(reply, model, [])}),
        ("ping", {"type": "ping"}),
    ]
    for i, block in enumerate(reply.blocks):
        if block["type"] == "text":
            start: Json = {"type": "text", "text": ""}
            text = block["text"]
            deltas = [{"type": "text_delta", "text": text[j : j + 16]} for j in range(0, max(len(text), 1), 16)]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": raw[j : j + 32]} for j in range(0, len(raw), 32)]
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 12},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class FakeAnthropicServer(RecordingServer[RecordedRequest]):
    """In-process fake API: ``start()`` / ``stop()`` / ``url`` / ``requests`` / ``wait_for()``."""

    def __init__(
        self,
        script: Script | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.script = script or Script()
        self._tool_rules: dict[str, Rule] = {}  # tool_use_id -> rule that issued it
        self._log = log
        super().__init__(_make_handler, host, port)

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self._host in ('0.0.0.0', '') else self._host}:{self.port}"

    def wait_for(self, substring: str, timeout: float = 30.0, main_only: bool = True) -> RecordedRequest:
        """Wait for a request whose last user text contains ``substring`` (by default only
        main-loop requests, i.e. with tools: the title request also quotes the prompt)."""
        return self._wait(
            lambda r: substring in r.last_user_text and (r.has_tools or not main_only),
            f"request with {substring!r}",
            timeout,
        )

    def record(self, request: RecordedRequest) -> None:
        super().record(request)
        if self._log:
            self._log(json.dumps(asdict(request)))

    def plan(self, method: str, path: str, body: Json) -> tuple[Reply, RecordedRequest]:
        """Decide the reply to a /v1/messages request, and record the request."""
        model = str(body.get("model") or "claude-fake")
        has_tools = bool(body.get("tools"))
        text, tool_id = _last_user(body.get("messages") or [])
        result_text = _newest_tool_results(body.get("messages") or [])
        rule = None
        if tool_id is not None:  # follow-up to a tool_use: never re-match (results quote files)
            with self._lock:
                issued = self._tool_rules.get(tool_id)
            reply = _text(issued.after_tool_text if issued else "Done.")
        else:
            main_loop = has_tools and not (self.script.skip_haiku and "haiku" in model)
            rule = next((r for r in self.script.rules if main_loop and r.trigger in text), None)
            if rule is None:
                reply = _text(self.script.default_text)
            elif rule.tool is not None:
                tid = _new_id("toolu_")
                with self._lock:
                    self._tool_rules[tid] = rule
                reply = Reply(
                    [{"type": "tool_use", "id": tid, "name": rule.tool.name, "input": rule.tool.input}],
                    "tool_use",
                    rule.delay,
                )
            else:
                reply = _text(rule.text or "", rule.delay)
        rec = RecordedRequest(
            method,
            path,
            model,
            has_tools,
            bool(body.get("stream")),
            text,
            tool_id,
            rule.trigger if rule else None,
            tool_result_text=result_text,
        )
        self.record(rec)
        return reply, rec


def _make_handler(server: FakeAnthropicServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in {**headers, "request-id": _new_id("req_")}.items():
                self.send_header(key, value)
            self.end_headers()

        def _send_json(self, status: int, obj: Any) -> None:
            self._reply_json(status, obj, {"Content-Type": "application/json", "request-id": _new_id("req_")})

        def _dispatch(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body()
            if path == "/v1/messages" and self.command == "POST":
                reply, rec = server.plan(self.command, path, body)
                if rec.stream:
                    self._stream(reply, rec.model or "claude-fake")
                else:
                    time.sleep(reply.delay)
                    self._send_json(200, message_json(reply, rec.model or "claude-fake"))
                return
            if not path.startswith("/_fake/"):
                server.record(RecordedRequest(self.command, self.path, body.get("model")))
            if path == "/v1/messages/count_tokens":
                self._send_json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            elif path == "/_fake/requests":
                self._send_json(200, [asdict(r) for r in server.requests])
            elif path in ("/", "/api/hello", "/_fake/health"):  # /api/hello: CLI reachability
                self._send_json(200, {"ok": True})
            else:
                self._send_json(
                    404, {"type": "error", "error": {"type": "not_found_error", "message": f"fake API has no {path}"}}
                )

        def _stream(self, reply: Reply, model: str) -> None:
            self._head(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "close"})
            self.close_connection = True
            for n, (event, data) in enumerate(sse_events(reply, model)):
                if n == 2:  # after message_start + ping: the "model is thinking" stall
                    time.sleep(reply.delay)
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Scripted fake Anthropic Messages API")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="JSON rules file")
    ap.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = ap.parse_args(argv)
    script = Script.load(args.script) if args.script else Script()
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    server = FakeAnthropicServer(script, args.host, args.port, log=log)
    print(server.port, flush=True)
    try:
        server.start()
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
