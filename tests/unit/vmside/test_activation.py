"""The VM's HTTP servers on unix sockets: a connection past the server's limit waits, and the
log says that every connection is in use (else a page that never loads leaves no trace)."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.polling import wait_until
from vmgen.vmside.activation import serve_unix


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_connection_past_the_limit_waits_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sock"
    server = serve_unix(Hello, path, "test.service", max_connections=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        holder = socket.socket(socket.AF_UNIX)
        holder.connect(str(path))  # holds the one slot: it sends nothing
        waiting = socket.socket(socket.AF_UNIX)
        waiting.settimeout(10)
        with caplog.at_level(logging.WARNING, logger="vmgen.vmside.activation"):
            waiting.connect(str(path))
            waiting.sendall(b"GET / HTTP/1.0\r\n\r\n")
            said = wait_until(lambda: caplog.text, lambda text: "all 1 connections are in use" in text, timeout=10)
            assert "all 1 connections are in use" in said
            waiting.settimeout(0.2)
            with pytest.raises(TimeoutError):
                waiting.recv(1)  # not served while the slot is held
        holder.close()  # the slot frees: the waiting one is served
        waiting.settimeout(10)
        assert waiting.recv(1024).startswith(b"HTTP/1.0 200")
        waiting.close()
    finally:
        server.shutdown()
        server.server_close()
