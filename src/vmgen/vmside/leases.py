"""Keepalive leases: `vmgen keepalive --for 3h` holds off the watchdog until the lease expires.

Leases live in the agent user's home, written by the agent user (over SSH from the laptop, or on
the VM, or by the workspace page). The watchdog reads them as root, clamped to the longest lease
given here; the hard maximum lifetime, if set, still applies: no lease extends it.

A lease records its end on the wall clock and on this boot's CLOCK_BOOTTIME: within the boot,
a step of the wall clock changes nothing about how long it holds.
"""

from __future__ import annotations

from pathlib import Path

from ..contract.documents import Clocks, Lease, dump_leases, parse_leases, with_lease
from ..contract.names import VM
from .boot import clocks
from .jsonfile import write_text

DEFAULT_PATH = VM.leases


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
