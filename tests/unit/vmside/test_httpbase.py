"""The VM's HTTP handlers' common ground: a request is logged without its query string (where a
sign-in ticket travels), and a reply carries the common headers besides its own."""

from __future__ import annotations

import io
import logging

import pytest

from vmgen.vmside.httpbase import BaseHandler, Reply, same_origin


class Recorded(BaseHandler):
    page_headers = (("Content-Security-Policy", "default-src 'none'"), ("Referrer-Policy", "no-referrer"))

    def __init__(self, path: str, command: str = "GET") -> None:  # no socket: the parts a reply uses
        self.path, self.command = path, command
        self.request_version, self.requestline = "HTTP/1.1", f"{command} {path} HTTP/1.1"
        self.written = io.BytesIO()
        self.wfile = self.written
        self._headers_buffer: list[bytes] = []


def test_a_request_is_logged_without_its_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vmgen.vmside.httpbase")
    handler = Recorded("/.vmgen/session?ticket=secret-ticket")
    handler.log_request(303)
    handler.log_error("bad request %r", handler.requestline)
    assert "/.vmgen/session" in caplog.text and "secret-ticket" not in caplog.text


def test_a_reply_carries_the_common_headers_and_its_own_win() -> None:
    handler = Recorded("/")
    handler.send(Reply.html(200, b"<p>hi</p>", (("Content-Security-Policy", "sandbox"),)))
    written = handler.written.getvalue().decode()
    assert written.split("\r\n", 1)[0].endswith(" 200 OK")
    for line in (
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Referrer-Policy: no-referrer",
        "Content-Security-Policy: sandbox",
        "Content-Length: 9",
    ):
        assert line in written
    assert "default-src 'none'" not in written and written.endswith("<p>hi</p>")


@pytest.mark.parametrize(
    ("origin", "ok"),
    [(None, True), ("https://app.example.com", True), ("https://evil.example", False), ("null", False)],
)
def test_same_origin(origin: str | None, ok: bool) -> None:
    headers = {"Host": "app.example.com"} | ({"Origin": origin} if origin else {})
    assert same_origin(headers) is ok
