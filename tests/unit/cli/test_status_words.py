"""`vmgen status` says what the watchdog will do and when, in words: the configured action, not
"next action none"."""

from __future__ import annotations

import pytest

from vmgen.cli.watchdog import in_words, what_happens
from vmgen.contract.documents import AgentRecord, VerdictRecord, WatchdogState

NOW = 1_000_000.0


def state(action: str, next_action: str, left: float, dry_run: bool = False) -> WatchdogState:
    verdict = VerdictRecord(busy=False, reasons=(), idle_since=NOW - 120, idle_for_seconds=120,
                            next_action=next_action, action_at=NOW + left, deadline=NOW + left, action=action)
    return WatchdogState(boot_id="b", history={}, verdict=verdict, agent=AgentRecord("waiting"), updated_at=NOW,
                         dry_run=dry_run)


@pytest.mark.parametrize(
    "action, next_action, left, expected",
    [
        ("backup-then-delete", "none", 28 * 60, "backs up and deletes itself in 28 min unless something happens"),
        ("poweroff", "warn", 5 * 60, "powers off in 5 min unless something happens (warned)"),
        ("delete", "delete", 0, "deletes itself now"),
    ],
)
def test_the_action_and_when(action: str, next_action: str, left: float, expected: str) -> None:
    assert what_happens(state(action, next_action, left), NOW) == expected


def test_a_dry_run_says_it_only_logs() -> None:
    assert what_happens(state("poweroff", "none", 600, dry_run=True), NOW).endswith("(dry run: it only logs)")


def test_durations_in_words() -> None:
    assert [in_words(s) for s in (40, 28 * 60, 65 * 60, 120 * 60)] == ["40 s", "28 min", "1 h 5 min", "2 h"]
