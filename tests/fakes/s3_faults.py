"""A fault-injecting HTTP proxy to put in front of an S3 server (moto's) in tests.

It forwards every request unchanged, counts UploadPart attempts per part number, and can,
for the first N attempts of a given part: answer 500 InternalError (after reading the body, as
S3 does), or cut the connection halfway through the part's body. It can also hold one part's
upload until released, so a test can kill the uploading process at a known point: the test
waits on `part_started`, an Event, never on a sleep.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}
_ERROR_500 = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>injected by s3_faults</Message></Error>"
)


@dataclass
class Faults:
    """What to break. Keys are part numbers; values how many first attempts to break."""

    fail_500: dict[int, int] = field(default_factory=dict)
    cut: dict[int, int] = field(default_factory=dict)
    hold: int | None = None  # this part's first attempt blocks until release()


class FaultProxy:
    def __init__(self, upstream_port: int, faults: Faults | None = None) -> None:
        self.upstream_port = upstream_port
        self.faults = faults or Faults()
        self.attempts: Counter[int] = Counter()  # part number -> UploadPart attempts seen
        self.injected: list[tuple[str, int]] = []  # (fault, part number), in order
        self.part_started = threading.Event()  # set when the held part arrives
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _decide(self, part: int) -> str:
        """Which fault (or "forward") this attempt of `part` gets."""
        with self._lock:
            self.attempts[part] += 1
            attempt = self.attempts[part]
            if self.faults.hold == part and attempt == 1:
                fault = "hold"
            elif attempt <= self.faults.fail_500.get(part, 0):
                fault = "500"
            elif attempt <= self.faults.cut.get(part, 0):
                fault = "cut"
            else:
                return "forward"
            self.injected.append((fault, part))
            return fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, like a real endpoint

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._handle()

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                query = parse_qs(urlsplit(self.path).query)
                if self.command == "PUT" and "partNumber" in query and "uploadId" in query:
                    fault = proxy._decide(int(query["partNumber"][0]))
                    if fault != "forward":
                        return self._inject(fault, length)
                body = self.rfile.read(length) if length else b""
                self._forward(body)

            def _inject(self, fault: str, length: int) -> None:
                if fault == "hold":
                    proxy.part_started.set()
                    proxy._release.wait(timeout=120)
                    fault = "cut"
                if fault == "cut":
                    self.rfile.read(length // 2)
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.rfile.read(length)
                self.send_response(500)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_ERROR_500)))
                self.end_headers()
                self.wfile.write(_ERROR_500)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    self.send_response_only(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in _HOP_BY_HOP | {"content-length"}:
                            self.send_header(key, value)
                    # Relay the body in chunks: GETs of whole backups must not sit in memory.
                    declared = response.getheader("Content-Length")
                    data = b"" if declared is not None else response.read()
                    self.send_header("Content-Length", declared if declared is not None else str(len(data)))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if data:
                        self.wfile.write(data)
                    while chunk := response.read(1 << 20):
                        self.wfile.write(chunk)
                finally:
                    upstream.close()

        return Handler
