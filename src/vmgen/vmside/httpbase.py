"""What the VM's HTTP handlers share (the page, the web login): a reply as a value, the one
way it is written, logging that never writes a query string, and the same-origin check.

Routes are module-level functions that return a `Reply`, so that a test calls them without a
socket; the handler class only reads the request and writes what the route returned.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import urlsplit

Headers = tuple[tuple[str, str], ...]
QUERY = re.compile(r"\?[^\s\"']*")


@dataclass(frozen=True)
class Reply:
    """One answer: its status, body and the headers of its own (the common ones are added when
    it is sent)."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Headers = ()

    @classmethod
    def json(cls, status: int, value: Any) -> Reply:
        return cls(status, json.dumps(value).encode(), "application/json")

    @classmethod
    def text(cls, status: int, text: str) -> Reply:
        return cls(status, (text + "\n").encode())

    @classmethod
    def html(cls, status: int, body: bytes, headers: Headers = ()) -> Reply:
        return cls(status, body, "text/html; charset=utf-8", headers)

    @classmethod
    def redirect(cls, status: int, location: str, headers: Headers = ()) -> Reply:
        return cls(status, b"", "text/plain", (("Location", location), *headers))


def same_origin(headers: Mapping[str, str] | Any) -> bool:
    """A browser's request from this hostname's own pages: no Origin (a same-origin GET), or an
    Origin whose host is the request's Host."""
    origin = headers.get("Origin")
    return not origin or urlsplit(origin).netloc == headers.get("Host")


class BaseHandler(BaseHTTPRequestHandler):
    """Writes a `Reply` with the headers every answer carries, and logs each request by its
    method, path and status: never the query string (a sign-in ticket travels in one) nor a
    header (cookies)."""

    log: ClassVar[logging.Logger] = logging.getLogger(__name__)
    # The page's own headers besides the common ones (Content-Security-Policy and the like).
    page_headers: ClassVar[Headers] = ()

    def send(self, reply: Reply, extra: Headers = ()) -> None:
        self.send_response(reply.status)
        for name, value in (*reply.headers, *extra):
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in self.page_headers:
            if not any(name == own for own, _ in (*reply.headers, *extra)):
                self.send_header(name, value)
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    def read_body(self, limit: int) -> bytes | None:
        """The request's body, read before any answer (left unread, it would be taken for the
        next request on a kept-alive connection); None when it is longer than `limit` or chunked,
        and the connection then ends with the answer."""
        declared = self.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isdigit() else limit + 1
        if length > limit or "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(getattr(self, "path", "") or "").path
        self.log.debug("%s %s %s %s", self.address_string(), getattr(self, "command", "-"), path, code)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        # http.server's own errors (a malformed request line) quote the request line: its query
        # goes.
        self.log.debug("%s %s", self.address_string(), QUERY.sub("?-", format % args))

    def address_string(self) -> str:  # a unix socket has no peer address
        return "-"


__all__ = ["BaseHandler", "Headers", "Reply", "same_origin"]
