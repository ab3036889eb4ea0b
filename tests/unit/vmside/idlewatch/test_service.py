"""The service loop with a scripted collector: warns once, starts the act unit at the deadline
(never waiting for it), never acts in dry-run mode, tries again when the unit cannot be started,
survives a failing tick, and resumes after a restart."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vmgen.contract.documents import WatchSettings
from vmgen.contract.enums import IdleAction
from vmgen.contract.names import VmPaths
from vmgen.errors import ConfigError
from vmgen.vmside.idlewatch import service, settings as settings_module
from vmgen.vmside.idlewatch.model import Action, AgentSignals, AgentState, Humans, Snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class ScriptedCollector:
    def __init__(self, clock: Clock, state: AgentState = AgentState.WAITING) -> None:
        self.clock, self.state = clock, state

    def snapshot(self) -> Snapshot:
        return Snapshot(at=self.clock(), agent=AgentSignals(self.state))


@pytest.fixture
def calls(monkeypatch):
    recorded: dict[str, list] = {"warn": [], "act": []}
    monkeypatch.setattr(service, "warn", lambda s, text, paths: recorded["warn"].append(text))
    monkeypatch.setattr(service, "start_action", lambda: recorded["act"].append("started"))
    return recorded


def make(tmp_path: Path, clock: Clock, dry_run: bool = False, state=AgentState.WAITING, **changes):
    settings = replace(WatchSettings(name="app", idle_minutes=30, warn_minutes=10, action=IdleAction.DELETE), **changes)
    return service.Watchdog(
        settings,
        ScriptedCollector(clock, state),
        dry_run=dry_run,
        clock=clock,
        paths=VmPaths(state=tmp_path, run=tmp_path),
        background=False,
    )


def run_minutes(watchdog, clock: Clock, minutes: float, step: float = 0.5) -> None:
    end = clock.now + minutes * 60
    while clock.now <= end:
        watchdog.tick()
        clock.now += step * 60


def test_warns_once_then_acts(tmp_path, calls):
    clock = Clock()
    watchdog = make(tmp_path, clock)
    run_minutes(watchdog, clock, 25)
    assert len(calls["warn"]) == 1 and "workspace app is idle and will be deleted in 10 min" in calls["warn"][0]
    assert calls["act"] == []
    run_minutes(watchdog, clock, 6)
    assert calls["act"][:1] == ["started"]
    # Started once, then again at most every minute (a no-op while the unit runs): never per tick.
    assert len(calls["act"]) <= 1 + 6 / service.ACTION_RESTART_SECONDS * 60


def test_a_working_agent_is_never_acted_on(tmp_path, calls):
    clock = Clock()
    run_minutes(make(tmp_path, clock, state=AgentState.WORKING), clock, 180)
    assert calls == {"warn": [], "act": []}


def test_a_stalled_agent_is_reported_once_before_anything_acts_and_does_not_hold_the_vm(tmp_path, calls):
    clock = Clock()
    watchdog = make(tmp_path, clock, state=AgentState.STALLED)
    run_minutes(watchdog, clock, 0)
    assert calls["act"] == [] and len(calls["warn"]) == 1  # said at once, before the countdown ends
    run_minutes(watchdog, clock, 31)
    stall_alerts = [w for w in calls["warn"] if w.startswith("vmgen: the agent in workspace app looks stalled")]
    assert calls["warn"][0] == stall_alerts[0] and len(stall_alerts) == 1
    assert "no tool process runs, no model connection is open" in stall_alerts[0]
    assert "is idle (the agent looks stalled) and will be deleted in 10 min" in calls["warn"][1]
    assert calls["act"][:1] == ["started"]
    state = json.loads((tmp_path / "idlewatch.json").read_text())
    assert state["agent"]["state"] == "stalled" and state["verdict"]["condition"] == "idle"


def test_a_silent_person_is_warned_as_a_person_not_as_idle(tmp_path, calls):
    clock = Clock()

    class Person:
        def snapshot(self) -> Snapshot:
            return Snapshot(at=clock(), agent=AgentSignals(AgentState.WAITING), humans=Humans(ssh_sessions=1))

    watchdog = make(tmp_path, clock, human_minutes=60)
    watchdog.collector = Person()
    run_minutes(watchdog, clock, 51)
    assert len(calls["warn"]) == 1 and "has had a person connected but silent for 50 min" in calls["warn"][0]
    state = json.loads((tmp_path / "idlewatch.json").read_text())["verdict"]
    assert state["busy"] is False and state["condition"] == "human" and state["left_seconds"] == 9 * 60


def test_dry_run_does_nothing(tmp_path, calls):
    clock = Clock()
    watchdog = make(tmp_path, clock, dry_run=True)
    run_minutes(watchdog, clock, 40)
    assert calls == {"warn": [], "act": []}
    state = json.loads((tmp_path / "idlewatch.json").read_text())
    assert state["dry_run"] is True and state["verdict"]["next_action"] == "delete"


def test_an_action_unit_that_cannot_start_is_tried_again_with_backoff(tmp_path, monkeypatch):
    clock = Clock()
    attempts, warnings = [], []

    def failing_start():
        attempts.append(clock.now)
        raise RuntimeError("systemd does not answer")

    monkeypatch.setattr(service, "start_action", failing_start)
    monkeypatch.setattr(service, "warn", lambda s, text, paths: warnings.append(text))
    watchdog = make(tmp_path, clock)
    run_minutes(watchdog, clock, 30 + 4, step=0.25)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) >= 3 and gaps[0] >= 30 and gaps[1] >= 60  # backoff, not every tick
    assert any("failed (systemd does not answer)" in w for w in warnings)
    assert json.loads((tmp_path / "idlewatch.json").read_text())["failures"] == len(attempts)


def test_a_failing_tick_is_one_line_and_the_watchdog_goes_on(tmp_path, calls, caplog):
    """A disk the agent filled, say: the service must not crash-loop."""
    clock = Clock()
    watchdog = make(tmp_path, clock)
    ticks = []

    def broken():
        ticks.append(clock.now)
        raise OSError(28, "No space left on device")

    watchdog.tick = broken
    watchdog.run(once=True)
    assert ticks and "tick failed: OSError: [Errno 28] No space left on device" in caplog.text
    assert "Traceback" not in caplog.text


def test_the_state_carries_what_the_action_is_doing(tmp_path, calls):
    from vmgen.contract import codec
    from vmgen.contract.documents import ActionRecord

    clock = Clock()
    watchdog = make(tmp_path, clock)
    record = ActionRecord("idle", "backup-then-delete", "backing up", "it is idle: backing up", 1.0, 2.0, 1.0)
    (tmp_path / "action.json").write_text(codec.dumps(record))
    watchdog.tick()
    state = json.loads((tmp_path / "idlewatch.json").read_text())
    assert state["acting"]["step"] == "backing up" and state["acting"]["detail"] == "it is idle: backing up"


def test_restart_mid_countdown_resumes(tmp_path, calls):
    clock = Clock()
    run_minutes(make(tmp_path, clock), clock, 20)
    restarted = make(tmp_path, clock)  # same boot, same state file
    run_minutes(restarted, clock, 10.5)
    assert calls["act"][:1] == ["started"]


def test_backup_then_delete_is_refused_without_a_backup_store(tmp_path):
    paths = VmPaths(etc=tmp_path)
    paths.watch_settings.write_text('action = "backup-then-delete"\n')
    with pytest.raises(ConfigError, match="needs a backup store"):
        settings_module.load(paths)
    paths.backup_config.write_text('kind = "local"\n')
    assert settings_module.load(paths).action == "backup-then-delete"


def test_a_settings_file_with_an_unknown_key_or_action_is_refused(tmp_path):
    paths = VmPaths(etc=tmp_path)
    paths.watch_settings.write_text('idle_minutes = 2\nshell = "rm -rf /"\n')
    with pytest.raises(ConfigError, match="unknown field"):
        settings_module.load(paths)
    paths.watch_settings.write_text('action = "reboot"\n')
    with pytest.raises(ConfigError, match="action: expected one of poweroff, delete, backup-then-delete"):
        settings_module.load(paths)


def test_settings_file_round_trip(tmp_path):
    paths = VmPaths(etc=tmp_path)
    written = WatchSettings(
        name="app", idle_minutes=2, warn_minutes=1, action=IdleAction.DELETE, provider="hetzner", ignore=("*.log",)
    )
    paths.watch_settings.write_text(written.to_toml())
    loaded = settings_module.load(paths)
    assert loaded == written
    policy = settings_module.policy_of(loaded)
    assert (policy.idle_timeout, policy.warn_before, policy.action) == (120, 60, Action.DELETE)


def test_a_turn_between_two_ticks_still_counts_as_the_agent_working(tmp_path, calls):
    # The agent's hooks said it worked a few seconds ago; no tick saw it working.
    clock = Clock()
    watchdog = make(tmp_path, clock)
    worked_at = time.time() - 5

    class Hooks:
        def snapshot(self) -> Snapshot:
            return Snapshot(at=clock(), agent=AgentSignals(AgentState.WAITING, worked_at=worked_at))

    watchdog.collector = Hooks()
    watchdog.tick()
    state = json.loads((tmp_path / "idlewatch.json").read_text())
    assert state["last_seen"]["agent working"] == pytest.approx(worked_at, abs=0.1)


def test_the_state_lists_each_sessions_own_state_capped(tmp_path, calls):
    from vmgen.contract.documents import MAX_SESSION_RECORDS, WatchdogState

    class ManySessions(ScriptedCollector):
        def snapshot(self) -> Snapshot:
            per_session = tuple((1000 + i, AgentState.WAITING, "at its prompt " + "x" * 500) for i in range(40))
            per_session = ((999, AgentState.WORKING, "turn open"), *per_session)
            return Snapshot(at=self.clock(), agent=AgentSignals(AgentState.WORKING, per_session=per_session))

    clock = Clock()
    watchdog = make(tmp_path, clock)
    watchdog.collector = ManySessions(clock)
    watchdog.tick()
    state = WatchdogState.loads((tmp_path / "idlewatch.json").read_text())  # as the laptop reads it
    sessions = state.agent.sessions
    assert len(sessions) == MAX_SESSION_RECORDS and (sessions[0].pid, sessions[0].state) == (999, "working")
    assert sessions[1].state == "waiting" and len(sessions[1].detail) == 200
