"""`vmgen status` says what the watchdog will do and when, in words: the configured action, not
"next action none"; counted from the seconds left as the VM measured them, never from a
comparison of the VM's wall clock with the laptop's."""

from __future__ import annotations

import time

import pytest

from vmgen.contract.documents import AgentRecord, VerdictRecord, WatchdogState
from vmgen.contract.verdict_words import in_words, verdict_word, what_happens
from vmgen.laptop.cli.watchdog import format_status

NOW = 1_000_000.0


def state(
    action: str,
    next_action: str,
    left: float,
    dry_run: bool = False,
    condition: str = "idle",
    vm_clock_ahead: float = 0.0,
    age: float = 0.0,
) -> WatchdogState:
    vm_now = NOW + vm_clock_ahead
    verdict = VerdictRecord(
        busy=condition == "working",
        reasons=(),
        idle_since=vm_now - 120,
        idle_for_seconds=120,
        next_action=next_action,
        action_at=vm_now + left,
        deadline=vm_now + left,
        action=action,
        condition=condition,
        left_seconds=left,
    )
    return WatchdogState(
        boot_id="b",
        history={},
        verdict=verdict,
        agent=AgentRecord("waiting"),
        updated_at=vm_now,
        dry_run=dry_run,
        config={"idle_timeout": 1800},
        age_seconds=age,
        last_seen={"human": vm_now - 300},
    )


@pytest.mark.parametrize(
    "action, next_action, left, expected",
    [
        ("backup-then-delete", "none", 28 * 60, "backs up and deletes itself in 28 min unless something happens"),
        ("poweroff", "warn", 5 * 60, "powers off in 5 min unless something happens (warned)"),
        ("delete", "delete", 0, "deletes itself now"),
    ],
)
def test_the_action_and_when(action: str, next_action: str, left: float, expected: str) -> None:
    assert what_happens(state(action, next_action, left)) == expected


@pytest.mark.parametrize("vm_clock_ahead", [0.0, 2 * 3600.0, -2 * 3600.0])
def test_a_vm_clock_off_by_hours_changes_nothing(vm_clock_ahead: float) -> None:
    said = state("poweroff", "none", 28 * 60, vm_clock_ahead=vm_clock_ahead)
    assert what_happens(said) == "powers off in 28 min unless something happens"
    table = format_status("app", said)
    rows = {str(row): str(cell) for row, cell in zip(table.columns[0]._cells, table.columns[1]._cells, strict=True)}
    assert rows["last human"] == "5m ago"  # VM time against VM time


def test_the_time_left_counts_the_states_age_and_the_time_since_it_was_read() -> None:
    assert what_happens(state("poweroff", "none", 28 * 60, age=120)) == "powers off in 26 min unless something happens"
    assert (
        what_happens(state("poweroff", "none", 28 * 60), elapsed=60) == "powers off in 27 min unless something happens"
    )


def test_working_has_no_countdown_but_says_the_idle_timeout() -> None:
    said = state("poweroff", "none", 1800, condition="working")
    assert verdict_word(said) == "working" and what_happens(said) == "powers off once idle for 30 min"


def test_a_vm_from_before_conditions_is_read_by_busy_and_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    old = state("poweroff", "none", 600, condition="")
    monkeypatch.setattr(time, "time", lambda: NOW)
    assert verdict_word(old) == "idle" and what_happens(old) == "powers off in 10 min unless something happens"


def test_a_dry_run_says_it_only_logs() -> None:
    assert what_happens(state("poweroff", "none", 600, dry_run=True)).endswith("(dry run: it only logs)")


def test_durations_in_words() -> None:
    assert [in_words(s) for s in (40, 28 * 60, 65 * 60, 120 * 60)] == ["40 s", "28 min", "1 h 5 min", "2 h"]


def test_the_table_never_reads_the_laptops_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    said = state("poweroff", "none", 28 * 60)
    first = str([str(c) for c in format_status("app", said).columns[1]._cells])
    monkeypatch.setattr(time, "time", lambda: NOW + 10 * 3600)  # the laptop's clock is 10 h off
    assert str([str(c) for c in format_status("app", said).columns[1]._cells]) == first


def test_what_the_vm_says_is_shown_as_text_not_markup() -> None:
    from dataclasses import replace

    from rich.console import Console

    said = state("poweroff", "none", 600, condition="kept-alive")
    said = replace(
        said,
        verdict=replace(
            said.verdict,
            held_for_seconds=300,
            held_by="[red]review[/red]",
            reasons=("keepalive for 300s more ([red]review[/red])",),
        ),
        agent=AgentRecord("working", "turn open; of 2 sessions: 1 working, 1 waiting [x]"),
    )
    console = Console(width=200, record=True)
    console.print(format_status("app", said))
    text = console.export_text()
    assert "kept alive for 5 min more ([red]review[/red])" in text and "1 waiting [x]" in text, text
