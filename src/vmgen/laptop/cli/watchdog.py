"""The idle watchdog from the laptop: `keepalive` and `status`."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from ...contract import codec
from ...contract.documents import WatchdogState, parse_duration
from ...contract.verdict_words import budget_words, lifetime_words, verdict_word, what_happens, what_holds
from ...errors import StatusUnavailable
from ..state import WorkspaceState
from ..workspace_client import SshWorkspaceClient
from .app import age_seconds, err, main, out, running_target


@main.command()
@click.argument("name")
@click.option("--for", "duration", required=True, help="How long, e.g. 3h, 90m.")
@click.option("--reason", default="from the laptop", help="Shown in the watchdog's status.")
def keepalive(name: str, duration: str, reason: str) -> None:
    """Hold off NAME's idle watchdog for a while."""
    parse_duration(duration)  # a bad duration is a usage error here, not on the VM
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
    record = WorkspaceState(name).record()
    if record is not None and record.host:  # with a domain: each hostname's certificate
        from .web import print_certificates

        print_certificates(name, client, out)


def format_status(name: str, state: WatchdogState, elapsed: float = 0.0, now: float | None = None) -> Table:
    """Every row from the one verdict, with times as the VM measured them: the laptop's clock is
    never compared with the VM's. `elapsed`: seconds since the state was read; `now`: this
    machine's wall clock (the hard lifetime's end is said as a time on it)."""
    verdict = state.verdict
    table = Table(box=None, show_header=False)
    table.add_row("workspace", name)
    # What the VM says is text, never markup: a lease's reason or the agent's detail may hold "[".
    agent = state.agent.state + (f" ({state.agent.detail})" if state.agent.detail else "")
    table.add_row("agent", escape(agent))
    table.add_row("verdict", escape(verdict_word(state)))
    table.add_row("now", escape(what_holds(state)))
    table.add_row("why", escape("; ".join(verdict.reasons) or "-"))
    for source, seen in sorted(state.last_seen.items()):
        ago = state.updated_at - seen + state.age_seconds + elapsed  # both times on the VM's clock
        table.add_row(f"last {source}", f"{age_seconds(ago)} ago" if seen else "never")
    table.add_row("next action", escape(what_happens(state, elapsed)))
    if lifetime := lifetime_words(state, elapsed, now):
        table.add_row("hard lifetime", escape(lifetime))
    if budget := budget_words(state):
        table.add_row("budget", escape(budget))
    if state.acting is not None:  # the idle action or the hard lifetime is under way
        table.add_row("acting", escape(f"{state.acting.step}: {state.acting.detail}"))
    if state.dry_run:
        table.add_row("mode", "dry run: logs only")
    return table
