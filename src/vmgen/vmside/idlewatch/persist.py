"""The watchdog's memory across service restarts: the policy history, keyed by boot id, in the
state file that `vmgen status` and the workspace page read (the contract's WatchdogState).

Monotonic times are only comparable within one boot, so a state file from an earlier boot is
ignored and the countdown starts afresh.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...contract.documents import ActionRecord, AgentRecord, BudgetRecord, VerdictRecord, WatchdogState
from ...errors import DocumentError
from ..jsonfile import write_text
from .model import Action, History, Verdict


def load_history(path: Path, current_boot: str, now: float) -> History:
    try:
        state = WatchdogState.loads(path.read_bytes())
        if state.boot_id == current_boot:
            return History(**state.history)
    except (OSError, DocumentError, TypeError):
        pass
    return History(boot_started=now, last_activity=now, last_activity_reason="watchdog started")


def state_of(
    current_boot: str,
    verdict: Verdict,
    action: Action,
    agent: AgentRecord,
    last_seen: dict[str, float],
    dry_run: bool,
    failures: int,
    config: dict[str, Any],
    acting: ActionRecord | None = None,
    budget: BudgetRecord | None = None,
) -> WatchdogState:
    """The state document for a verdict. Times are shown as wall-clock times, but what a reader
    compares (the time left, the state's age) is measured on the VM's clocks that never step."""
    mono, wall, boottime = time.monotonic(), time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)

    def to_wall(t: float) -> float:
        return round(wall - (mono - t), 1)

    lifetime = config.get("max_lifetime")
    lifetime_hours = round(float(lifetime) / 3600, 3) if lifetime else 0.0

    return WatchdogState(
        boot_id=current_boot,
        history=asdict(verdict.history),
        verdict=VerdictRecord(
            busy=verdict.busy,
            reasons=verdict.reasons,
            idle_since=to_wall(verdict.idle_since),
            idle_for_seconds=round(max(0.0, verdict.at - verdict.idle_since), 1),
            next_action=verdict.next_action.value,
            action_at=to_wall(verdict.action_at),
            deadline=to_wall(verdict.deadline),
            action=action.value,
            condition=verdict.condition.value,
            left_seconds=round(max(0.0, verdict.deadline - verdict.at), 1),
            held_for_seconds=round(max(0.0, (verdict.history.held_until or 0.0) - verdict.at), 1),
            by_lifetime=verdict.by_lifetime,
            held_by=verdict.held_by,
            lifetime_hours=lifetime_hours,
            lifetime_left_seconds=round(max(0.0, verdict.lifetime_end - verdict.at), 1)
            if verdict.lifetime_end is not None
            else 0.0,
        ),
        agent=agent,
        updated_at=round(wall, 1),
        last_seen=dict(last_seen),
        dry_run=dry_run,
        failures=failures,
        config=config,
        updated_boottime=round(boottime, 3),
        acting=acting,
        budget=budget,
    )


def save(path: Path, state: WatchdogState) -> None:
    """Write atomically; world-readable, since it holds no secret and `vmgen status` reads it."""
    write_text(path, state.dumps())
