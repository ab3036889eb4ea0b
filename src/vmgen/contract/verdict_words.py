"""The watchdog's verdict in words, for `vmgen status`, a launch's "ready" line, the workspace page
and the warnings: every sentence derives from one verdict (its condition and the seconds left as
the VM measured them), so no two of them can contradict each other.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .documents import ACTION_WORDS, AgentRecord, VerdictRecord, WatchdogState
from .enums import IdleAction

# What the action does to the workspace, as a warning says it: "will be deleted in 10 min".
ACTION_DONE: dict[str, str] = {
    IdleAction.POWEROFF: "powered off",
    IdleAction.DELETE: "deleted",
    IdleAction.BACKUP_THEN_DELETE: "backed up and deleted",
}
CONDITION_WORDS = {"working": "working", "kept-alive": "kept alive", "human": "person connected", "idle": "idle"}


def in_words(seconds: float) -> str:
    """28 min, 1 h 5 min, 2 h, 40 s."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{max(0, seconds)} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def condition_of(verdict: VerdictRecord) -> str:
    """The verdict's condition; a VM from before conditions were recorded only said busy or not."""
    return verdict.condition or ("working" if verdict.busy else "idle")


def left_of(state: WatchdogState, elapsed: float = 0.0) -> float:
    """Seconds to the deadline now: as the VM measured them at the verdict, less the state's age
    and `elapsed` (seconds since it was read, on the reader's own clock). A VM from before the
    time left was recorded only gives its wall-clock deadline, measured against this clock."""
    if not state.verdict.condition:
        return state.verdict.deadline - time.time()
    return state.verdict.left_seconds - state.age_seconds - elapsed


def verdict_word(state: WatchdogState) -> str:
    """One or two words: "working", "kept alive", "person connected", "idle (agent stalled)"."""
    word = CONDITION_WORDS.get(condition_of(state.verdict), condition_of(state.verdict))
    return f"{word} (agent stalled)" if state.agent.state == "stalled" else word


def what_holds(state: WatchdogState) -> str:
    """What holds the workspace up, or for how long nothing has: "agent working (...)",
    "kept alive for 9 min more (from the laptop)", "1 SSH session connected, silent for 4 min",
    "idle for 4 min"."""
    verdict, agent = state.verdict, state.agent
    condition = condition_of(verdict)
    if condition == "working":
        text = "; ".join(verdict.reasons) or "activity"
    elif condition == "kept-alive":
        text = f"kept alive for {in_words(verdict.held_for_seconds - state.age_seconds)} more"
        text += f" ({verdict.held_by})" if verdict.held_by else ""
    elif condition == "human":
        people = [r for r in verdict.reasons if r.endswith("connected")]
        text = f"{', '.join(people) or 'a person connected'}, silent for {in_words(_idle_for(state))}"
    else:
        text = f"idle for {in_words(_idle_for(state))}"
    return text + _stalled(agent) if condition != "working" else text


def what_happens(state: WatchdogState, elapsed: float = 0.0) -> str:
    """The configured action and when it runs: "backs up and deletes itself in 28 min unless
    something happens", "powers off 30 min after it goes idle", "powers off now"."""
    verdict = state.verdict
    action = verdict.action or str(state.config.get("action", ""))
    words = ACTION_WORDS.get(action, action or "acts")
    left = left_of(state, elapsed)
    if left <= 0:
        text = f"{words} now"
    elif verdict.by_lifetime:
        text = f"{words} in {in_words(left)}: its hard lifetime, which nothing extends"
    elif condition_of(verdict) == "working":
        idle = float(state.config.get("idle_timeout", 0) or 0)
        text = f"{words} once idle for {in_words(idle)}" if idle else f"{words} once idle long enough"
    else:
        text = f"{words} in {in_words(left)} unless something happens"
        if verdict.next_action == "warn":
            text += " (warned)"
    return f"{text} (dry run: it only logs)" if state.dry_run else text


def warning(workspace: str, state: WatchdogState) -> str:
    """What the watchdog tells the people at T-warn (tmux, wall, the page's webhook)."""
    verdict = state.verdict
    done = ACTION_DONE.get(verdict.action, verdict.action)
    when = f"will be {done} in {in_words(max(1.0, left_of(state)))}"
    keep = f"to keep it, run `vmgen keepalive --for 1h` here, or `vmgen keepalive {workspace} --for 1h` on your laptop"
    if verdict.by_lifetime:
        return f"vmgen: workspace {workspace} reaches its hard lifetime and {when}; nothing extends it"
    if condition_of(verdict) == "human":
        return (
            f"vmgen: workspace {workspace} has had a person connected but silent for {in_words(_idle_for(state))}; "
            f"it {when}; {keep}"
        )
    return f"vmgen: workspace {workspace} is idle{_stalled(state.agent)} and {when}; {keep}"


def stall_alert(workspace: str, agent: AgentRecord, stall_minutes: float) -> str:
    """Said once when the agent stalls: it is not activity, so a person should know before the
    idle action runs."""
    return (
        f"vmgen: the agent in workspace {workspace} looks stalled: a turn is open, but no tool process "
        f"runs, no model connection is open and nothing was written for {stall_minutes:g} min ({agent.detail}); "
        "the idle countdown runs"
    )


def _idle_for(state: WatchdogState) -> float:
    return state.verdict.idle_for_seconds + state.age_seconds


def _stalled(agent: AgentRecord) -> str:
    return " (the agent looks stalled)" if agent.state == "stalled" else ""


__all__ = [
    "ACTION_DONE",
    "budget_words",
    "condition_of",
    "in_words",
    "left_of",
    "stall_alert",
    "verdict_word",
    "warning",
    "what_happens",
    "what_holds",
]


def lifetime_words(state: WatchdogState, elapsed: float = 0.0, now: float | None = None) -> str:
    """The hard lifetime: "backs up and deletes itself at 2026-12-10 09:12 UTC, in 71 h 58 min
    (max_lifetime_hours 72, from boot; nothing extends it)", or that there is none; "" from a VM
    that did not say. The time left is the VM's own measure; the clock time is the reader's clock
    (`now`, wall-clock seconds: the laptop's in `vmgen status`, the VM's on the page) plus it."""
    verdict = state.verdict
    if verdict.lifetime_hours is None:
        return ""
    if not verdict.lifetime_hours:
        return "none (max_lifetime_hours = 0): nothing bounds what a busy workspace costs"
    action = str(state.config.get("action", "")) or verdict.action
    words = ACTION_WORDS.get(action, action or "ends")
    bound = f"max_lifetime_hours {verdict.lifetime_hours:g}, from boot; nothing extends it"
    left = verdict.lifetime_left_seconds - state.age_seconds - elapsed
    if left <= 0:
        return f"{words} now ({bound})"
    at = datetime.fromtimestamp((time.time() if now is None else now) + left, UTC)
    return f"{words} at {at:%Y-%m-%d %H:%M} UTC, in {in_words(left)} ({bound})"


def budget_words(state: WatchdogState) -> str:
    """This workspace against its share of the month's budget: "1.20 of 8.40 EUR (0.0120 EUR/h;
    budget_month 20.00); at 8.40 it warns"; "" without a budget."""
    record = state.budget
    if record is None:
        return ""
    currency = f" {record.currency}" if record.currency else ""
    price = f"{record.price_hourly:.4f}{currency}/h"
    about = (
        f"{record.spent:.2f} of {record.allowance:.2f}{currency} this month "
        f"({price}; budget_month {record.budget_month:.2f})"
    )
    if not record.counting:
        return f"{about}; its month is over: nothing counts until a launch, restore or start brings a new share"
    if record.crossed:
        then = "stopping (budget_action = stop)" if record.action == "stop" else "warned (budget_action = warn)"
        return f"{about}; SPENT: {then}"
    return f"{about}; at {record.allowance:.2f} it {'stops' if record.action == 'stop' else 'warns'}"
