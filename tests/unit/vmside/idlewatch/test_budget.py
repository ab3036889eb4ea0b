"""A running workspace's share of the month's budget, counted by root: the pure count (boots,
the month's end, clamped clocks), the watchdog saying the crossing once and, with `stop`,
starting the act unit whatever the agent does, and the act unit saying why."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vmgen.contract import codec
from vmgen.contract.documents import BudgetRecord, WatchdogState, WatchSettings
from vmgen.contract.enums import BudgetAction, IdleAction
from vmgen.contract.names import VmPaths
from vmgen.contract.verdict_words import budget_words
from vmgen.errors import DocumentError
from vmgen.vmside.idlewatch import actions, budget, service
from vmgen.vmside.idlewatch.actions import Act, Machine
from vmgen.vmside.idlewatch.budget import Allowance, Ledger, count, crossed, spent, stops_now
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState, Humans, Lease, Snapshot
from vmgen.vmside.notify.policy import budget_notice

from .test_service import Clock, ScriptedCollector

MONTH_END = 2_000_000_000.0  # wall clock
BEFORE = MONTH_END - 86400
STOP = Allowance(20.0, 1.0, 0.5, "EUR", MONTH_END, BudgetAction.STOP)  # 1 EUR at 0.5 EUR/h: 2 h
WARN = replace(STOP, action=BudgetAction.WARN)


def test_within_a_boot_the_uptime_since_the_last_look_counts() -> None:
    ledger = count(None, STOP, "boot-1", 600, BEFORE)  # the uptime before the first look counts too
    assert ledger.spent_seconds == 600
    ledger = count(ledger, STOP, "boot-1", 3600, BEFORE)
    assert ledger.spent_seconds == 3600 and spent(ledger, STOP) == pytest.approx(0.5)
    assert not crossed(ledger, STOP, BEFORE)
    ledger = count(ledger, STOP, "boot-1", 7200, BEFORE)
    assert crossed(ledger, STOP, BEFORE) and stops_now(ledger, STOP, BEFORE)
    assert crossed(ledger, WARN, BEFORE) and not stops_now(ledger, WARN, BEFORE)  # warn never stops


def test_a_reboot_does_not_reset_the_count() -> None:
    ledger = count(None, STOP, "boot-1", 5400, BEFORE)
    ledger = count(ledger, STOP, "boot-2", 1800, BEFORE)  # a new boot: its whole uptime is added
    assert ledger.spent_seconds == 7200 and crossed(ledger, STOP, BEFORE)


def test_clocks_read_backwards_add_nothing() -> None:
    ledger = count(None, STOP, "boot-1", 3600, BEFORE)
    assert count(ledger, STOP, "boot-1", 100, BEFORE).spent_seconds == 3600  # never less
    assert count(None, STOP, "boot-1", -50, BEFORE).spent_seconds == 0


def test_the_allowance_counts_within_its_month_only() -> None:
    ledger = count(None, STOP, "boot-1", 7000, BEFORE)
    after = count(ledger, STOP, "boot-1", 9000, MONTH_END + 1)  # the month is over: nothing added
    assert after.spent_seconds == 7000
    assert not crossed(count(ledger, STOP, "boot-1", 99_000, MONTH_END), STOP, MONTH_END)
    # A new month's allowance (a later launch or restore) starts from nothing.
    next_month = replace(STOP, month_end=MONTH_END + 31 * 86400)
    fresh = count(after, next_month, "boot-1", 9100, MONTH_END + 10)
    assert fresh.month_end == next_month.month_end and fresh.spent_seconds == 9100 and not fresh.warned


def test_no_budget_without_a_budget_or_a_price() -> None:
    assert budget.allowance_of(WatchSettings()) is None
    assert budget.allowance_of(WatchSettings(budget_month=10, budget_month_end=MONTH_END)) is None  # free: docker
    held = WatchSettings(
        budget_month=10,
        budget_allowance=4,
        budget_price_hourly=0.1,
        budget_currency="USD",
        budget_month_end=MONTH_END,
        budget_action=BudgetAction.STOP,
    )
    assert budget.allowance_of(held) == Allowance(10, 4, 0.1, "USD", MONTH_END, BudgetAction.STOP)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("budget_month = -1\n", "budget_month (the laptop's budget_month) is -1: it takes a number from 0 to 100000"),
        ("budget_allowance = -5.0\n", "budget_allowance is -5.0: it takes a finite number, 0 or more"),
        ("budget_price_hourly = nan\n", "budget_price_hourly: expected a finite number"),  # the codec's check
        ('budget_currency = "€"\n', "budget_currency is '€': it takes a currency code (EUR, USD)"),
        ('budget_action = "pause"\n', "budget_action"),
    ],
)
def test_the_vm_refuses_a_settings_file_with_a_bad_budget_value(text: str, said: str) -> None:
    with pytest.raises(DocumentError) as refused:
        WatchSettings.from_toml(text)
    assert str(refused.value).startswith("idlewatch.toml") and said in str(refused.value)
    assert "\n" not in str(refused.value)


# --- the watchdog ------------------------------------------------------------------------------


class Uptime:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture
def calls(monkeypatch):
    recorded: dict[str, list] = {"warn": [], "act": []}
    monkeypatch.setattr(service, "warn", lambda s, text, paths: recorded["warn"].append(text))
    monkeypatch.setattr(service, "start_action", lambda: recorded["act"].append("started"))
    return recorded


def watched(tmp_path: Path, action: BudgetAction, agent: AgentState = AgentState.WORKING, collector: Any = None):
    settings = WatchSettings(
        name="app",
        idle_minutes=30,
        action=IdleAction.POWEROFF,
        max_lifetime_hours=0,  # the reason must not depend on how long this machine has been up
        budget_month=20,
        budget_allowance=1.0,
        budget_price_hourly=0.5,
        budget_currency="EUR",
        budget_month_end=4_000_000_000.0,  # far ahead of the test's wall clock
        budget_action=action,
    )
    clock = Clock()
    paths = VmPaths(state=tmp_path / "lib", run=tmp_path / "run", etc=tmp_path / "etc")
    looks: Any = collector or ScriptedCollector(clock, agent)
    watchdog = service.Watchdog(settings, looks, clock=clock, paths=paths, background=False)
    uptime = Uptime()
    watchdog.uptime = uptime
    return watchdog, uptime, paths, settings


def state_of(paths: VmPaths) -> WatchdogState:
    return WatchdogState.loads(paths.watchdog_state.read_bytes())


def budget_of(paths: VmPaths) -> BudgetRecord:
    record = state_of(paths).budget
    assert record is not None, "the state carries the budget"
    return record


def test_warn_says_the_crossing_once_and_the_workspace_goes_on(tmp_path, calls):
    watchdog, uptime, paths, _ = watched(tmp_path, BudgetAction.WARN)
    uptime.seconds = 3600
    watchdog.tick()
    assert calls["warn"] == []
    assert budget_of(paths).spent == pytest.approx(0.5) and not budget_of(paths).crossed
    for seconds in (7200, 7300, 9000):
        uptime.seconds = seconds
        watchdog.tick()
    assert calls["act"] == []  # warn: the working agent goes on
    assert len(calls["warn"]) == 1
    assert (
        "spent its share of budget_month: 1.00 of 1.00 EUR; it keeps running (budget_action = warn)"
        in (calls["warn"][0])
    )
    record = budget_of(paths)
    assert record.crossed and record.action == "warn" and record.currency == "EUR"
    assert budget_words(state_of(paths)).startswith("1.25 of 1.00 EUR this month (0.5000 EUR/h; budget_month 20.00)")
    assert "SPENT: warned" in budget_words(state_of(paths))
    # The phone hears root's numbers in vmgen's words, once a month (its dedupe scope and state).
    notice = budget_notice(record)
    assert notice.scope == "watchdog:budget" and notice.state == f"{record.month_end:.0f}"
    assert notice.text == "spent 1.25 of its 1.00 EUR share of budget_month; it keeps running (budget_action = warn)"


def test_stop_starts_the_act_unit_while_the_agent_works(tmp_path, calls):
    """The crossing is not an idle verdict: a busy agent (or a held lease) does not hold it off."""
    watchdog, uptime, paths, settings = watched(tmp_path, BudgetAction.STOP, agent=AgentState.WORKING)
    uptime.seconds = 7199
    watchdog.tick()
    assert calls["act"] == []
    uptime.seconds = 7201
    verdict = watchdog.tick()
    assert verdict.busy  # the agent works ...
    assert calls["act"] == ["started"]  # ... and the act unit is started anyway
    assert "it stops now (budget_action = stop)" in calls["warn"][0]
    # The act unit (a process of its own) reads root's ledger for its reason.
    assert actions.reason_now(settings, paths) == "budget"


def test_stop_is_started_even_when_the_agent_breaks_every_look(tmp_path, calls):
    class Broken:
        def snapshot(self):
            raise OSError(28, "No space left on device")  # a disk the agent filled, a hostile tree

    watchdog, uptime, _, _ = watched(tmp_path, BudgetAction.STOP, collector=Broken())
    uptime.seconds = 8000
    with pytest.raises(OSError):
        watchdog.tick()
    assert calls["act"] == ["started"]


def test_a_watchdog_restart_or_a_reboot_goes_on_from_roots_ledger(tmp_path, calls):
    watchdog, uptime, paths, _ = watched(tmp_path, BudgetAction.STOP)
    uptime.seconds = 5400
    watchdog.tick()
    ledger = json.loads(paths.budget_ledger.read_text())
    assert ledger["spent_seconds"] == 5400
    assert paths.budget_ledger.stat().st_mode & 0o777 == 0o644  # root's file: world-readable, root writes
    again, uptime, paths, _ = watched(tmp_path, BudgetAction.STOP)  # a new process, the same ledger
    again.boot = "another boot"  # and a reboot: its uptime starts from nothing
    uptime.seconds = 1900
    again.tick()
    assert calls["act"] == ["started"]  # 5400 + 1900 s at 0.5 EUR/h is past 1 EUR


def test_the_act_unit_says_the_budget_is_why() -> None:
    events: list[tuple[str, str]] = []
    machine = Machine(
        backup=lambda deadline: None,  # type: ignore[arg-type,return-value]
        poweroff=lambda: events.append(("poweroff", "")),
        delete=lambda: events.append(("delete", "")),
        snapshot=lambda: "0",
        notify=lambda text, event: events.append((event, text)),
    )
    settings = WatchSettings(name="app", action=IdleAction.POWEROFF, provider="docker")
    record = Act(settings, machine, "budget", paths=VmPaths(run=Path("/nonexistent-run"))).run()
    assert record.reason == "budget"
    assert "powered off (its share of budget_month is spent)" in record.detail
    assert events[-1] == ("poweroff", "")


def test_no_budget_no_ledger(tmp_path, calls):
    settings = WatchSettings(name="app")
    paths = VmPaths(state=tmp_path / "lib", run=tmp_path / "run")
    collector: Any = ScriptedCollector(Clock())
    watchdog = service.Watchdog(settings, collector, clock=Clock(), paths=paths, background=False)
    watchdog.tick()
    assert not paths.budget_ledger.exists() and state_of(paths).budget is None
    assert actions.reason_now(settings, paths) == "idle"


def test_a_ledger_that_is_not_roots_format_is_not_trusted(tmp_path):
    paths = VmPaths(state=tmp_path)
    paths.budget_ledger.write_text('{"month_end": 1, "spent_seconds": "lots"}')
    assert budget.load(paths) is None
    budget.save(Ledger(1.0, 2.0, "b", 3.0), paths)
    assert budget.load(paths) == Ledger(1.0, 2.0, "b", 3.0)
    with pytest.raises(DocumentError):
        codec.loads(Ledger, '{"month_end": 1}')


# --- attacks: what the agent may try against the budget ------------------------------------------

ATTACK = r"""
import json, os, sys
ledger, settings = sys.argv[1], sys.argv[2]
said = {"read": open(ledger).read() != ""}
def attempt(name, fn):
    try:
        fn()
        said[name] = "done"
    except OSError as exc:
        said[name] = exc.errno
attempt("overwrite ledger", lambda: open(ledger, "w").write('{"spent_seconds": 0}'))
attempt("replace ledger", lambda: open(os.path.join(os.path.dirname(ledger), "x"), "w"))
attempt("unlink ledger", lambda: os.unlink(ledger))
attempt("raise allowance", lambda: open(settings, "a").write("budget_allowance = 1e6\n"))
print(json.dumps(said))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="the agent is another user than root: only root can be both")
def test_the_agent_can_neither_rewrite_roots_ledger_nor_raise_its_allowance_nor_hold_the_stop_off(calls):
    """As another uid (`nobody` for the agent): root's ledger and settings are readable and
    nothing more; and with everything the agent can do to look busy (a working turn, a lease for
    a month, a person's session), `stop` is started once the allowance is spent."""
    with tempfile.TemporaryDirectory(prefix="vmgen-test-budget-") as shared:  # pytest's own is root's 0700
        base = Path(shared)
        base.chmod(0o755)

        class Busy:
            def __init__(self) -> None:
                self.clock: Callable[[], float] = time.monotonic

            def snapshot(self) -> Snapshot:
                now = self.clock()
                return Snapshot(
                    at=now,
                    agent=AgentSignals(AgentState.WORKING, turn_open=True, tool_running=True, tool_alive=True),
                    files_changed=3,
                    humans=Humans(ssh_sessions=1, tmux_clients=1),
                    leases=(Lease(until=now + 30 * 86400, reason="keep me"),),
                )

        busy = Busy()
        watchdog, uptime, paths, settings = watched(base, BudgetAction.STOP, collector=busy)
        busy.clock = watchdog.clock
        paths.etc.mkdir(mode=0o755)
        paths.watch_settings.write_text(settings.to_toml())
        uptime.seconds = 3600
        verdict = watchdog.tick()
        assert verdict.busy and calls["act"] == []
        files = (paths.budget_ledger, paths.watch_settings)
        attack = subprocess.run(
            ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-I", "-c", ATTACK, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        said = json.loads(attack.stdout)
        assert said == {
            "read": True,  # the path is reachable: what fails below fails on root's permissions
            "overwrite ledger": errno.EACCES,
            "replace ledger": errno.EACCES,
            "unlink ledger": errno.EACCES,
            "raise allowance": errno.EACCES,
        }
        assert WatchSettings.from_toml(paths.watch_settings.read_text()).budget_allowance == 1.0
        uptime.seconds = 7300
        assert watchdog.tick().busy  # as busy as the agent can make it ...
        assert calls["act"] == ["started"]  # ... and the stop is started
        assert json.loads(paths.budget_ledger.read_text())["spent_seconds"] == 7300


def test_status_json_and_the_page_show_the_spend_and_the_budget(tmp_path, calls):
    from vmgen.laptop.cli.watchdog import format_status
    from vmgen.vmside.web.server import WebSettings, collect_state

    watchdog, uptime, paths, _ = watched(tmp_path, BudgetAction.STOP)
    uptime.seconds = 1800
    watchdog.tick()
    written = state_of(paths)
    words = "0.25 of 1.00 EUR this month (0.5000 EUR/h; budget_month 20.00); at 1.00 it stops"
    assert budget_words(written) == words
    table = format_status("app", written)
    rows = {str(row): str(cell) for row, cell in zip(table.columns[0]._cells, table.columns[1]._cells, strict=True)}
    assert rows["budget"] == words
    as_json = codec.to_value(written)["budget"]  # `vmgen status --json`
    assert as_json["spent"] == 0.25 and as_json["allowance"] == 1.0 and as_json["currency"] == "EUR"
    page = collect_state(WebSettings(vm=paths))
    assert page["said"]["budget"] == words and page["budget"]["action"] == "stop"
    # Past the month's end it says that nothing counts any more; without a budget, nothing.
    over = replace(written, budget=replace(as_record(written), counting=False))
    assert "its month is over" in budget_words(over)
    assert budget_words(replace(written, budget=None)) == ""
    assert "budget" not in [str(row) for row in format_status("app", replace(written, budget=None)).columns[0]._cells]


def as_record(state: WatchdogState) -> BudgetRecord:
    assert state.budget is not None
    return state.budget
