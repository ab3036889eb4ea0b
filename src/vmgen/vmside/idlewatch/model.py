"""The data that flows through the watchdog: one Snapshot per tick, a Verdict per decision.

All times are seconds on the monotonic clock (CLOCK_MONOTONIC, per boot), so wall-clock jumps
change nothing; leases are converted when read (by what remains of them on CLOCK_BOOTTIME).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ...contract.enums import IdleAction


class AgentState(str, enum.Enum):
    WORKING = "working"  # a turn is in progress and making progress, or its children are busy
    WAITING = "waiting"  # at its prompt, waiting for the human
    # A turn is open with no live tool process, no model connection and nothing written for
    # stall_minutes: said (page, status, the warning channel), and not activity.
    STALLED = "stalled"
    ABSENT = "absent"  # no agent process at all


@dataclass(frozen=True)
class AgentSignals:
    """What the agent's own state says (every session of it), and the evidence for it."""

    state: AgentState
    turn_open: bool = False
    tool_running: bool = False
    tool_alive: bool = False  # an open tool call has a live process
    transcript_grew: bool = False
    model_connections: int = 0
    cpu_busy: bool = False
    last_hook_event: str = ""
    detail: str = ""
    # Wall clock of the agent's latest work its hooks reported (a prompt, a tool, the end of a
    # turn): a turn shorter than the tick interval is still seen. Shown, never a policy input.
    worked_at: float | None = None
    sessions: int = 0  # agent processes seen
    # Each agent process's own state: (pid, state, detail), for `vmgen session list`.
    per_session: tuple[tuple[int, AgentState, str], ...] = ()


@dataclass(frozen=True)
class Humans:
    """People at the workspace: SSH sessions with a terminal, attached tmux clients, web
    connections. vmgen's own commands over SSH have no terminal and are not counted."""

    ssh_sessions: int = 0
    tmux_clients: int = 0
    web_connections: int = 0

    @property
    def present(self) -> bool:
        return bool(self.ssh_sessions or self.tmux_clients or self.web_connections)


@dataclass(frozen=True)
class Lease:
    until: float  # monotonic
    reason: str


@dataclass(frozen=True)
class Snapshot:
    at: float  # monotonic
    agent: AgentSignals
    files_changed: int = 0
    humans: Humans = field(default_factory=Humans)
    leases: tuple[Lease, ...] = ()


class Condition(str, enum.Enum):
    """What holds the workspace up, in one word; every wording of a verdict derives from it."""

    WORKING = "working"  # the agent works or files change: no countdown
    KEPT_ALIVE = "kept-alive"  # a keepalive lease: the countdown runs from the lease's end
    HUMAN = "human"  # a person is connected but silent: the countdown is the human limit
    IDLE = "idle"  # nothing: the idle countdown runs


class Action(str, enum.Enum):
    """The verdict's next step: nothing yet, the warning, or the configured idle action."""

    NONE = "none"
    WARN = "warn"
    BACKUP_THEN_DELETE = IdleAction.BACKUP_THEN_DELETE.value
    DELETE = IdleAction.DELETE.value
    POWEROFF = IdleAction.POWEROFF.value


@dataclass(frozen=True)
class PolicyConfig:
    idle_timeout: float = 30 * 60
    human_timeout: float = 2 * 60 * 60
    warn_before: float = 10 * 60
    max_lifetime: float | None = None
    action: Action = Action.POWEROFF


@dataclass(frozen=True)
class History:
    """What the policy remembers between ticks (persisted per boot)."""

    boot_started: float = 0.0
    last_activity: float = 0.0  # last tick with agent, file or lease activity
    last_activity_reason: str = "boot"
    last_human: float | None = None  # last tick a human was connected
    human_since: float | None = None  # start of the current human presence
    held_until: float | None = None  # end of the latest keepalive lease seen


@dataclass(frozen=True)
class Verdict:
    at: float
    condition: Condition
    reasons: tuple[str, ...]  # what holds it up now (activity, leases, people)
    idle_since: float  # start of the quiet the countdown runs on (`at` while busy)
    deadline: float  # when the action runs if nothing happens (moves with `at` while working)
    next_action: Action
    action_at: float
    history: History
    by_lifetime: bool = False  # the deadline is the hard lifetime's
    held_by: str = ""  # the reason of the lease that holds longest
    lifetime_end: float | None = None  # when the hard lifetime ends (None: no hard lifetime)

    @property
    def busy(self) -> bool:
        """Activity or a lease holds it up (a silent person does not: the countdown runs)."""
        return self.condition in (Condition.WORKING, Condition.KEPT_ALIVE) and self.at < self.deadline
