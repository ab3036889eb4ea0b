"""The watchdog service loop: every interval, a snapshot, a verdict, and maybe an action.

The tick never waits on the action or on anything the agent runs: at the deadline it starts the
act unit (vmgen-act.service, see actions.py) and goes on ticking, carrying the action's record
in its state; warnings go out from a thread of their own, and to the phone through the notifier
(vmside.notify), which also follows the agent's hook events. A tick that fails is logged in one line
and the next one runs: the service never crash-loops (say, on a disk the agent filled).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Protocol

from ...contract.documents import (
    MAX_SESSION_RECORDS,
    AgentRecord,
    BudgetRecord,
    SessionRecord,
    WatchdogState,
    WatchSettings,
)
from ...contract.enums import PermissionMode
from ...contract.names import AGENT_USER, UNITS, VM, VmPaths
from ...contract.verdict_words import stall_alert, warning
from ..boot import boot_began, boot_id
from ..notify.hooks import HookFollower
from ..notify.policy import budget_notice, stall_notice, warning_notice
from ..notify.ready import provisioned, ready_notice_of
from ..notify.sender import Notifier, notifier_for
from . import budget, ondemand
from .actions import read_record, start_action, system_uptime, warn
from .agent import AgentConfig
from .files import DEFAULT_IGNORE
from .humans import HumansConfig
from .model import Action, AgentSignals, AgentState, Snapshot, Verdict
from .persist import load_history, save, state_of
from .policy import decide
from .settings import policy_of, read_secrets
from .signals import SignalCollector, SignalConfig

log = logging.getLogger("vmgen.idlewatch")

RETRY_BACKOFF = (30, 60, 120, 300, 600)
# While the action runs, its unit is started again this often: a no-op while it is active, and a
# new try should it have ended without taking the VM down.
ACTION_RESTART_SECONDS = 60.0
# Seconds within which every folder past the inotify limit is looked at again: a change in a huge
# tree is seen within this time after the first pass (which remembers each folder).
FILE_CHANGE_WINDOW = 150.0


def collector_for(settings: WatchSettings, paths: VmPaths = VM) -> SignalCollector:
    config = SignalConfig(
        workspace=Path(settings.workspace) if settings.workspace else paths.work,
        agent=AgentConfig(
            user=AGENT_USER,
            watch=settings.agent_watch,
            hook_events=paths.hook_events,
            stall_after=settings.stall_minutes * 60,
        ),
        other_agents=settings.other_agents,
        humans=HumansConfig(agent_user=AGENT_USER, leases_path=paths.leases),
        # Past the inotify limit, every folder is looked at within FILE_CHANGE_WINDOW (or a sixth of
        # the idle timeout, when that is shorter): a change there still holds the VM up in time.
        scan_window_ticks=max(1, int(min(FILE_CHANGE_WINDOW, settings.idle_minutes * 10) // settings.interval_seconds)),
        file_ignore=settings.ignore or DEFAULT_IGNORE,
    )
    return SignalCollector(config)


def agent_record(agent: AgentSignals) -> AgentRecord:
    """The agent's state for the state document, with each session's own (capped in number and
    length: the document is read by the laptop and the page)."""
    sessions = tuple(SessionRecord(pid, state.value, detail[:200]) for pid, state, detail in agent.per_session)
    return AgentRecord(agent.state.value, agent.detail, sessions[:MAX_SESSION_RECORDS])


class Collector(Protocol):
    """What the watchdog reads each tick: a SignalCollector on the VM, a scripted one in tests."""

    def snapshot(self) -> Snapshot: ...


class Watchdog:
    """One instance per service run; `tick()` is the whole behaviour, `run()` just repeats it."""

    def __init__(
        self,
        settings: WatchSettings,
        collector: Collector,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
        paths: VmPaths = VM,
        background: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.policy = policy_of(settings)
        self.collector = collector
        self.dry_run = dry_run
        self.clock = clock
        self.boot = boot_id()
        self.state_path = paths.watchdog_state
        self.history = load_history(self.state_path, self.boot, clock())
        self.last_deadline: float | None = None
        self.warned_for: float | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.last_seen: dict[str, float] = {}
        self.stall_reported = False
        self.background = background  # warnings in a thread of their own (tests: inline)
        self.action_started = False
        self.notifier = notifier  # the phone: sends from threads of its own, never in the tick
        self.boot_began = boot_began()
        self.ready_told = False
        self.allowance = budget.allowance_now(settings, paths)
        self.ledger = budget.load(paths) if self.allowance is not None else None
        self.budget: BudgetRecord | None = None
        self.uptime: Callable[[], float] = system_uptime
        self.spent_at_boot: bool | None = None  # the allowance was spent when this boot began

    def tick(self) -> Verdict:
        # The budget first, on root's clocks alone: whatever the agent does to the snapshot
        # (a tick that fails on it, a busy verdict), a `stop` is started.
        try:
            self._count_budget()
        except Exception as exc:  # noqa: BLE001 - one line; counted again next tick
            log.error("counting the budget failed: %s: %s", type(exc).__name__, str(exc)[:300])
        snapshot = self.collector.snapshot()
        verdict = decide(self.history, snapshot, self.policy)
        self._log_changes(verdict)
        self._remember_sources(snapshot)
        self._report_stall(snapshot)
        self._report_ready()
        self.history = verdict.history
        if verdict.next_action is Action.WARN and self.warned_for != verdict.deadline:
            self._warn(verdict, snapshot)
        elif verdict.next_action not in (Action.NONE, Action.WARN):
            self._act(verdict)
        save(self.state_path, self._state(verdict, snapshot))
        return verdict

    def _state(self, verdict: Verdict, snapshot: Snapshot) -> WatchdogState:
        return state_of(
            self.boot,
            verdict,
            self.policy.action,
            agent_record(snapshot.agent),
            self.last_seen,
            self.dry_run,
            self.failures,
            asdict(self.policy) | {"action": self.policy.action.value},
            acting=read_record(self.paths),
            budget=self.budget,
        )

    def run(self, once: bool = False) -> None:
        log.info(
            "idle watchdog started: idle after %.0f min, action %s%s",
            self.policy.idle_timeout / 60,
            self.policy.action.value,
            " (dry run)" if self.dry_run else "",
        )
        ondemand.block_requests()
        while True:
            started = self.clock()
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - one line, and the next tick
                log.error("tick failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "")
            if once:
                return
            # Every interval, or sooner when a verdict is asked for (`vmgen status`); never more
            # often than MIN_GAP, however often that is.
            if ondemand.wait_for_request(max(1.0, self.settings.interval_seconds - (self.clock() - started))):
                time.sleep(max(0.0, ondemand.MIN_GAP - (self.clock() - started)))

    def _log_changes(self, verdict: Verdict) -> None:
        if self.last_deadline is not None and verdict.deadline > self.last_deadline + 1:
            log.info(
                "idle deadline extended by %.0fs: %s",
                verdict.deadline - self.last_deadline,
                "; ".join(verdict.reasons) or "activity",
            )
        self.last_deadline = verdict.deadline

    def _remember_sources(self, snapshot: Snapshot) -> None:
        wall_now = time.time()
        sources = {
            "agent working": snapshot.agent.state.value == "working",
            "file change": bool(snapshot.files_changed),
            "human": snapshot.humans.present,
            "keepalive": any(lease.until > snapshot.at for lease in snapshot.leases),
        }
        for name, active in sources.items():
            if active:
                self.last_seen[name] = round(wall_now, 1)
            self.last_seen.setdefault(name, 0)
        # A whole turn between two ticks is seen through the agent's hooks (clamped to now when read).
        worked_at = snapshot.agent.worked_at
        if worked_at is not None and worked_at > self.last_seen["agent working"]:
            self.last_seen["agent working"] = round(min(worked_at, wall_now), 1)

    def _report_stall(self, snapshot: Snapshot) -> None:
        """A stalled turn is not activity (the countdown runs), but a human should hear of it once,
        before anything acts on it."""
        stalled = snapshot.agent.state is AgentState.STALLED
        if stalled and not self.stall_reported:
            agent = AgentRecord(snapshot.agent.state.value, snapshot.agent.detail)
            text = stall_alert(self.settings.name, agent, self.settings.stall_minutes)
            log.warning("%s", text)
            if not self.dry_run:
                self._tell(text)
                if self.notifier:
                    self.notifier.send(stall_notice(self.settings.stall_minutes))
        self.stall_reported = stalled

    def _report_ready(self) -> None:
        """Once, when the first boot's provisioning ends (a reboot says nothing)."""
        if not self.notifier or self.ready_told or self.dry_run:
            return
        done = provisioned(self.paths)
        if done is not None:
            self.ready_told = True  # looked for no more
            # Provisioning ended in this boot, not in an earlier one (a reboot or `vmgen start`
            # says nothing). Not "after this service started": the end can come first, when the
            # web phase takes less than the watchdog's own start-up.
            if done >= self.boot_began:
                self.notifier.send(ready_notice_of(self.paths))

    def _warn(self, verdict: Verdict, snapshot: Snapshot) -> None:
        self.warned_for = verdict.deadline
        text = warning(self.settings.name, self._state(verdict, snapshot))
        if self.dry_run:
            log.warning("dry run: would warn: %s", text)
            return
        self._tell(text)
        if self.notifier:
            self.notifier.send(warning_notice(text, verdict.deadline))

    def _tell(self, text: str) -> None:
        """Warn without waiting: a tmux server, a terminal or a webhook never holds the tick."""
        if not self.background:
            warn(self.settings, text, self.paths)
            return
        threading.Thread(target=warn, args=(self.settings, text, self.paths), name="warn", daemon=True).start()

    def _count_budget(self) -> None:
        """Count this boot's uptime into root's ledger; say the crossing once a month, and with
        `stop` start the act unit (which reads the same ledger for its reason)."""
        self.allowance = budget.allowance_now(self.settings, self.paths)  # a grant `vmgen start` handed over
        if self.allowance is None:
            self.budget = None
            return
        if self.ledger is None:
            self.ledger = budget.load(self.paths)
        wall, uptime = time.time(), self.uptime()
        if self.spent_at_boot is None:
            before = self.ledger if self.ledger is not None and self.ledger.boot != self.boot else None
            self.spent_at_boot = before is not None and budget.crossed(before, self.allowance, wall)
        self.ledger = budget.count(self.ledger, self.allowance, self.boot, uptime, wall)
        self.budget = budget.record_of(self.ledger, self.allowance, wall)
        try:
            budget.save(self.ledger, self.paths)
        except OSError as exc:  # counted on in memory; the file catches up at the next tick
            log.error("could not write the budget ledger: %s", exc)
        if not self.budget.crossed:
            return
        if not self.ledger.warned:
            self.ledger = replace(self.ledger, warned=True)
            text = budget.crossing_words(self.settings.name, self.budget)
            if self.dry_run:
                log.warning("dry run: would say: %s", text)
            else:
                self._tell(text)
                if self.notifier:
                    self.notifier.send(budget_notice(self.budget))
            with contextlib.suppress(OSError):
                budget.save(self.ledger, self.paths)
        if not budget.stops_now(self.ledger, self.allowance, wall):
            return
        if self.spent_at_boot and uptime < budget.START_GRACE_SECONDS:
            log.info(
                "budget: spent since before this boot; stopping in %.0fs unless a new share comes",
                budget.START_GRACE_SECONDS - uptime,
            )
            return
        self._start_act("budget stop", "its share of the budget is spent")

    def _act(self, verdict: Verdict) -> None:
        """Start the act unit (at once, never waiting for it); again every minute while it runs."""
        self._start_act(verdict.next_action.value, f"idle since {verdict.at - verdict.idle_since:.0f}s")

    def _start_act(self, what: str, why: str) -> None:
        if self.dry_run:
            log.warning("dry run: would %s now (%s)", what, why)
            return
        if self.clock() < self.retry_at:
            return
        try:
            start_action()
        except Exception as exc:  # noqa: BLE001 - any failure: report, try again later
            delay = RETRY_BACKOFF[min(self.failures, len(RETRY_BACKOFF) - 1)]
            self.failures += 1
            self.retry_at = self.clock() + delay
            log.error("starting the %s failed (%s); trying again in %ds", what, exc, delay)
            self._tell(f"vmgen: starting the {what} failed ({exc}); trying again in {delay}s")
            return
        if not self.action_started:
            log.warning("%s: started %s", what, UNITS.act)
            self.action_started = True
        self.retry_at = self.clock() + ACTION_RESTART_SECONDS


def run(settings: WatchSettings, dry_run: bool = False, once: bool = False, paths: VmPaths = VM) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    notifier = notifier_for(settings.name, settings.notify, read_secrets(paths), paths)
    if notifier and not dry_run:
        by_root = settings.permission_mode != PermissionMode.BYPASS  # the control daemon tells of prompts
        HookFollower(paths.hook_events, notifier, prompts_by_root=by_root).start()
    watchdog = Watchdog(settings, collector_for(settings, paths), dry_run=dry_run, paths=paths, notifier=notifier)
    watchdog.run(once=once)


__all__ = ["Collector", "Watchdog", "collector_for", "run"]
