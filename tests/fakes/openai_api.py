"""Scripted stand-in for the OpenAI API, for driving the real codex, opencode and aider CLIs.

Two of its shapes, streamed as Server-Sent Events the way the real API streams them:
- Responses (`POST /v1/responses`, what codex speaks): `response.created`, `response.in_progress`,
  `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
  `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
  `response.completed` (with `usage`: input/output/total tokens and their details). Source: the
  API reference's "Streaming events" of the Responses API (platform.openai.com/docs/api-reference/
  responses-streaming) and codex-rs's own reader (`codex-rs/codex-api/src/sse/responses.rs`:
  it ends a turn on `response.completed` and fails one whose stream closes before it).
- Chat Completions (`POST /v1/chat/completions`, what aider (through litellm) and opencode speak):
  `chat.completion.chunk` objects, a `[DONE]` line last; without `stream`, one `chat.completion`.
  Source: the API reference's "The chat completion chunk object".
And `GET /v1/models` (a `list` of `model` objects). Errors have the API's shape
`{"error": {"message", "type", "param", "code"}}`: 401 `invalid_api_key` without a bearer token,
404 for an unknown path.

Rules match (substring) the last user text of a request; a rule's `delay` stalls the stream after
its first event (the model thinking, the connection open and silent). Standard library only.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.scripted_server import JsonHandler, RecordingServer

Json = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    trigger: str
    text: str
    delay: float = 0.0  # seconds the stream stays silent after its first event


@dataclass
class Script:
    rules: list[Rule] = field(default_factory=list)
    default_text: str = "OK."

    def reply(self, text: str) -> tuple[str, float, str | None]:
        rule = next((r for r in self.rules if r.trigger in text), None)
        return (rule.text, rule.delay, rule.trigger) if rule else (self.default_text, 0.0, None)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    model: str | None = None
    stream: bool = False
    last_user_text: str = ""
    matched: str | None = None


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or parts with `text` (input_text, text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(body: Json) -> str:
    """Chat's `messages` or Responses' `input` (a string, or items with a role)."""
    items = body.get("messages") if "messages" in body else body.get("input")
    if isinstance(items, str):
        return items
    users = [i for i in items or [] if isinstance(i, dict) and i.get("role") == "user"]
    return _text_of(users[-1].get("content")) if users else ""


def responses_events(text: str, model: str) -> list[Json]:
    """The Responses API's event sequence for one assistant message of `text`."""
    resp_id, item_id, now = _id("resp_"), _id("msg_"), int(time.time())
    words = len(text.split())
    usage = {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": words,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12 + words,
    }
    base = {"id": resp_id, "object": "response", "created_at": now, "model": model, "error": None}
    part = {"type": "output_text", "text": text, "annotations": []}
    done_item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[Json] = [
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress", "output": []}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**done_item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        {"type": "response.output_text.delta", **at, "delta": text},
        {"type": "response.output_text.done", **at, "text": text},
        {"type": "response.content_part.done", **at, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {
            "type": "response.completed",
            "response": {**base, "status": "completed", "output": [done_item], "usage": usage},
        },
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def chat_chunks(text: str, model: str) -> list[Json]:
    """The Chat Completions stream for one assistant message of `text`."""
    base = {"id": _id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    return [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]


def chat_completion(text: str, model: str) -> Json:
    words = len(text.split())
    return {
        "id": _id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": words, "total_tokens": 12 + words},
    }


def api_error(message: str, kind: str, code: str | None) -> Json:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class FakeOpenAIServer(RecordingServer[RecordedRequest]):
    """In-process fake API: ``start()`` / ``stop()`` / ``url`` (with /v1) / ``requests`` / ``wait_for()``."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script or Script()
        super().__init__(_make_handler, host, port)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    def wait_for(self, trigger: str, timeout: float = 30.0) -> RecordedRequest:
        """The first model request that matched the rule of `trigger`."""
        return self._wait(lambda r: r.matched == trigger, f"model request with {trigger!r}", timeout)


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _json(self, status: int, obj: Json) -> None:
            self._reply_json(status, obj, {"Content-Type": "application/json", "x-request-id": _id("req_")})

        def _dispatch(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            body = self._body() if self.command == "POST" else {}
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                self._json(401, api_error("You didn't provide an API key.", "invalid_request_error", "invalid_api_key"))
                return
            model = str(body.get("model") or "gpt-fake")
            if path == "/v1/models":
                item = {"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "vmgen-tests"}
                self._json(200, {"object": "list", "data": [item]})
                return
            if self.command != "POST" or path not in ("/v1/responses", "/v1/chat/completions"):
                self._json(404, api_error(f"Invalid URL ({self.command} {self.path})", "invalid_request_error", None))
                return
            asked = last_user_text(body)
            text, delay, matched = server.script.reply(asked)
            stream = bool(body.get("stream"))
            server.record(RecordedRequest(self.command, path, model, stream, asked, matched))
            if path == "/v1/responses":
                self._stream([(e["type"], e) for e in responses_events(text, model)], delay, done=False)
            elif stream:
                self._stream([(None, c) for c in chat_chunks(text, model)], delay, done=True)
            else:
                time.sleep(delay)
                self._json(200, chat_completion(text, model))

        def _stream(self, events: list[tuple[str | None, Json]], delay: float, done: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for n, (event, data) in enumerate(events):
                if n == 1:  # after the first event: the model thinking, the connection silent
                    time.sleep(delay)
                head = f"event: {event}\n" if event else ""
                self.wfile.write(f"{head}data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            if done:
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        do_GET = do_POST = do_DELETE = _dispatch

    return Handler
