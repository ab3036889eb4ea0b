"""The idle watchdog from the laptop: `keepalive` and `status`."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from ..contract import codec
from ..contract.documents import ACTION_WORDS, WatchdogState
from ..vmside import leases
from ..workspace_client import SshWorkspaceClient, StatusUnavailable
from .app import age_seconds, err, main, out, running_target


@main.command()
@click.argument("name")
@click.option("--for", "duration", required=True, help="How long, e.g. 3h, 90m.")
@click.option("--reason", default="from the laptop", help="Shown in the watchdog's status.")
def keepalive(name: str, duration: str, reason: str) -> None:
    """Hold off NAME's idle watchdog for a while."""
    leases.parse_duration(duration)  # a bad duration is a usage error here, not on the VM
    err.print(SshWorkspaceClient(running_target(name), name).keepalive(duration, reason))


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The raw state as JSON.")
def status(name: str, as_json: bool) -> None:
    """NAME's watchdog: agent state, verdict, idle time, signals, and what it will do when."""
    client = SshWorkspaceClient(running_target(name), name)
    try:
        state = client.status(fresh=True)  # a verdict made now, not up to an interval old
    except StatusUnavailable as exc:
        state = client.status()
        err.print(f"[yellow]note:[/] the last regular verdict ({exc})")
    if as_json:
        out.print_json(json.dumps(codec.to_value(state)))
        return
    out.print(format_status(name, state))


def format_status(name: str, state: WatchdogState) -> Table:
    verdict = state.verdict
    table = Table(box=None, show_header=False)
    now = time.time()
    table.add_row("workspace", name)
    table.add_row("agent", state.agent.state + (f" ({state.agent.detail})" if state.agent.detail else ""))
    table.add_row("verdict", "busy" if verdict.busy else "idle")
    table.add_row("idle for", age_seconds(verdict.idle_for_seconds))
    table.add_row("why", "; ".join(verdict.reasons) or "-")
    for source, seen in sorted(state.last_seen.items()):
        table.add_row(f"last {source}", f"{age_seconds(now - seen)} ago" if seen else "never")
    table.add_row("next action", what_happens(state, now))
    if state.acting is not None:  # the idle action or the hard lifetime is under way
        table.add_row("acting", f"{state.acting.step}: {state.acting.detail}")
    if state.dry_run:
        table.add_row("mode", "dry run: logs only")
    return table


def what_happens(state: WatchdogState, now: float) -> str:
    """The configured action and when it runs, in words: "backs up and deletes itself in 28 min
    unless something happens" (a "none" or a "warn" says neither)."""
    verdict = state.verdict
    action = verdict.action or str(state.config.get("action", ""))
    words = ACTION_WORDS.get(action, action or "acts")
    left = verdict.deadline - now
    if left <= 0:
        text = f"{words} now"
    else:
        text = f"{words} in {in_words(left)} unless something happens"
        if verdict.next_action == "warn":
            text += " (warned)"
    return f"{text} (dry run: it only logs)" if state.dry_run else text


def in_words(seconds: float) -> str:
    """28 min, 1 h 5 min, 2 h, 40 s."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
