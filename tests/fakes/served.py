"""What every fake SaaS API here shares: a real HTTP server on a free port, served from a thread.

The port is bound in the constructor, so `endpoint` is known before `start()`. Bind host="0.0.0.0" (with
public_host= the address containers use) to serve simulated VMs.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (a long poll it cancelled) leaves a closed socket: expected, not a traceback


class ServedFake:
    """Base of the fakes: lifecycle (start/stop, or `with`), `port` and `root_url`."""

    def __init__(self, handler: type[FakeHandler], *, host: str, port: int, public_host: str | None) -> None:
        self._server = _Server((host, port), handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._public_host = public_host or ("127.0.0.1" if host in ("", "0.0.0.0") else host)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://{self._public_host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release_waiters()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def _release_waiters(self) -> None:
        """Let requests that wait on the fake (long polls) return before the server stops."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' pools expect from the real APIs
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, content_type: str | None, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
