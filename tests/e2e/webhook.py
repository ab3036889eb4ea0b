"""A webhook receiver for the watchdog's messages (the optional idle_webhook_url), reachable from
simulated VMs as host.docker.internal."""

from __future__ import annotations

import http.server
import json
import threading


class Webhook:
    """Receives the watchdog's warnings (the optional webhook/ntfy URL)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.arrived:
                    outer.messages.append(body)
                    outer.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://host.docker.internal:{self.server.server_address[1]}/warn"

    def wait_for(self, text: str, timeout: float) -> dict:
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(text in m["text"] for m in self.messages), timeout), (
                f"no warning containing {text!r} within {timeout}s: {self.messages}"
            )
            return next(m for m in self.messages if text in m["text"])
