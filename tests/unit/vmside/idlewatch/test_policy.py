"""The watchdog's policy as a table: each row is a situation a user would recognise, replayed
tick by tick through `decide`, and the verdict at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

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


def replay(
    phases: list[Phase],
    until: float,
    config: PolicyConfig = CONFIG,
    tick: float = 0.5,
    history: History | None = None,
    origin: float = 1000.0,
):
    """Tick every `tick` minutes from 0 to `until` (minutes); returns the last verdict."""
    history = history or History(boot_started=origin, last_activity=origin)
    leases: list[Lease] = []
    verdict = None
    t = 0.0
    while t <= until + 1e-9:
        phase = [p for p in phases if p.start <= t][-1]
        if phase.lease_minutes is not None and abs(t - phase.start) < 1e-9:
            leases.append(Lease(until=origin + (t + phase.lease_minutes) * MIN, reason="test"))
        snapshot = Snapshot(
            at=origin + t * MIN,
            agent=phase.agent,
            files_changed=phase.files if abs(t - phase.start) < 1e-9 else 0,
            humans=phase.humans,
            leases=tuple(leases),
        )
        verdict = decide(history, snapshot, config)
        history = verdict.history
        t += tick
    return verdict


TMUX = Humans(tmux_clients=1)
SSH = Humans(ssh_sessions=1)
WEB = Humans(web_connections=2)

# (id, phases, at minute, expected action, expected busy). A silent person holds the workspace up
# for the human limit, but is never "busy": its countdown runs (and is said) from the start.
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
    ("silent human on tmux: kept up for 2 h", [Phase(0, humans=TMUX)], 100, Action.NONE, False),
    ("silent human on tmux: warned before 2 h", [Phase(0, humans=TMUX)], 111, Action.WARN, False),
    ("silent human on tmux: idle after 2 h", [Phase(0, humans=TMUX)], 121, Action.DELETE, False),
    ("silent SSH session: idle after 2 h", [Phase(0, humans=SSH)], 120, Action.DELETE, False),
    ("web connections count as a human", [Phase(0, humans=WEB)], 90, Action.NONE, False),
    ("human leaves: 30 min from leaving", [Phase(0, humans=TMUX), Phase(50)], 75, Action.WARN, False),
    ("human leaves: acted 30 min after", [Phase(0, humans=TMUX), Phase(50)], 80, Action.DELETE, False),
    ("keepalive holds it", [Phase(0, lease_minutes=180)], 150, Action.NONE, True),
    ("keepalive expires, then 30 min", [Phase(0, lease_minutes=60)], 89, Action.WARN, False),
    ("keepalive expired long ago", [Phase(0, lease_minutes=60)], 90, Action.DELETE, False),
    (
        "keepalive: the countdown runs from the lease's end, to the second",
        [Phase(0, lease_minutes=60.1)],
        90.05,
        Action.WARN,
        False,
    ),
    ("a human limit below the idle timeout never shortens it", [Phase(0, humans=SSH)], 29, Action.WARN, False),
]


@pytest.mark.parametrize("phases, at, action, busy", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_policy_table(phases, at, action, busy, request) -> None:
    config = replace(CONFIG, human_timeout=10 * MIN) if "human limit below" in request.node.name else CONFIG
    verdict = replay(phases, at, config)
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


def test_a_corrupt_state_from_the_future_does_not_postpone() -> None:
    # Ticks are on the monotonic clock; a wall-clock jump (NTP, suspend) cannot show up as a jump
    # in `at` (leases: see the clock-step rows below). A state file from the future (corrupt)
    # must not postpone the action.
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


# -- situations: from what the watchdog reads to its verdict and its words ------------------------
#
# Each row starts from the raw statements and facts of a tick, as the watchdog reads them: each
# agent session's hook lines, transcript and processes; sshd's session titles; the leases file
# and the clocks it is measured on. They go through the same pure steps as on the VM (per-session
# hooks, evidence, classification, the sessions combined, SSH titles to people, leases to what
# remains of them) into `decide`, and its words. One row per finding of issue 24, and their twins.

from vmgen.contract.documents import AgentRecord, Clocks, HookEvent, parse_leases  # noqa: E402
from vmgen.contract.verdict_words import verdict_word, warning, what_happens, what_holds  # noqa: E402
from vmgen.vmside.idlewatch.agent import ProcessFacts, classify, combine, evidence_of  # noqa: E402
from vmgen.vmside.idlewatch.humans import is_person  # noqa: E402
from vmgen.vmside.idlewatch.model import Condition  # noqa: E402
from vmgen.vmside.idlewatch.persist import state_of  # noqa: E402
from vmgen.vmside.idlewatch.transcript import HookState, TranscriptState, fold_hook_events  # noqa: E402

WALL0 = 1_800_000_000.0  # the wall clock at minute 0
BOOT0 = 7_000.0  # CLOCK_BOOTTIME at minute 0
STALL = 15 * MIN


@dataclass(frozen=True)
class Session:
    """One agent process's session. Times in minutes; None: never."""

    id: str
    hooks: tuple[tuple[float, str], ...] = ()  # (minute, event) its hooks wrote
    opened: float | None = None  # its transcript's last line opened a turn at this minute...
    closed: float | None = None  # ...or closed it at this one (the later wins)
    tool_since: float | None = None  # a tool call open since this minute
    processes: tuple[tuple[str, float], ...] = ()  # live descendants: (name, started at minute)
    connections: int = 0  # established, anywhere in its tree
    new_connections: int = 0  # opened by the agent process outside a turn
    grew_at: float | None = None  # its transcript last grew at this minute


@dataclass(frozen=True)
class Situation:
    sessions: tuple[Session, ...] = ()
    ssh: tuple[str, ...] = ()  # sshd session titles, every tick
    lease: tuple[float, float] | None = None  # (taken at minute, for minutes), by `vmgen keepalive`
    wall_step: tuple[float, float] = (0.0, 0.0)  # (at minute, by minutes): the wall clock steps


def _wall(situation: Situation, t: float) -> float:
    at, by = situation.wall_step
    return WALL0 + t * MIN + (by * MIN if at and t >= at else 0.0)


def _agent(situation: Situation, t: float) -> AgentSignals:
    if not situation.sessions:
        return ABSENT
    wall = _wall(situation, t)
    lines = sorted((m, s.id, event) for s in situation.sessions for m, event in s.hooks if m <= t)
    hooks = fold_hook_events({}, (HookEvent(_wall(situation, m), event, sid) for m, sid, event in lines))
    judged = []
    for s in situation.sessions:
        said = [(m, True) for m in (s.opened,) if m is not None and m <= t]
        said += [(m, False) for m in (s.closed,) if m is not None and m <= t]
        at, open_ = max(said) if said else (None, False)
        tool = s.tool_since is not None and s.tool_since <= t
        transcript = TranscriptState(
            Path(f"{s.id}.jsonl"),
            turn_open=open_,
            tool_running=open_ and tool,
            tool_since=_wall(situation, s.tool_since) if open_ and tool and s.tool_since is not None else None,
            changed_at=_wall(situation, at) if at is not None else None,
        )
        facts = ProcessFacts(
            connections=s.connections,
            new_connections=s.new_connections,
            children=tuple((name, _wall(situation, m)) for name, m in s.processes if m <= t),
            grew_now=s.grew_at == t,
            grew_recently=s.grew_at is not None and (t - s.grew_at) * MIN < STALL,
        )
        evidence = evidence_of(transcript, None, hooks.get(s.id, HookState()), facts, wall, STALL)
        judged.append(classify(evidence))
    state, detail = combine(judged)
    return AgentSignals(state, detail=detail)


def _leases(situation: Situation, t: float, origin: float) -> tuple[Lease, ...]:
    if situation.lease is None or t < situation.lease[0]:
        return ()
    taken, minutes = situation.lease
    raw = json.dumps(
        [
            {
                "until": _wall(situation, taken) + minutes * MIN,
                "reason": "from the laptop",
                "boot": "this-boot",
                "boot_until": BOOT0 + (taken + minutes) * MIN,
            }
        ]
    )
    clocks = Clocks(wall=_wall(situation, t), boot="this-boot", boottime=BOOT0 + t * MIN)
    mono = origin + t * MIN
    return tuple(
        Lease(until=mono + (lease.until - clocks.wall), reason=lease.reason) for lease in parse_leases(raw, clocks)
    )


def live(situation: Situation, until: float, config: PolicyConfig = CONFIG, tick: float = 0.5, origin: float = 1000.0):
    """Tick from minute 0 to `until`; the last verdict and the state document it is said from."""
    history = History(boot_started=origin, last_activity=origin)
    t, verdict, agent = 0.0, None, ABSENT
    while t <= until + 1e-9:
        agent = _agent(situation, t)
        humans = Humans(ssh_sessions=sum(1 for title in situation.ssh if is_person(title)))
        snapshot = Snapshot(at=origin + t * MIN, agent=agent, humans=humans, leases=_leases(situation, t, origin))
        verdict = decide(history, snapshot, config)
        history = verdict.history
        t += tick
    assert verdict is not None
    state = state_of(
        "this-boot",
        verdict,
        config.action,
        AgentRecord(agent.state.value, agent.detail),
        {},
        False,
        0,
        asdict(config) | {"action": config.action.value},
    )
    return verdict, state


TWO_SESSIONS = (
    # A finished its turn and sits at its idle notification; B is mid-turn on a slow model. A's
    # statements are newer than B's, and are A's alone.
    Session("A", hooks=((0, "UserPromptSubmit"), (2, "Stop"), (3, "Notification")), opened=0, closed=2),
    Session("B", hooks=((1, "UserPromptSubmit"),), opened=1, connections=1),
)
SILENT_TOOL = Session(
    "T",
    hooks=((0, "UserPromptSubmit"), (1, "PreToolUse")),
    opened=1,
    tool_since=1,
    processes=(("bash", 1), ("pytest", 1.01)),
    grew_at=1,
)
STUCK_TURN = Session(
    "S", hooks=((0, "UserPromptSubmit"),), opened=0, grew_at=0, processes=(("mcp-server", -60),)
)  # an MCP server from the session's start

# (id, situation, at minute, condition, action, the words `vmgen status` and the page say)
SITUATIONS = [
    (
        "1: two sessions, one at its idle notification, one mid-turn: working",
        Situation(TWO_SESSIONS),
        45,
        Condition.WORKING,
        Action.NONE,
        "powers off once idle for 30 min",
    ),
    (
        "1: the same two sessions once B's turn ends: idle, counted from B's end",
        Situation(
            (TWO_SESSIONS[0], replace(TWO_SESSIONS[1], closed=20, hooks=((1, "UserPromptSubmit"), (20, "Stop"))))
        ),
        44.5,
        Condition.IDLE,
        Action.WARN,
        "powers off in 5 min unless something happens (warned)",
    ),
    (
        "1: a session whose statements say idle, with a new model connection: working",
        Situation((replace(TWO_SESSIONS[0], new_connections=1),)),
        10,
        Condition.WORKING,
        Action.NONE,
        "powers off once idle for 30 min",
    ),
    (
        "2: vmgen's own SSH (status polled, no terminal) is no person: acted at 30 min",
        Situation(ssh=("sshd: agent@notty",)),
        30,
        Condition.IDLE,
        Action.DELETE,
        "deletes itself now",
    ),
    (
        "2: the first verdict during a launch's SSH says the idle timeout",
        Situation(ssh=("sshd-session: agent@notty",)),
        0,
        Condition.IDLE,
        Action.NONE,
        "deletes itself in 30 min unless something happens",
    ),
    (
        "2: a person's terminal keeps it up, counting down the human limit",
        Situation(ssh=("sshd: agent@pts/0",)),
        100,
        Condition.HUMAN,
        Action.NONE,
        "deletes itself in 20 min unless something happens",
    ),
    (
        "3: a silent tool call longer than stall_minutes, its process alive: working",
        Situation((SILENT_TOOL,)),
        40,
        Condition.WORKING,
        Action.NONE,
        "powers off once idle for 30 min",
    ),
    (
        "3: the same call once its process is gone: stalled, then idle from the stall",
        Situation((replace(SILENT_TOOL, processes=()),)),
        40,
        Condition.IDLE,
        Action.WARN,
        "deletes itself in 6 min unless something happens (warned)",
    ),
    (
        "3: a turn with no tool process, no connection and no growth: stalled, not activity",
        Situation((STUCK_TURN,)),
        43.5,
        Condition.IDLE,
        Action.WARN,
        "deletes itself in 1 min unless something happens (warned)",
    ),
    (
        "4: a +2 h wall-clock step keeps a 10-minute lease",
        Situation(lease=(0, 10), wall_step=(1, 120)),
        9,
        Condition.KEPT_ALIVE,
        Action.NONE,
        "deletes itself in 31 min unless something happens",
    ),
    (
        "4: a -2 h wall-clock step does not stretch it",
        Situation(lease=(0, 10), wall_step=(1, -120)),
        40,
        Condition.IDLE,
        Action.DELETE,
        "deletes itself now",
    ),
    (
        "5: a keepalive says the lease's time: its end plus the idle timeout",
        Situation(lease=(0, 10)),
        0.5,
        Condition.KEPT_ALIVE,
        Action.NONE,
        "deletes itself in 40 min unless something happens",
    ),
]


@pytest.mark.parametrize(
    "situation, at, condition, action, said", [row[1:] for row in SITUATIONS], ids=[row[0] for row in SITUATIONS]
)
def test_situations(situation: Situation, at: float, condition: Condition, action: Action, said: str) -> None:
    verdict, state = live(situation, at)
    assert (verdict.condition, verdict.next_action) == (condition, action), verdict
    assert what_happens(state) == said.replace("powers off", ACTION_WORDS_DELETE)


ACTION_WORDS_DELETE = "deletes itself"  # CONFIG's action


def test_a_silent_person_is_never_busy_beside_an_idle_countdown() -> None:
    verdict, state = live(Situation(ssh=("sshd: agent@pts/0",)), 112)
    assert not verdict.busy and not state.verdict.busy
    assert verdict_word(state) == "person connected"
    assert what_holds(state) == "1 SSH session connected, silent for 1 h 52 min"
    assert what_happens(state) == "deletes itself in 8 min unless something happens (warned)"
    assert warning("app", state).startswith(
        "vmgen: workspace app has had a person connected but silent for 1 h 52 min; it will be deleted in 8 min"
    )


def test_a_keepalive_is_said_with_its_own_time() -> None:
    verdict, state = live(Situation(lease=(0, 572 / 60)), 0)
    assert verdict.busy and verdict_word(state) == "kept alive"
    assert what_holds(state) == "kept alive for 10 min more (from the laptop)"
    assert what_happens(state) == "deletes itself in 40 min unless something happens"  # 572 s + 30 min


def test_a_stalled_agent_is_said_in_the_verdict_and_its_warning() -> None:
    _verdict, state = live(Situation((STUCK_TURN,)), 44)
    assert state.agent.state == "stalled" and verdict_word(state) == "idle (agent stalled)"
    assert what_holds(state).endswith("(the agent looks stalled)")
    assert "is idle (the agent looks stalled) and will be deleted" in warning("app", state)
