"""The scripted fake Gemini API answers as the real one does: its stream as the SDK reads it, its
structured output, its error bodies."""

from __future__ import annotations

import http.client
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests` is not an installed package
    sys.path.insert(0, str(ROOT))

from tests.fakes.gemini_api import API_KEY, FakeGeminiServer, Rule, Script  # noqa: E402

# @google/genai's reader of a stream (its responseLineRE), as bundled in gemini-cli 0.61.0.
RESPONSE_LINE = re.compile(r"^\s*data: (.*)(?:\n\n|\r\r|\r\n\r\n)")
ASK = {"contents": [{"role": "user", "parts": [{"text": "say hi, please"}]}]}


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    srv = FakeGeminiServer(Script([Rule("say hi", "Hi there from the scripted model.")])).start()
    yield srv
    srv.stop()


def call(
    srv: FakeGeminiServer, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = {"x-goog-api-key": API_KEY, "Content-Type": "application/json"} if headers is None else headers
    conn.request(method, path, json.dumps(body) if body is not None else None, sent)
    response = conn.getresponse()
    return response.status, response.read().decode()


def test_a_stream_reads_as_the_sdk_reads_it(server: FakeGeminiServer) -> None:
    status, body = call(server, "POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", ASK)
    assert status == 200
    chunks = []
    while match := RESPONSE_LINE.match(body):
        chunks.append(json.loads(match.group(1)))
        body = body[match.end() :]
    assert body == "" and len(chunks) == 2
    text = "".join(part["text"] for c in chunks for part in c["candidates"][0]["content"]["parts"])
    assert text == "Hi there from the scripted model."
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] > 0 and chunks[0]["modelVersion"] == "gemini-2.5-pro"
    (request,) = server.requests
    assert request.stream and request.matched == "say hi"


def test_a_request_for_json_gets_json_of_its_schema(server: FakeGeminiServer) -> None:
    schema = {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "model_choice": {"type": "string", "enum": ["flash", "pro"]}},
        "required": ["reasoning", "model_choice"],
    }
    body = {**ASK, "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}}
    status, answer = call(server, "POST", "/v1beta/models/gemini-2.5-flash-lite:generateContent", body)
    assert status == 200
    text = json.loads(answer)["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text) == {"reasoning": "", "model_choice": "flash"}


def test_models_and_tokens(server: FakeGeminiServer) -> None:
    status, listing = call(server, "GET", "/v1beta/models")
    assert status == 200 and "models/gemini-2.5-pro" in [m["name"] for m in json.loads(listing)["models"]]
    status, counted = call(server, "POST", "/v1beta/models/gemini-2.5-pro:countTokens", ASK)
    assert status == 200 and json.loads(counted)["totalTokens"] > 0


@pytest.mark.parametrize(
    ("headers", "path", "code", "status"),
    [
        ({"x-goog-api-key": "not-the-key"}, "/v1beta/models/gemini-2.5-pro:generateContent", 400, "INVALID_ARGUMENT"),
        ({"Authorization": "Bearer ya29.x"}, "/v1beta/models/gemini-2.5-pro:generateContent", 401, "UNAUTHENTICATED"),
        ({}, "/v1beta/models/gemini-2.5-pro:generateContent", 403, "PERMISSION_DENIED"),
        ({"x-goog-api-key": API_KEY}, "/v1beta/models/gpt-4:generateContent", 404, "NOT_FOUND"),
        ({"x-goog-api-key": API_KEY}, "/v1beta/files", 404, "NOT_FOUND"),
    ],
)
def test_errors_have_the_apis_shape(
    server: FakeGeminiServer, headers: dict[str, str], path: str, code: int, status: str
) -> None:
    got, body = call(server, "POST", path, ASK, headers)
    error = json.loads(body)["error"]
    assert got == code and error["code"] == code and error["status"] == status and error["message"]
    if code == 400:
        assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert server.requests == []  # refused before anything was asked of the model
