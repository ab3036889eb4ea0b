"""Scripted stand-in for the Gemini API (generativelanguage.googleapis.com), for driving the real
gemini CLI (`@google/gemini-cli`, through its `@google/genai` SDK).

Shapes, and where they come from:
- `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`: Server-Sent Events, each
  `data: <GenerateContentResponse>` and a blank line, the last candidate with `finishReason: STOP`
  and `usageMetadata`, each chunk with `modelVersion` and `responseId`. Sources: the API reference
  (ai.google.dev/api/generate-content, "models.streamGenerateContent" and "GenerateContentResponse"),
  gemini-cli's recorded responses (`integration-tests/*.responses`, e.g. api-resilience.responses:
  text chunks, a usageMetadata chunk, `finishReason: "STOP"`), and @google/genai's stream reader
  as bundled in gemini-cli 0.61.0 (`responseLineRE = /^\\s*data: (.*)(?:\\n\\n|\\r\\r|\\r\\n\\r\\n)/`;
  a body with `error` is thrown as an ApiError).
- `POST ...:generateContent` (the CLI's side requests: its model router, next-speaker check) is one
  GenerateContentResponse; a request for JSON (`generationConfig.responseMimeType` application/json
  with `responseJsonSchema` or `responseSchema`, API reference "GenerationConfig") is answered with
  JSON text fitting the schema, as the real model's structured output is; `POST ...:countTokens`
  is `{"totalTokens": n}`; `GET /v1beta/models` is a `models` list of Model objects (name,
  version, displayName, inputTokenLimit, outputTokenLimit, supportedGenerationMethods).
- Errors are google.rpc.Status bodies, `{"error": {"code", "message", "status", "details"?}}`, as
  the real API answers (quoted in gemini-cli issues #4690 and #25198 and in the issues of
  clients that hit them):
  400 INVALID_ARGUMENT "API key not valid. Please pass a valid API key." with an ErrorInfo of
  reason API_KEY_INVALID for a key that is not the fake's; 401 UNAUTHENTICATED "Request had
  invalid authentication credentials..." for a bearer token instead of a key; 403
  PERMISSION_DENIED "Method doesn't allow unregistered callers..." for no key at all; 404 NOT_FOUND
  "models/x is not found for API version v1beta..." for a model it does not serve (one not named
  `gemini-*`), and for any other path.

The key is `x-goog-api-key` (what the SDK sends) or `?key=`. Rules match (substring) the last user
text of a streaming request; a rule's `delay` stalls the stream after its first chunk (the model
thinking, the connection open and silent). Side requests never stall. Standard library only.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.openai_api import RecordedRequest, Rule, Script
from tests.fakes.scripted_server import JsonHandler, RecordingServer

__all__ = ["API_KEY", "MODELS", "FakeGeminiServer", "RecordedRequest", "Rule", "Script"]

Json = dict[str, Any]
API_KEY = "test-token"
MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro-preview")
MODEL_CALL = re.compile(r"/v1(?:beta|alpha)?/models/([A-Za-z0-9._-]+):([A-Za-z]+)")
# The CLI picks among many models by name (its router's flash-lite, the newest previews) and each
# release names others: every `gemini-*` name is served; any other model is not found.
SERVED = re.compile(r"gemini-[a-z0-9][a-z0-9.-]*")


def _text_of(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts") or []
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and "text" in p)


def last_user_text(body: Json) -> str:
    """The text of the last `user` content of a generateContent body (`contents`)."""
    users = [c for c in body.get("contents") or [] if isinstance(c, dict) and c.get("role", "user") == "user"]
    return _text_of(users[-1]) if users else ""


def response_chunks(text: str, model: str) -> list[Json]:
    """The stream of GenerateContentResponse chunks for one model answer of `text`."""
    response_id = secrets.token_urlsafe(16)
    words = text.split(" ")
    first, rest = words[0], " ".join(words[1:])
    usage = {"promptTokenCount": 12, "candidatesTokenCount": len(words), "totalTokenCount": 12 + len(words)}

    def chunk(part: str, last: bool) -> Json:
        candidate: Json = {"content": {"parts": [{"text": part}], "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
        out: Json = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        out["usageMetadata"] = usage if last else {"promptTokenCount": 12, "totalTokenCount": 12}
        return out

    return [chunk(first + (" " if rest else ""), not rest), *([chunk(rest, True)] if rest else [])]


def whole_response(text: str, model: str) -> Json:
    """One GenerateContentResponse (generateContent without streaming)."""
    last = response_chunks(text, model)[-1]
    candidate = {**last["candidates"][0], "content": {"parts": [{"text": text}], "role": "model"}}
    return {**last, "candidates": [candidate]}


def example_of(schema: Any) -> Any:
    """A value that fits a response schema (`responseJsonSchema`, JSON Schema, or `responseSchema`,
    the API's OpenAPI subset with upper-case types): its first enum value, its minimum, every
    required property (all of them when none is marked required)."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        wanted = schema.get("required") or list(properties)
        return {name: example_of(properties.get(name)) for name in wanted}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return ""


def answer_text(body: Json, text: str) -> str:
    """The model's text for a request: `text`, or JSON fitting the schema the request asks for
    (`generationConfig.responseMimeType` "application/json", as the CLI's model router does)."""
    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") != "application/json":
        return text
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    return json.dumps(example_of(schema) if schema else {})


def model_object(name: str) -> Json:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def api_error(code: int, status: str, message: str, reason: str | None = None) -> Json:
    error: Json = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
        ]
    return {"error": error}


BAD_KEY = api_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
BEARER = api_error(
    401,
    "UNAUTHENTICATED",
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid"
    " authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
)
NO_KEY = api_error(
    403,
    "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or"
    " other form of API consumer identity to call this API.",
)


def unknown_model(model: str, method: str) -> Json:
    return api_error(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version v1beta, or is not supported for {method}. Call ListModels"
        " to see the list of available models and their supported methods.",
    )


class FakeGeminiServer(RecordingServer[RecordedRequest]):
    """In-process fake API: ``start()`` / ``stop()`` / ``url`` (the base URL, GOOGLE_GEMINI_BASE_URL)
    / ``requests`` (every request, streaming or not; `stream` tells) / ``wait_for()``."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script or Script()
        super().__init__(_make_handler, host, port)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def wait_for(self, trigger: str, timeout: float = 30.0) -> RecordedRequest:
        """The first streaming model request that matched the rule of `trigger`."""
        return self._wait(lambda r: r.matched == trigger and r.stream, f"model request with {trigger!r}", timeout)


def _make_handler(server: FakeGeminiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _json(self, status: int, obj: Json) -> None:
            self._reply_json(status, obj, {"Content-Type": "application/json; charset=UTF-8"})

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            body = self._body() if self.command == "POST" else {}
            key = self.headers.get("x-goog-api-key") or (parse_qs(url.query).get("key") or [""])[0]
            if not key and self.headers.get("Authorization", "").startswith("Bearer "):
                self._json(401, BEARER)
                return
            if not key:
                self._json(403, NO_KEY)
                return
            if key != API_KEY:
                self._json(400, BAD_KEY)
                return
            path = url.path.rstrip("/")
            if self.command == "GET" and path in ("/v1beta/models", "/v1/models"):
                self._json(200, {"models": [model_object(m) for m in MODELS]})
                return
            call = MODEL_CALL.fullmatch(path)
            if self.command != "POST" or call is None:
                self._json(404, api_error(404, "NOT_FOUND", f"Method not found: {self.command} {url.path}"))
                return
            model, method = call.groups()
            if not SERVED.fullmatch(model):
                self._json(404, unknown_model(model, method))
                return
            asked = last_user_text(body)
            stream = method == "streamGenerateContent"
            if method == "countTokens":
                server.record(RecordedRequest(self.command, path, model, False, asked, None))
                self._json(200, {"totalTokens": max(1, len(json.dumps(body)) // 4)})
                return
            if method not in ("generateContent", "streamGenerateContent"):
                self._json(404, api_error(404, "NOT_FOUND", f"Method not found: {method}"))
                return
            text, delay, matched = server.script.reply(asked)
            server.record(RecordedRequest(self.command, path, model, stream, asked, matched))
            text = answer_text(body, text)
            if stream:
                self._stream(response_chunks(text, model), delay)
            else:
                self._json(200, whole_response(text, model))

        def _stream(self, chunks: list[Json], delay: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for n, chunk in enumerate(chunks):
                if n == 1:  # after the first chunk: the model thinking, the connection silent
                    time.sleep(delay)
                self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                self.wfile.flush()

        do_GET = do_POST = do_DELETE = _dispatch

    return Handler
