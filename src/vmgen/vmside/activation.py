"""HTTP servers on the unix sockets systemd made for them (socket activation).

systemd creates the socket as root, with the owner, group and mode its unit names, before the
service starts: no other process can bind the address first or swap the file, and the service's
own user needs no right to create anything in /run/vmgen.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FULL_WARNING_SECONDS = 60.0  # at most one "every slot is busy" line a minute

# systemd's socket activation hands over the (first) listening socket as this descriptor.
SD_LISTEN_FDS_START = 3


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A thread per connection, at most `max_connections` at a time: past that, the next one
    waits to be accepted (the kernel's backlog holds it) instead of growing the process."""

    daemon_threads = True
    max_connections = 64
    request_queue_size = 128  # listen()'s backlog where we listen ourselves (tests)
    _slots: threading.BoundedSemaphore | None = None
    _warned_at = float("-inf")

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots is None:
            self._slots = threading.BoundedSemaphore(self.max_connections)
        if not self._slots.acquire(blocking=False):
            # Said, since nothing else would: the connection waits unserved, its client sees a
            # page that never loads, and the log is where a person looks.
            if time.monotonic() - self._warned_at >= FULL_WARNING_SECONDS:
                self._warned_at = time.monotonic()
                log.warning("all %d connections are in use: new ones wait until one closes", self.max_connections)
            self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            assert self._slots is not None
            self._slots.release()


def serve_unix(
    handler: type[BaseHTTPRequestHandler], path: Path | None, unit: str, max_connections: int = 64
) -> UnixHTTPServer:
    """Listen on `path` (tests), or on the socket systemd passed to `unit` when None."""
    if path is not None:
        path.unlink(missing_ok=True)
        server = UnixHTTPServer(str(path), handler)
        server.max_connections = max_connections
        return server
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        raise RuntimeError(f"no socket from systemd (LISTEN_FDS): run as {unit}")
    # systemd's socket listens already, with its own backlog (SOMAXCONN): no listen() here, which
    # would cut it to request_queue_size and refuse Caddy's connections in a burst of requests.
    server = UnixHTTPServer("", handler, bind_and_activate=False)
    server.max_connections = max_connections
    server.socket.close()
    server.socket = socket.socket(fileno=SD_LISTEN_FDS_START)
    return server
