"""The watchdog's policy as a table: each row is a situation a user would recognise, replayed
tick by tick through `decide`, and the verdict at the end."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from vmgen.vmside.idlewatch.model import (
    Action,
    AgentSignals,
    AgentState,
    History,
    Humans,
    Lease,
    PolicyConfig,
    Snapshot,
)
from vmgen.vmside.idlewatch.policy import decide

MIN = 60.0
HOUR = 3600.0
CONFIG = PolicyConfig(idle_timeout=30 * MIN, human_timeout=2 * HOUR, warn_before=10 * MIN, action=Action.DELETE)

WORKING = AgentSignals(AgentState.WORKING, turn_open=True, model_connections=1, detail="waiting on the model")
WAITING = AgentSignals(AgentState.WAITING)
STALLED = AgentSignals(AgentState.STALLED, turn_open=True)
ABSENT = AgentSignals(AgentState.ABSENT)
TEST_SUITE = AgentSignals(AgentState.WORKING, cpu_busy=True, detail="children busy: pytest")


@dataclass(frozen=True)
class Phase:
    """`agent` etc. hold from `start` (minutes) until the next phase starts."""

    start: float
    agent: AgentSignals = WAITING
    files: int = 0
    humans: Humans = field(default_factory=Humans)
    lease_minutes: float | None = None  # a lease taken at the phase start, for this long


def replay(phases: list[Phase], until: float, config: PolicyConfig = CONFIG, tick: float = 0.5,
           history: History | None = None, origin: float = 1000.0):
    """Tick every `tick` minutes from 0 to `until` (minutes); returns the last verdict."""
    history = history or History(boot_started=origin, last_activity=origin)
    leases: list[Lease] = []
    verdict = None
    t = 0.0
    while t <= until + 1e-9:
        phase = [p for p in phases if p.start <= t][-1]
        if phase.lease_minutes is not None and abs(t - phase.start) < 1e-9:
            leases.append(Lease(until=origin + (t + phase.lease_minutes) * MIN, reason="test"))
        snapshot = Snapshot(at=origin + t * MIN, agent=phase.agent,
                            files_changed=phase.files if abs(t - phase.start) < 1e-9 else 0,
                            humans=phase.humans, leases=tuple(leases))
        verdict = decide(history, snapshot, config)
        history = verdict.history
        t += tick
    return verdict


TMUX = Humans(tmux_clients=1)
SSH = Humans(ssh_sessions=1)
WEB = Humans(web_connections=2)

# (id, phases, at minute, expected action, expected busy)
TABLE = [
    ("fresh boot, nothing happens: quiet", [Phase(0)], 10, Action.NONE, False),
    ("fresh boot, nothing happens: warned at T-10", [Phase(0)], 21, Action.WARN, False),
    ("fresh boot, nothing happens: acted at T", [Phase(0)], 30, Action.DELETE, False),
    ("agent at its prompt past the timeout is idle", [Phase(0, WAITING)], 31, Action.DELETE, False),
    ("claude process exists but waits for the human", [Phase(0, WAITING)], 45, Action.DELETE, False),
    ("mid-turn, 60 s on the model with ~0 CPU: busy", [Phase(0, WORKING)], 60, Action.NONE, True),
    ("long turn of 3 hours: busy throughout", [Phase(0, WORKING)], 180, Action.NONE, True),
    ("turn ends, then timeout runs from its end", [Phase(0, WORKING), Phase(40, WAITING)], 59, Action.NONE, False),
    ("turn ends, warned 20 min after", [Phase(0, WORKING), Phase(40, WAITING)], 60, Action.WARN, False),
    ("turn ends, acted 30 min after", [Phase(0, WORKING), Phase(40, WAITING)], 70, Action.DELETE, False),
    ("a test suite runs as the agent's child", [Phase(0, TEST_SUITE)], 90, Action.NONE, True),
    ("stalled turn does not count as activity", [Phase(0, STALLED)], 30, Action.DELETE, False),
    ("working then stalled: countdown from the stall", [Phase(0, WORKING), Phase(20, STALLED)], 45, Action.WARN, False),
    ("no agent process and nothing else", [Phase(0, ABSENT)], 30, Action.DELETE, False),
    ("file writes keep it busy", [Phase(0, files=3), Phase(25, files=1)], 40, Action.NONE, False),
    ("file write resets the countdown", [Phase(0), Phase(25, files=1)], 44, Action.NONE, False),
    ("file write long ago does not", [Phase(0), Phase(5, files=1)], 35, Action.DELETE, False),
    ("silent human on tmux: busy for 2 h", [Phase(0, humans=TMUX)], 100, Action.NONE, True),
    ("silent human on tmux: warned before 2 h", [Phase(0, humans=TMUX)], 111, Action.WARN, True),
    ("silent human on tmux: idle after 2 h", [Phase(0, humans=TMUX)], 121, Action.DELETE, False),
    ("silent SSH session: idle after 2 h", [Phase(0, humans=SSH)], 120, Action.DELETE, False),
    ("web connections count as a human", [Phase(0, humans=WEB)], 90, Action.NONE, True),
    ("human leaves: 30 min from leaving", [Phase(0, humans=TMUX), Phase(50)], 75, Action.WARN, False),
    ("human leaves: acted 30 min after", [Phase(0, humans=TMUX), Phase(50)], 80, Action.DELETE, False),
    ("keepalive holds it", [Phase(0, lease_minutes=180)], 150, Action.NONE, True),
    ("keepalive expires, then 30 min", [Phase(0, lease_minutes=60)], 89, Action.WARN, False),
    ("keepalive expired long ago", [Phase(0, lease_minutes=60)], 90, Action.DELETE, False),
]


@pytest.mark.parametrize("phases, at, action, busy", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_policy_table(phases, at, action, busy) -> None:
    verdict = replay(phases, at)
    assert verdict.next_action is action
    assert verdict.busy is busy


def test_hard_lifetime_ends_even_a_working_agent_with_a_lease() -> None:
    config = replace(CONFIG, max_lifetime=4 * HOUR)
    phases = [Phase(0, WORKING, humans=TMUX, lease_minutes=600)]
    assert replay(phases, 3 * 60 + 49, config).next_action is Action.NONE
    assert replay(phases, 3 * 60 + 51, config).next_action is Action.WARN
    assert replay(phases, 4 * 60, config).next_action is Action.DELETE


def test_reasons_say_why_it_is_busy() -> None:
    verdict = replay([Phase(0, WORKING, files=2, humans=SSH, lease_minutes=60)], 0)
    text = " | ".join(verdict.reasons)
    assert "agent working (waiting on the model)" in text
    assert "2 file change(s)" in text
    assert "keepalive for 3600s more (test)" in text
    assert "1 SSH session connected" in text


def test_wall_clock_jumps_change_nothing() -> None:
    # Leases and ticks are on the monotonic clock; a wall-clock jump (NTP, suspend) cannot show
    # up as a jump in `at`. A state file from the future (corrupt) must not postpone the action.
    future = History(boot_started=1000.0, last_activity=1000.0 + 10 * HOUR)
    verdict = replay([Phase(0)], 30, history=future)
    assert verdict.next_action is Action.DELETE


def test_a_service_restart_mid_countdown_resumes_it() -> None:
    before = replay([Phase(0, WORKING), Phase(10, WAITING)], 25)
    assert before.next_action is Action.NONE
    # The service restarts with the persisted history (same boot): the countdown goes on from
    # the last working tick (minute 9.5), it does not start again.
    snapshot = Snapshot(at=1000.0 + 40 * MIN, agent=WAITING)
    resumed = decide(before.history, snapshot, CONFIG)
    assert resumed.next_action is Action.DELETE
    assert resumed.idle_since == 1000.0 + 9.5 * MIN


def test_poweroff_and_backup_actions_are_passed_through() -> None:
    for action in (Action.POWEROFF, Action.BACKUP_THEN_DELETE):
        assert replay([Phase(0)], 30, replace(CONFIG, action=action)).next_action is action
