"""Scripted stand-in for the Anthropic Messages API, for driving the real Claude Code CLI.

Point Claude Code at it with ``ANTHROPIC_BASE_URL=<server.url>``. Standard library only.

Rules match (substring) the text of the LAST user message of requests that carry ``tools``
(Claude Code's main agent loop). A rule answers with text, or with a tool_use; the follow-up
request carrying the tool_result gets ``after_tool_text`` (stop_reason ``end_turn``).
Everything else (title/topic generation, quota checks, haiku side calls) gets ``default_text``.

CLI:  python -m tests.fakes.anthropic_api --host 0.0.0.0 --port 0 --script script.json
      (first stdout line is the bound port).  Script JSON:
      {"default_text": "OK.", "rules": [
         {"trigger": "HELLO.md", "tool": {"name": "Write", "input": {...}},
          "after_tool_text": "Created it.", "delay": 0},
         {"trigger": "hi", "text": "Hello!"}]}
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    trigger: str
    text: str | None = None
    tool: ToolUse | None = None
    delay: float = 0.0
    after_tool_text: str = "Done."

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
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
    # Requests for a "haiku" model are Claude Code's background calls: never match rules.
    skip_haiku: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any] | list[Any]) -> Script:
        if isinstance(d, list):
            d = {"rules": d}
        return cls(
            rules=[Rule.from_dict(r) for r in d.get("rules", [])],
            default_text=d.get("default_text", "OK."),
            skip_haiku=bool(d.get("skip_haiku", True)),
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
    last_user_text: str = ""
    tool_result_for: str | None = None  # tool_use_id if the last user message is a tool_result
    rule: str | None = None  # trigger of the rule that answered, if any
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Reply:
    blocks: list[dict[str, Any]]
    stop_reason: str
    delay: float = 0.0


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _last_user(messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    """Text of the last user message (system reminders left out) and its tool_result id."""
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
            elif block.get("type") == "text":
                if not block.get("text", "").lstrip().startswith("<system-reminder>"):
                    texts.append(block.get("text", ""))
        return "\n".join(texts), tool_id
    return "", None


def _text(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def sse_events(reply: Reply, model: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) sequence the real API streams for ``reply``."""
    usage = {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    message = {"id": _new_id("msg_"), "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
    ]
    for i, block in enumerate(reply.blocks):
        if block["type"] == "text":
            start, chunks = {"type": "text", "text": ""}, block["text"]
            deltas = [{"type": "text_delta", "text": chunks[j:j + 16]}
                      for j in range(0, len(chunks), 16)] or [{"type": "text_delta", "text": ""}]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": raw[j:j + 32]}
                      for j in range(0, len(raw), 32)]
        events.append(("content_block_start",
                       {"type": "content_block_start", "index": i, "content_block": start}))
        if i == 0:
            events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})
                   for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": 12}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def message_json(reply: Reply, model: str) -> dict[str, Any]:
    return {"id": _new_id("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": reply.blocks, "stop_reason": reply.stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 12,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


class FakeAnthropicServer:
    """In-process fake API: ``start()`` / ``stop()`` / ``url`` / ``requests``."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        self.script = script or Script()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._tool_rules: dict[str, Rule] = {}  # tool_use_id -> rule that issued it
        self._log = log
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def start(self) -> FakeAnthropicServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, substring: str, timeout: float = 30.0) -> RecordedRequest:
        """Block until a request whose last user text contains ``substring`` has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for req in self.requests:
                if substring in req.last_user_text:
                    return req
            time.sleep(0.05)
        raise TimeoutError(f"no request with {substring!r} within {timeout}s")

    def record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)
        if self._log:
            self._log(json.dumps(asdict(req)))

    def plan(self, method: str, path: str, body: dict[str, Any]) -> tuple[Reply, RecordedRequest]:
        """Decide the reply to a /v1/messages request and record the request."""
        model = str(body.get("model") or "claude-fake")
        has_tools = bool(body.get("tools"))
        text, tool_id = _last_user(body.get("messages") or [])
        rule = None
        if tool_id is not None:
            with self._lock:
                issued = self._tool_rules.get(tool_id)
            after = issued.after_tool_text if issued else "Done."
            reply = Reply(_text(after), "end_turn")
        else:
            main_loop = has_tools and not (self.script.skip_haiku and "haiku" in model)
            rule = next((r for r in self.script.rules if main_loop and r.trigger in text), None)
            if rule is None:
                reply = Reply(_text(self.script.default_text), "end_turn")
            elif rule.tool is not None:
                tid = _new_id("toolu_")
                with self._lock:
                    self._tool_rules[tid] = rule
                block = {"type": "tool_use", "id": tid, "name": rule.tool.name,
                         "input": rule.tool.input}
                reply = Reply([block], "tool_use", rule.delay)
            else:
                reply = Reply(_text(rule.text or ""), "end_turn", rule.delay)
        rec = RecordedRequest(method, path, model, has_tools, bool(body.get("stream")), text,
                              tool_id, rule.trigger if rule else None)
        self.record(rec)
        return reply, rec


def _make_handler(server: FakeAnthropicServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send_json(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", _new_id("req_"))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                obj = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return obj if isinstance(obj, dict) else {}

        def _dispatch(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body() if self.command in ("POST", "PUT", "PATCH") else {}
            if path == "/v1/messages" and self.command == "POST":
                reply, rec = server.plan(self.command, path, body)
                if reply.delay:
                    time.sleep(reply.delay)
                if rec.stream:
                    self._stream(reply, rec.model or "claude-fake")
                else:
                    self._send_json(200, message_json(reply, rec.model or "claude-fake"))
                return
            if not path.startswith("/_fake/"):
                server.record(RecordedRequest(self.command, self.path, body.get("model")))
            if path == "/v1/messages/count_tokens":
                self._send_json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            elif path == "/_fake/requests":
                self._send_json(200, [asdict(r) for r in server.requests])
            elif path in ("/", "/health", "/_fake/health"):
                self._send_json(200, {"ok": True})
            else:
                self._send_json(404, {"type": "error", "error": {
                    "type": "not_found_error", "message": f"fake API: no {path}"}})

        def _stream(self, reply: Reply, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.send_header("request-id", _new_id("req_"))
            self.end_headers()
            self.close_connection = True
            for event, data in sse_events(reply, model):
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
