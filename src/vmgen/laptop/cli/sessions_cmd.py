"""`vmgen session new|list`: further agent sessions of a workspace, each a tmux window of the
agent's session (the picker `vmgen connect` shows when there are several is in picker.py)."""

from __future__ import annotations

import shlex
from typing import Protocol

import click
from rich.table import Table
from rich.text import Text

from ...contract.documents import SessionRecord
from ...errors import AgentCannotWork, StatusUnavailable, UsageError
from ..agent_screen import why_prompts_are_lost
from ..agents import AGENTS, Agent
from ..sessions import AgentAvailability, Window, parse_windows, validate_window_name
from ..spec import resolve_agent
from ..state import WorkspaceState
from ..workspace_client import SshWorkspaceClient
from .app import err, main, out, running_target


@main.group()
def session() -> None:
    """Several agent sessions in one workspace: each a window of the agent's tmux session."""


@session.command(name="new")
@click.argument("name")
@click.option("--name", "window", required=True, help="The session's name: letters, digits, '-', '_'.")
@click.option(
    "--agent",
    type=click.Choice(sorted(AGENTS)),
    help="The agent it runs, one installed on the workspace (default: the workspace's own).",
)
@click.option("--prompt", help="Type this as its first message once the agent is up.")
def new(name: str, window: str, agent: str | None, prompt: str | None) -> None:
    """Start a further agent session on NAME (a fresh conversation, in the repository folder)."""
    validate_window_name(window)
    record = WorkspaceState(name).record()
    own = resolve_agent(record.agent if record else "claude")
    client = SshWorkspaceClient(running_target(name), name)
    chosen = start_session(client, name, window, AGENTS[agent] if agent else own, own)
    err.print(f"started session {window!r} ({chosen.name}) on {name}: `vmgen connect {name} --session {window}`")
    if prompt:
        problem = why_prompts_are_lost(client.agent_screen(chosen, window=window), chosen, name)
        if problem:
            raise AgentCannotWork(f"prompt not sent: {problem}")
        client.type_prompt(prompt, window)
        err.print(f"sent to {window}")


class SessionClient(Protocol):
    def windows(self) -> str: ...

    def agent_installed(self, agent: Agent) -> AgentAvailability: ...

    def new_window(self, window: str, agent: str = "") -> None: ...


def start_session(client: SessionClient, name: str, window: str, agent: Agent, own: Agent) -> Agent:
    """A window named `window` running `agent` (the workspace's own, `own`, or another one vmgen
    offers that is installed there); refused, before anything starts, when it cannot be."""
    windows = parse_windows(client.windows())
    if not windows:
        raise AgentCannotWork(
            f"the agent's tmux session is not running on {name} "
            f"(see `vmgen ssh {name} -- systemctl status vmgen-agent`, or `vmgen start {name}`)"
        )
    validate_window_name(window, [w.name for w in windows])
    if agent.name == own.name:
        client.new_window(window)
        return agent
    installed, runner_takes_agents, in_devcontainer = client.agent_installed(agent)
    if in_devcontainer:
        raise UsageError(
            f"{name} runs {own.name} inside its dev container, where no other agent is installed: "
            f"a session of {agent.name} is refused (without --agent it is {own.name}, inside)"
        )
    if not installed:
        program = shlex.split(agent.start_command())[0]
        raise UsageError(f"{agent.name} is not installed on {name} (no `{program}` on the agent's PATH there)")
    if not runner_takes_agents:
        raise UsageError(
            f"{name} was made before sessions of other agents: it starts only {own.name} "
            f"(a workspace launched or restored with this vmgen can)"
        )
    client.new_window(window, agent.name)
    return agent


@session.command(name="list")
@click.argument("name")
def list_(name: str) -> None:
    """NAME's agent sessions: what each runs and, where the watchdog judged it, its state."""
    out.print(sessions_table(*workspace_windows(name)))


def workspace_windows(name: str) -> tuple[list[Window], bool]:
    """The windows with the watchdog's states; whether the watchdog answered."""
    client = SshWorkspaceClient(running_target(name), name)
    judged: tuple[SessionRecord, ...] = ()
    try:
        judged, answered = client.status().agent.sessions, True
    except StatusUnavailable:
        answered = False
    return parse_windows(client.windows(), judged), answered


def sessions_table(windows: list[Window], answered: bool = True) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("#", "SESSION", "AGENT", "RUNS", "STATE", "DETAIL"):
        table.add_column(column)
    unknown = "-" if answered else "(watchdog unavailable)"
    for window in windows:
        marker = "*" if window.active else ""
        # Text cells: the names are the agent's to choose, and are not rich markup.
        cells = (window.name, window.agent or "-", window.runs, window.state or unknown, window.detail)
        table.add_row(f"{window.index}{marker}", *(Text(cell) for cell in cells))
    return table
