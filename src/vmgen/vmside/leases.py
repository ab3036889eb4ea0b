"""Keepalive leases: `vmgen keepalive --for 3h` holds off the watchdog until the lease expires.

Leases live in the agent user's home, written by the agent user (over SSH from the laptop, or on
the VM, or by the workspace page). The watchdog reads them as root, clamped to the longest lease
given here; the hard maximum lifetime, if set, still applies: no lease extends it.

A lease records its end on the wall clock and on this boot's CLOCK_BOOTTIME: within the boot,
a step of the wall clock changes nothing about how long it holds.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..contract.documents import LEASE_MAX_SECONDS, Clocks, Lease, dump_leases, parse_leases, with_lease
from ..contract.names import VM
from ..errors import UsageError
from .boot import clocks
from .jsonfile import write_text

DEFAULT_PATH = VM.leases
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """`3h`, `90m`, `1h30m`, `45s`, `2d` -> seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise UsageError(f"invalid duration {text!r}: use e.g. 3h, 90m, 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0 or seconds > LEASE_MAX_SECONDS:
        raise UsageError(f"duration {text!r} must be between 1s and {LEASE_MAX_SECONDS // 86400}d")
    return seconds


def read(path: Path = DEFAULT_PATH, now: Clocks | None = None) -> tuple[Lease, ...]:
    """The live leases, each with `until` as what remains of it from now (on the wall clock)."""
    now = clocks() if now is None else now
    try:
        return parse_leases(path.read_bytes()[: 64 << 10], now)
    except OSError:
        return ()


def add(seconds: float, reason: str, path: Path = DEFAULT_PATH, now: Clocks | None = None) -> Lease:
    now = clocks() if now is None else now
    leases = with_lease(read(path, now), seconds, reason, now)
    write_text(path, dump_leases(leases), mode=None)
    return leases[-1]
