"""`vmgen sync-config`: this machine's Claude Code setup copied to a workspace's agent (and the
pieces the launch uses to do the same before the agent first starts)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ...errors import RemoteCommandFailed
from ..claudesetup import NEVER_COPIED, SyncPlan, plan_sync
from ..handover import missing_commands, ship_claude_setup
from ..ssh import SSHTarget
from .app import err, main, out, running_target, settings


def laptop_plan(home: Path | None = None) -> SyncPlan:
    return plan_sync(home or Path.home(), settings().sync_exclude)


def print_warnings(plan: SyncPlan) -> None:
    for warning in plan.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


def warn_missing_commands(target: SSHTarget, plan: SyncPlan) -> tuple[str, ...]:
    """The MCP servers whose command the workspace lacks, each said once (a check that cannot be
    made is a warning too: the workspace is up whatever happens here)."""
    try:
        missing = missing_commands(target, plan.commands)
    except RemoteCommandFailed as exc:
        err.print(f"[yellow]warning:[/] MCP server commands not checked on the workspace: {escape(str(exc))}")
        return ()
    for server in plan.mcp_servers:
        if server.command in missing:
            err.print(
                f"[yellow]warning:[/] MCP server {escape(server.name)}: `{escape(server.command)}` is not on the "
                "workspace; Claude Code there will list it as failed until it is installed"
            )
    return missing


def describe(plan: SyncPlan, missing: tuple[str, ...] | None) -> list[str]:
    """The plan as lines for --dry-run."""
    lines = [f"files ({len(plan.files)}, {plan.total_bytes} bytes of at most {plan.cap}), into /home/agent/.claude:"]
    for f in plan.files:
        rewrites = f", {f.rewrites} laptop path(s) rewritten" if f.rewrites else ""
        lines.append(f"  {f.path}  ({len(f.content)} bytes{rewrites})")
    if plan.settings is None:
        lines.append("settings.json: none here")
    else:
        keys = ", ".join(sorted(plan.settings)) or "nothing left"
        rewritten = f"; {plan.settings_rewrites} laptop path(s) rewritten" if plan.settings_rewrites else ""
        lines.append(f"settings.json, merged over the agent's: {keys}{rewritten}")
    lines.append(f"MCP servers ({len(plan.mcp_servers)}), into /home/agent/.claude.json:")
    for server in plan.mcp_servers:
        where = server.command or str(server.config.get("url", "remote"))
        if missing is None or not server.command:
            state = ""
        else:
            state = "  MISSING on the workspace" if server.command in missing else "  found on the workspace"
        rewrites = f" ({server.rewrites} laptop path(s) rewritten)" if server.rewrites else ""
        lines.append(f"  {server.name}: {where}{rewrites}{state}")
    if plan.skipped:
        lines.append("not copied:")
        lines += [f"  {skipped.path}: {skipped.reason}" for skipped in plan.skipped]
    lines.append(f"never copied: {', '.join(NEVER_COPIED)}, credentials in env and headers")
    return lines


@main.command(name="sync-config")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Show what would be copied, and change nothing.")
def sync_config(name: str, dry_run: bool) -> None:
    """Copy this machine's Claude Code setup to NAME's agent: ~/.claude's CLAUDE.md, commands,
    agents, skills, output styles, the settings and hooks of settings.json, and the MCP servers of
    ~/.claude.json, laptop paths rewritten; credentials and session state never."""
    plan = laptop_plan()
    target = running_target(name)
    print_warnings(plan)
    if dry_run:
        missing = missing_commands(target, plan.commands)
        for line in describe(plan, missing):
            out.print(line, markup=False, highlight=False)
        return
    if plan.empty:
        err.print("nothing to copy: no CLAUDE.md, commands, agents, skills, output styles, settings or MCP servers")
        return
    ship_claude_setup(target, plan)
    warn_missing_commands(target, plan)
    err.print(
        f"copied to {name}: {len(plan.files)} file(s), "
        f"{'settings' if plan.settings is not None else 'no settings'}, {len(plan.mcp_servers)} MCP server(s); "
        "a Claude Code session already running there picks up settings and MCP servers when it starts again"
    )
