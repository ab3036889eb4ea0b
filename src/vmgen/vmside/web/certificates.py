"""Whether each hostname has its certificate, and if not why, from Caddy's certificate log.

Caddy writes its certificate events (and its ACME client's) to a log of their own
(`VmPaths.web_tls_log`, JSON lines, no request in them). Each hostname is `issued` once Caddy says
it obtained a certificate, `failed` while its last attempt failed (with the reason in one line:
the ACME server's rate limit, its refusal, or its HTTP-01 check not reaching this VM, which is
what DNS pointing elsewhere looks like), and `pending` until either. Caddy retries failures on
its own; so does this report, as it reads the log again.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

from ...contract.certificates import CertificateReport, HostCertificate
from ...contract.documents import WebLinks, clean_text
from ...contract.names import VM, VmPaths

TAIL_BYTES = 512 << 10
LINE_LIMIT = 300
_PROBLEM = re.compile(r"urn:ietf:params:acme:error:(\w+)(?: - (.*))?")
_DIALED = re.compile(r"dial tcp (\[[0-9a-fA-F:]+\]|[0-9.]+):\d+")
_CHECK_FAILED = frozenset({"connection", "dns", "unauthorized", "incorrectResponse", "tls", "caa"})


def hostnames(links: WebLinks) -> list[str]:
    """Every hostname the workspace serves, from its links (world-readable, root's)."""
    urls = [links.url, links.code_url, links.desktop_url, *links.previews.values()]
    return [url.split("//", 1)[1].split("/", 1)[0] for url in urls if url.startswith("https://")]


def report(paths: VmPaths = VM) -> CertificateReport:
    try:
        with open(paths.web_links, "rb") as f:
            from ...contract import codec

            links = codec.loads(WebLinks, f.read(1 << 20), str(paths.web_links), strict=False)
    except (OSError, ValueError):
        return CertificateReport()
    return CertificateReport(tuple(statuses(read_events(paths), hostnames(links))))


def read_events(paths: VmPaths = VM, limit: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The last events of Caddy's certificate log (a cut first line is dropped)."""
    try:
        with open(paths.web_tls_log, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            f.seek(max(0, end - limit))
            data = f.read(limit)
    except OSError:
        return []
    lines = data.split(b"\n")[1 if end > limit else 0 :]
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def statuses(events: Iterable[dict[str, Any]], names: list[str]) -> list[HostCertificate]:
    state: dict[str, HostCertificate] = {name: HostCertificate(name, "pending") for name in names}
    check_failures: dict[str, dict[str, Any]] = {}  # the last failed challenge per name
    for event in events:
        name, message, at = event.get("identifier"), event.get("msg"), event.get("ts")
        if not isinstance(name, str) or name not in state:
            continue
        at = float(at) if isinstance(at, (int, float)) else 0.0
        if message == "certificate obtained successfully":
            state[name] = HostCertificate(name, "issued", at=at)
            check_failures.pop(name, None)
        elif message == "challenge failed":
            check_failures[name] = event
        elif message == "could not get certificate from issuer" and state[name].state != "issued":
            error = event.get("error")
            state[name] = HostCertificate(name, "failed", problem(str(error), check_failures.get(name)), at)
    return [state[name] for name in names]


def problem(error: str, check: dict[str, Any] | None = None) -> str:
    """Why no certificate, in one line a user can act on."""
    found = _PROBLEM.search(error)
    kind, detail = (found.group(1), found.group(2) or "") if found else ("", "")
    if not kind and check is not None:  # "solving challenges: ...": the challenge's own problem says why
        kind = str(check.get("problem_type", "")).rsplit(":", 1)[-1]
        detail = str(check.get("error", ""))
    if kind == "rateLimited":
        line = f"the ACME server's rate limit: {detail} (Caddy tries again later)"
    elif kind == "rejectedIdentifier":
        line = f"the ACME server refuses to issue for this name: {detail}"
    elif kind in _CHECK_FAILED:
        dialed = _DIALED.search(detail)
        went = f" (its check went to {dialed.group(1)})" if dialed else ""
        line = (
            f"the ACME server's HTTP-01 check did not reach this VM{went}: point the name's DNS record at this "
            f"VM and keep port 80 open; Caddy tries again ({kind}: {detail})"
        )
    elif any(word in error for word in ("dial tcp", "no such host", "connection refused", "timeout")):
        line = f"the ACME server does not answer: {error}"
    else:
        line = error
    line = " ".join(clean_text(line, 4 * LINE_LIMIT).split())
    return line if len(line) <= LINE_LIMIT else line[: LINE_LIMIT - 1] + "…"
