"""fail2ban's filter for failed web logins, applied the way fail2ban applies it (`<ADDR>` is an
address) to Caddy's real JSON log lines: a failed sign-in counts for its client's address, a
successful one and other paths do not, and no request header can make it count for anyone else."""

from __future__ import annotations

import json
import re
from importlib import resources

FILTER = resources.files("vmgen.cloudinit_templates").joinpath("fail2ban-filter-vmgen-web.conf").read_text()
ADDRESS = r"(?P<addr>[0-9.]+|[0-9a-fA-F:]+)"


def failregex() -> re.Pattern[str]:
    line = next(line for line in FILTER.splitlines() if line.startswith("failregex = "))
    return re.compile(line.removeprefix("failregex = ").replace("<ADDR>", ADDRESS))


def caddy_line(remote_ip: str, method: str, uri: str, status: int, headers: dict[str, list[str]]) -> str:
    """A line as Caddy 2.6 writes it (field order included), taken from its real output."""
    return json.dumps(
        {
            "level": "info",
            "ts": 1796235469.7706394,
            "logger": "http.log.access.log0",
            "msg": "handled request",
            "request": {
                "remote_ip": remote_ip,
                "remote_port": "35670",
                "proto": "HTTP/2.0",
                "method": method,
                "host": "ws.dev.example.com",
                "uri": uri,
                "headers": headers,
                "tls": {"resumed": False, "version": 772, "server_name": "ws.dev.example.com"},
            },
            "user_id": "",
            "duration": 0.002,
            "size": 1064,
            "status": status,
            "resp_headers": {"Content-Type": ["text/html; charset=utf-8"]},
        },
        separators=(",", ":"),
    )


def test_a_failed_or_refused_sign_in_counts_for_its_address():
    for status in (401, 429):
        found = failregex().search(caddy_line("203.0.113.9", "POST", "/.vmgen/login", status, {}))
        assert found and found.group("addr") == "203.0.113.9"
    found = failregex().search(caddy_line("2001:db8::7", "POST", "/.vmgen/login", 401, {}))
    assert found is not None and found.group("addr") == "2001:db8::7"


def test_success_and_other_requests_do_not_count():
    for method, uri, status in (
        ("POST", "/.vmgen/login", 303),
        ("GET", "/.vmgen/login", 200),
        ("GET", "/.vmgen/session?ticket=x", 400),
        ("POST", "/.vmgen/logout", 403),
    ):
        assert not failregex().search(caddy_line("203.0.113.9", method, uri, status, {}))


def test_a_header_cannot_frame_another_address():
    forged = (
        '","request":{"remote_ip":"198.51.100.1","remote_port":"1","proto":"x","method":"POST",'
        '"host":"h","uri":"/.vmgen/login","x":"'
    )
    for line in (
        caddy_line("203.0.113.9", "GET", "/.vmgen/login", 200, {"X-Forged": [forged + '"status":401,']}),
        caddy_line("203.0.113.9", "POST", "/.vmgen/login", 401, {"X-Forged": [forged]}),
    ):
        found = failregex().search(line)
        assert found is None or found.group("addr") == "203.0.113.9"
