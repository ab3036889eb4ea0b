"""What the scripted model fakes (anthropic_api, openai_api, gemini_api) share: a threaded HTTP
server run in-process that keeps every request it answered, and a wait for the first that matches."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

Recorded = TypeVar("Recorded")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # clients hanging up are normal


class JsonHandler(BaseHTTPRequestHandler):
    """The fakes' request handlers: HTTP/1.1, quiet, a JSON body read as an object (anything else
    is an empty one), a JSON reply with the headers each API sends."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            obj = json.loads(self.rfile.read(length) if length else b"{}")
        except ValueError:
            return {}
        return obj if isinstance(obj, dict) else {}

    def _reply_json(self, status: int, obj: Any, headers: dict[str, str]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class RecordingServer(Generic[Recorded]):
    """``start()`` / ``stop()`` / ``port`` / ``requests`` / ``record()``, and ``_wait()`` for the
    fakes' own ``wait_for``. `_lock` also guards a subclass's own state (the condition holds it)."""

    def __init__(self, handler: Callable[[Any], type[BaseHTTPRequestHandler]], host: str, port: int) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[Recorded] = []
        self._httpd = QuietServer((host, port), handler(self))

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def _host(self) -> str:
        host = self._httpd.server_address[0]
        return host.decode() if isinstance(host, bytes) else str(host)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, request: Recorded) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _wait(self, matches: Callable[[Recorded], bool], what: str, timeout: float) -> Recorded:
        """The first recorded request that `matches`, waiting up to `timeout` for it."""

        def found() -> Recorded | None:
            return next((r for r in self._requests if matches(r)), None)

        with self._arrived:
            if not self._arrived.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"no {what} within {timeout}s")
            first = found()
        assert first is not None
        return first
