"""Which boot this is, and the clock that runs through it: what makes a time taken on the VM
comparable later in the same boot, whatever the wall clock did in between."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..contract.documents import Clocks

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _pid1_started() -> str:
    """PID 1's start time, in clock ticks after the kernel's boot (field 22 of /proc/1/stat)."""
    return Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()[19]


def boot_id() -> str:
    """The kernel's boot id plus PID 1's start time: a container restarted on the same kernel
    (a simulated VM) is a new boot too, and its old countdown must not carry over."""
    return f"{BOOT_ID.read_text().strip()}:{_pid1_started()}"


def boot_began() -> float:
    """When this boot began on the wall clock: PID 1's start (a simulated VM's container start
    too), from its start time on the clock the kernel counts it in (CLOCK_BOOTTIME)."""
    ago = time.clock_gettime(time.CLOCK_BOOTTIME) - int(_pid1_started()) / os.sysconf("SC_CLK_TCK")
    return time.time() - ago


def clocks() -> Clocks:
    """Now, on the wall clock and on CLOCK_BOOTTIME (which counts a suspend, unlike
    CLOCK_MONOTONIC, and is never stepped)."""
    return Clocks(wall=time.time(), boot=boot_id(), boottime=time.clock_gettime(time.CLOCK_BOOTTIME))


def with_age(state: dict[str, Any]) -> dict[str, Any]:
    """The watchdog's state (as read from its file) with its age as this VM measures it, on
    CLOCK_BOOTTIME: a reader counts down from the seconds left the VM measured, never from its
    own clock or from the VM's wall clock, which may have stepped since."""
    written = state.get("updated_boottime")
    if state.get("boot_id") == boot_id() and isinstance(written, (int, float)) and written > 0:
        state["age_seconds"] = round(max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - written), 1)
    return state
