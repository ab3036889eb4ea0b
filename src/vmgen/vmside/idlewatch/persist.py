"""The watchdog's memory across service restarts: the policy history, keyed by boot id.

Monotonic times are only comparable within one boot, so a state file from an earlier boot is
ignored and the countdown starts afresh.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ..jsonfile import write_json
from .model import History, Verdict

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """The kernel's boot id plus PID 1's start time: a container restarted on the same kernel
    (the docker provider) is a new boot too, and its old countdown must not carry over."""
    pid1_start = Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()[19]
    return f"{BOOT_ID.read_text().strip()}:{pid1_start}"


def load_history(path: Path, current_boot: str, now: float) -> History:
    try:
        data = json.loads(path.read_text())
        if data.get("boot_id") == current_boot:
            return History(**data["history"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        pass
    return History(boot_started=now, last_activity=now, last_activity_reason="watchdog started")


def save(path: Path, current_boot: str, verdict: Verdict, extra: dict[str, object]) -> None:
    """Write atomically; world-readable, since it holds no secret and `vmgen status` reads it."""
    mono, wall = time.monotonic(), time.time()

    def to_wall(t: float) -> float:
        return round(wall - (mono - t), 1)

    record = {
        "boot_id": current_boot,
        "history": asdict(verdict.history),
        "verdict": {
            "busy": verdict.busy,
            "reasons": list(verdict.reasons),
            "idle_since": to_wall(verdict.idle_since),
            "idle_for_seconds": round(max(0.0, verdict.at - verdict.idle_since), 1),
            "next_action": verdict.next_action.value,
            "action_at": to_wall(verdict.action_at),
            "deadline": to_wall(verdict.deadline),
        },
        "updated_at": round(wall, 1),
        **extra,
    }
    write_json(path, record)
