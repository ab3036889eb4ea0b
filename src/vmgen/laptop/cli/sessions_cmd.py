"""`vmgen session new|list`: further agent sessions of a workspace, each a tmux window of the
agent's session (the picker `vmgen connect` shows when there are several is in picker.py)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import click
from rich.table import Table
from rich.text import Text

from ...contract.documents import SessionRecord
from ...contract.names import VM
from ...errors import AgentCannotWork, StatusUnavailable, UsageError
from ..agent_screen import why_prompts_are_lost
from ..agents import AGENTS, Agent
from ..config import ALIASES
from ..handover import CredentialsGiven, claude_key_to_approve
from ..sessions import AgentAvailability, Window, parse_windows, validate_window_name
from ..spec import resolve_agent
from ..state import WorkspaceState
from ..workspace_client import SshWorkspaceClient
from .app import err, main, out, running_target, settings


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
    wanted = AGENTS[agent] if agent else own
    handed = None
    if wanted.name != own.name:
        from ..builder.render import first_run_documents
        from .launching import agent_env

        repo_dir = (record.repo_dir if record else "") or str(VM.repo_dir(name))
        handed = AgentHandover(agent_env(settings(), wanted.key_variables), first_run_documents(wanted, repo_dir))
    client = SshWorkspaceClient(running_target(name), name)
    chosen = start_session(client, name, window, wanted, own, handed, say=lambda line: err.print(line, markup=False))
    err.print(f"started session {window!r} ({chosen.name}) on {name}: `vmgen connect {name} --session {window}`")
    if prompt:
        problem = why_prompts_are_lost(client.agent_screen(chosen, window=window), chosen, name, window)
        if problem:
            raise AgentCannotWork(f"prompt not sent: {problem}")
        client.type_prompt(prompt, window)
        err.print(f"sent to {window}")


class SessionClient(Protocol):
    def windows(self) -> str: ...

    def agent_installed(self, agent: Agent) -> AgentAvailability: ...

    def add_credentials(self, agent: Agent, values: dict[str, str]) -> CredentialsGiven: ...

    def seed_first_run(self, documents: dict[str, dict[str, Any]], claude_api_key: str = "") -> tuple[str, ...]: ...

    def new_window(self, window: str, agent: str = "") -> None: ...


@dataclass(frozen=True)
class AgentHandover:
    """What a session of another agent than the workspace's own is handed before it starts, as
    the launch hands the workspace's own agent: this machine's values of its key variables (as
    the launch reads them: the settings, else the environment) and its first-run files."""

    values: dict[str, str] = field(default_factory=dict)
    first_run: dict[str, dict[str, Any]] = field(default_factory=dict)


def start_session(
    client: SessionClient,
    name: str,
    window: str,
    agent: Agent,
    own: Agent,
    handed: AgentHandover | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Agent:
    """A window named `window` running `agent` (the workspace's own, `own`, or another one vmgen
    offers that is installed there, handed its credentials and first-run files first); refused,
    before anything starts, when it cannot be."""
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
    hand_over(client, name, agent, handed or AgentHandover(), say)
    client.new_window(window, agent.name)
    return agent


def hand_over(
    client: SessionClient, name: str, agent: Agent, handed: AgentHandover, say: Callable[[str], None]
) -> None:
    """`agent`'s credentials into the env file agent-run loads (the variables the workspace has
    kept as they are), then its first-run files; refused, with nothing changed, when neither this
    machine nor the workspace has a credential for it."""
    given = {variable: value for variable, value in handed.values.items() if value}
    if not any(variable in given for variable in agent.credential_variables):
        given = {}  # a base URL alone is no credential: nothing is written before the refusal
    credentials = client.add_credentials(agent, given)
    if not credentials.present:
        raise AgentCannotWork(no_credentials(agent, name))
    if credentials.added:
        say(f"handed {', '.join(credentials.added)} to {agent.name} on {name}")
    for path in client.seed_first_run(handed.first_run, claude_key_to_approve(agent, given)):
        say(f"warning: ~/{path} on {name} holds no JSON object; left as it is ({agent.name} may ask its questions)")


def no_credentials(agent: Agent, name: str) -> str:
    """One line: which variable (or setting) on this machine would give `agent` its key."""
    named = [
        f"{variable} (or the {ALIASES[variable]} setting)" if variable in ALIASES else variable
        for variable in agent.credential_variables
    ]
    return (
        f"{agent.name} has no credentials on {name} and this machine has none to hand over: "
        f"set {' or '.join(named)} here (or log in to {agent.name} on {name} yourself); no session was started"
    )


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
