"""Long-lived connections (websockets, server-sent events) run through the login service, so that
they end with the login.

Caddy's `forward_auth` asks once, when a request arrives; a websocket that was let through at its
upgrade would go on after Sign out, and after the session expired, for as long as the page keeps
it open (a desktop's VNC stream, the code UI's terminal). So Caddy sends every such request to the
login service instead, which checks it like any other, connects to the backend itself and relays
the bytes, keeping each relay under the login (the *family*) it was opened by. When a family ends
(Sign out, expiry, pushed out by newer logins) its relays are shut down at once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
MAX_STREAMS = 96
CHUNK = 64 << 10
MAX_RESPONSE_HEAD = 64 << 10


@dataclass(eq=False)
class Stream:
    family_id: str
    sockets: tuple[socket.socket, ...]
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        """Ends both directions: the relay's blocked reads return, and each side sees the end."""
        self.closed.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Streams:
    """The open relays by family."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, set[Stream]] = {}

    def add(self, family_id: str, *sockets: socket.socket) -> Stream | None:
        """A relay registered under its family, or None when there are too many already."""
        with self._lock:
            if sum(len(streams) for streams in self._open.values()) >= self.limit:
                return None
            stream = Stream(family_id, sockets)
            self._open.setdefault(family_id, set()).add(stream)
            return stream

    def remove(self, stream: Stream) -> None:
        with self._lock:
            streams = self._open.get(stream.family_id, set())
            streams.discard(stream)
            if not streams:
                self._open.pop(stream.family_id, None)

    def end_family(self, family_id: str) -> int:
        with self._lock:
            streams = self._open.pop(family_id, set())
        for stream in streams:
            stream.close()
        if streams:
            log.info("web login: closed %d live connection(s) of an ended login", len(streams))
        return len(streams)

    def count(self, family_id: str | None = None) -> int:
        with self._lock:
            if family_id is not None:
                return len(self._open.get(family_id, ()))
            return sum(len(streams) for streams in self._open.values())


def relay(stream: Stream, client_read: Callable[[int], bytes], client: socket.socket, backend: socket.socket) -> None:
    """Copy bytes both ways until either side ends or the stream is closed; then close both."""

    def pump(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        try:
            while not stream.closed.is_set():
                data = read(CHUNK)
                if not data:
                    break
                write(data)
        except OSError:
            pass
        finally:
            stream.close()

    upward = threading.Thread(target=pump, args=(client_read, backend.sendall), daemon=True)
    upward.start()
    pump(backend.recv, client.sendall)
    upward.join(timeout=5)


def read_head(sock: socket.socket, limit: int = MAX_RESPONSE_HEAD) -> tuple[bytes, bytes]:
    """An HTTP response's head (through the blank line) and whatever followed it in the same reads."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(CHUNK)
        if not chunk:
            raise ConnectionError("the backend closed the connection before it answered")
        data += chunk
        if len(data) > limit:
            raise ConnectionError("the backend's answer has an overlong head")
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]
