"""Keepalive leases: `vmgen keepalive --for 3h` holds off the watchdog until the lease expires.

Leases live in the agent user's home, written by the agent user (over SSH from the laptop, or on
the VM). The hard maximum lifetime, if set, still applies: no lease extends it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError
from .jsonfile import write_json
from .paths import VmPaths

DEFAULT_PATH = VmPaths().leases
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class LeaseRecord:
    until: float  # wall-clock epoch seconds
    reason: str


def parse_duration(text: str) -> float:
    """`3h`, `90m`, `1h30m`, `45s`, `2d` -> seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise UsageError(f"invalid duration {text!r}: use e.g. 3h, 90m, 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0 or seconds > 30 * 86400:
        raise UsageError(f"duration {text!r} must be between 1s and 30d")
    return seconds


def read(path: Path = DEFAULT_PATH, now: float | None = None) -> list[LeaseRecord]:
    now = time.time() if now is None else now
    try:
        items = json.loads(path.read_text())
        leases = [LeaseRecord(float(i["until"]), str(i.get("reason", ""))) for i in items]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return []
    return [lease for lease in leases if lease.until > now]


def add(seconds: float, reason: str, path: Path = DEFAULT_PATH, now: float | None = None) -> LeaseRecord:
    now = time.time() if now is None else now
    lease = LeaseRecord(until=now + seconds, reason=reason or "keepalive")
    leases = [*read(path, now), lease]
    write_json(path, [asdict(item) for item in leases], mode=None)
    return lease
