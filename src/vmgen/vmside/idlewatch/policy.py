"""The watchdog's decision: a pure function from what it remembers and what it sees now.

Activity is the agent working (its own state, not the mere existence of a process), file
changes in the workspace, and keepalive leases. A connected human keeps the workspace up, but a
silent one only for `human_timeout`. A hard `max_lifetime` ends everything.
"""

from __future__ import annotations

from dataclasses import replace

from .model import Action, AgentState, History, PolicyConfig, Snapshot, Verdict


def activity_reasons(snapshot: Snapshot) -> list[str]:
    reasons: list[str] = []
    agent = snapshot.agent
    if agent.state is AgentState.WORKING:
        reasons.append(f"agent working{f' ({agent.detail})' if agent.detail else ''}")
    if snapshot.files_changed:
        reasons.append(f"{snapshot.files_changed} file change(s) in the workspace")
    reasons.extend(
        f"keepalive for {lease.until - snapshot.at:.0f}s more ({lease.reason})"
        for lease in snapshot.leases
        if lease.until > snapshot.at
    )
    return reasons


def human_reasons(snapshot: Snapshot) -> list[str]:
    h = snapshot.humans
    parts = [(h.ssh_sessions, "SSH session"), (h.tmux_clients, "tmux client"), (h.web_connections, "web connection")]
    return [f"{n} {label}{'s' if n > 1 else ''} connected" for n, label in parts if n]


def decide(history: History, snapshot: Snapshot, config: PolicyConfig) -> Verdict:
    now = snapshot.at
    reasons = activity_reasons(snapshot)
    # The monotonic clock never goes back within a boot; a remembered time in the future can only
    # come from a corrupted state file, and must not postpone the decision.
    last_activity = now if reasons else min(history.last_activity, now)
    last_reason = "; ".join(reasons) if reasons else history.last_activity_reason

    present = snapshot.humans.present
    human_since = (history.human_since if history.human_since is not None else now) if present else None
    last_human = now if present else history.last_human

    if present:
        assert human_since is not None
        idle_since = max(last_activity, human_since)
        deadline = idle_since + config.human_timeout
        reasons += human_reasons(snapshot)
    else:
        idle_since = max(last_activity, last_human if last_human is not None else last_activity)
        deadline = idle_since + config.idle_timeout
    if config.max_lifetime is not None:
        deadline = min(deadline, history.boot_started + config.max_lifetime)

    if now >= deadline:
        action, action_at = config.action, now
    elif now >= deadline - config.warn_before:
        action, action_at = Action.WARN, deadline
    else:
        action, action_at = Action.NONE, deadline

    return Verdict(
        at=now,
        busy=now < deadline and bool(reasons),
        reasons=tuple(reasons),
        idle_since=idle_since,
        deadline=deadline,
        next_action=action,
        action_at=action_at,
        history=replace(
            history,
            last_activity=last_activity,
            last_activity_reason=last_reason,
            last_human=last_human,
            human_since=human_since,
        ),
    )
