"""The watchdog's decision: a pure function from what it remembers and what it sees now.

Activity is the agent working (its own state, not the mere existence of a process) and file
changes in the workspace. A keepalive lease holds the workspace until the lease ends, and the
idle countdown runs from there. A connected person keeps it up, but a silent one only for
`human_timeout`. A hard `max_lifetime` ends everything. The verdict says which of these holds
it up (its `condition`), and every wording of it (status, page, warnings) derives from that.
"""

from __future__ import annotations

from dataclasses import replace

from .model import Action, AgentState, Condition, History, PolicyConfig, Snapshot, Verdict


def activity_reasons(snapshot: Snapshot) -> list[str]:
    reasons: list[str] = []
    agent = snapshot.agent
    if agent.state is AgentState.WORKING:
        reasons.append(f"agent working{f' ({agent.detail})' if agent.detail else ''}")
    if snapshot.files_changed:
        reasons.append(f"{snapshot.files_changed} file change(s) in the workspace")
    return reasons


def lease_reasons(snapshot: Snapshot) -> list[str]:
    return [
        f"keepalive for {lease.until - snapshot.at:.0f}s more ({lease.reason})"
        for lease in snapshot.leases
        if lease.until > snapshot.at
    ]


def human_reasons(snapshot: Snapshot) -> list[str]:
    h = snapshot.humans
    parts = [(h.ssh_sessions, "SSH session"), (h.tmux_clients, "tmux client"), (h.web_connections, "web connection")]
    return [f"{n} {label}{'s' if n > 1 else ''} connected" for n, label in parts if n]


def decide(history: History, snapshot: Snapshot, config: PolicyConfig) -> Verdict:
    now = snapshot.at
    working = activity_reasons(snapshot)
    leases = lease_reasons(snapshot)
    # The monotonic clock never goes back within a boot; a remembered time in the future can only
    # come from a corrupted state file, and must not postpone the decision.
    last_activity = now if working else min(history.last_activity, now)
    last_reason = "; ".join(working + leases) if working or leases else history.last_activity_reason

    # A lease holds until its end, to the second: the quiet starts there, not at the last tick
    # that saw it. One that vanished from the file before its end holds no more.
    live = [lease for lease in snapshot.leases if lease.until > now]
    longest = max(live, key=lambda lease: lease.until, default=None)
    lease_end = longest.until if longest is not None else None
    if lease_end is not None:
        held_until: float | None = max(lease_end, history.held_until or lease_end)
    else:
        held_until = min(history.held_until, now) if history.held_until is not None else None
    quiet_from = max(last_activity, held_until) if held_until is not None else last_activity

    present = snapshot.humans.present
    human_since = (history.human_since if history.human_since is not None else now) if present else None
    last_human = now if present else history.last_human
    if present:
        assert human_since is not None
        idle_since = max(quiet_from, human_since)
        # A person never shortens the countdown: with a human limit below the idle timeout, the
        # idle timeout still holds.
        deadline = idle_since + max(config.human_timeout, config.idle_timeout)
    else:
        idle_since = max(quiet_from, last_human if last_human is not None else quiet_from)
        deadline = idle_since + config.idle_timeout

    by_lifetime = False
    lifetime_end = history.boot_started + config.max_lifetime if config.max_lifetime is not None else None
    if lifetime_end is not None and lifetime_end <= deadline:
        deadline, by_lifetime = lifetime_end, True

    if working:
        condition = Condition.WORKING
    elif lease_end is not None:
        condition = Condition.KEPT_ALIVE
    elif present:
        condition = Condition.HUMAN
    else:
        condition = Condition.IDLE

    if now >= deadline:
        action, action_at = config.action, now
    elif now >= deadline - config.warn_before:
        action, action_at = Action.WARN, deadline
    else:
        action, action_at = Action.NONE, deadline

    return Verdict(
        at=now,
        condition=condition,
        reasons=tuple(working + leases + (human_reasons(snapshot) if present else [])),
        idle_since=min(idle_since, now),
        deadline=deadline,
        next_action=action,
        action_at=action_at,
        by_lifetime=by_lifetime,
        lifetime_end=lifetime_end,
        held_by=longest.reason if longest is not None else "",
        history=replace(
            history,
            last_activity=last_activity,
            last_activity_reason=last_reason,
            last_human=last_human,
            human_since=human_since,
            held_until=held_until,
        ),
    )
