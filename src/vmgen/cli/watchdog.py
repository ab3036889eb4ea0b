"""The idle watchdog from the laptop: `keepalive` and `status`."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from ..contract import codec
from ..contract.documents import WatchdogState
from ..vmside import leases
from ..workspace_client import SshWorkspaceClient
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
    """NAME's watchdog: agent state, verdict, idle time, signals, next action."""
    state = SshWorkspaceClient(running_target(name), name).status()
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
    when = verdict.action_at - now
    table.add_row("next action", f"{verdict.next_action} " + (f"in {age_seconds(when)}" if when > 0 else "now"))
    if state.dry_run:
        table.add_row("mode", "dry run: logs only")
    return table
