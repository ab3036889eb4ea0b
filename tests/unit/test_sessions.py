"""Several agent sessions: the names `vmgen session new` accepts, and the tmux commands it and
`vmgen connect --session` run, against a real tmux server of the test's own (TMUX_TMPDIR)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmgen.contract.documents import SessionRecord
from vmgen.contract.names import AGENT_SESSION, VmPaths
from vmgen.errors import UsageError
from vmgen.laptop.agent_screen import PaneState, parse_screen, screen_script
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.handover import CredentialsGiven
from vmgen.laptop.sessions import (
    LIST_SCRIPT,
    AgentAvailability,
    attach_argv,
    installed_script,
    new_window_argv,
    parse_installed,
    parse_windows,
    validate_window_name,
)


@pytest.mark.parametrize("name", ["", "a b", "x;y", "rev:1", "a.b", "-" * 41, "é", "$(id)"])
def test_a_bad_session_name_is_one_clear_line(name: str) -> None:
    with pytest.raises(UsageError, match="invalid session name") as caught:
        validate_window_name(name)
    assert "\n" not in str(caught.value)


def test_a_taken_session_name_is_refused() -> None:
    assert validate_window_name("review-2_b", ["claude"]) == "review-2_b"
    with pytest.raises(UsageError, match="a session named 'review' exists already"):
        validate_window_name("review", ["claude", "review"])


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A tmux server of this test's own, with the agent's session running a shell."""
    sockets = tmp_path / "tmux"
    sockets.mkdir()
    env = {**os.environ, "TMUX_TMPDIR": str(sockets)}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", AGENT_SESSION, "sleep 600"], env=env, check=True)
    yield env
    subprocess.run(["tmux", "kill-server"], env=env, check=False)


def windows_of(env: dict[str, str], judged: tuple[SessionRecord, ...] = ()):
    listing = subprocess.run(["bash", "-c", LIST_SCRIPT], env=env, capture_output=True, text=True, check=True)
    return parse_windows(listing.stdout, judged)


def test_a_new_session_runs_the_vms_agent_run_fresh_and_is_listed_with_its_watchdog_state(
    tmp_path: Path, tmux: dict[str, str]
) -> None:
    paths = VmPaths(lib=tmp_path)
    started = tmp_path / "started-with"
    # The VM's agent-run stands in: it records its arguments and runs the "agent" as a child.
    (tmp_path / "agent-run").write_text(f'#!/bin/bash\necho "$@" > {started}\nsleep 600\n')
    (tmp_path / "agent-run").chmod(0o755)
    subprocess.run(new_window_argv("review", paths), env=tmux, check=True)
    before = windows_of(tmux)
    assert [w.name for w in before][1:] == ["review"]
    subprocess.run(["bash", "-c", f"until [ -s {started} ]; do sleep 0.1; done"], timeout=10, check=True)
    assert started.read_text().strip() == "--new"  # a fresh conversation, not the first one's
    pane = subprocess.run(
        ["tmux", "display-message", "-p", "-t", f"{AGENT_SESSION}:=review", "#{pane_pid}"],
        env=tmux,
        capture_output=True,
        text=True,
        check=True,
    )
    agent = subprocess.run(["pgrep", "-P", pane.stdout.strip()], capture_output=True, text=True, check=True)
    judged = (SessionRecord(int(agent.stdout.split()[0]), "working", "turn open"), SessionRecord(1, "waiting"))
    first, review = windows_of(tmux, judged)
    assert (review.name, review.runs, review.state, review.detail) == ("review", "sleep", "working", "turn open")
    assert first.state == "" and first.active and not review.active  # the watchdog judged no agent there


def test_connect_to_a_session_selects_its_window_and_a_missing_one_is_refused(tmux: dict[str, str]) -> None:
    subprocess.run(["tmux", "new-window", "-d", "-t", f"{AGENT_SESSION}:", "-n", "review", "sleep 600"], env=tmux)
    argv = attach_argv("review")
    select = argv[: argv.index(";")]  # what runs before the attach (which needs a terminal)
    subprocess.run(select, env=tmux, check=True)
    assert [w.name for w in windows_of(tmux) if w.active] == ["review"]
    subprocess.run(attach_argv(index=0)[:4], env=tmux, check=True)
    assert [w.index for w in windows_of(tmux) if w.active] == [0]
    missing = attach_argv("nope")
    refused = subprocess.run(missing[: missing.index(";")], env=tmux, capture_output=True, text=True)
    assert refused.returncode != 0 and "can't find window" in refused.stderr
    assert attach_argv() == ["tmux", "new-session", "-A", "-s", AGENT_SESSION]


def test_a_prompt_for_a_missing_session_finds_no_agent(tmux: dict[str, str]) -> None:
    script = screen_script(AGENTS["claude"], 1, window="nope")
    found = subprocess.run(["bash", "-c", script], env=tmux, capture_output=True, text=True, check=True)
    assert parse_screen(found.stdout).state is PaneState.NO_SESSION


def test_a_prompt_for_another_agents_session_looks_in_the_workspaces_tmux_session(tmux: dict[str, str]) -> None:
    """The tmux session is named for the workspace's own agent (claude here); a codex window in
    it is found there, not in a session named codex, which does not exist."""
    runner = VmPaths().program("agent-run")
    pane = f"echo '> ready'; exec -a {runner} sleep 600"  # agent-run's pane, its agent at its prompt
    subprocess.run(["tmux", "new-window", "-d", "-t", f"{AGENT_SESSION}:", "-n", "cx", pane], env=tmux, check=True)
    codex = AGENTS["codex"]
    script = screen_script(codex, 5, window="cx", session=AGENT_SESSION)
    found = subprocess.run(["bash", "-c", script], env=tmux, capture_output=True, text=True, check=True)
    screen = parse_screen(found.stdout)
    assert screen.state is PaneState.RUNNING and "> ready" in screen.text
    script = screen_script(codex, 1, window="cx")  # as it was: the session named for codex
    found = subprocess.run(["bash", "-c", script], env=tmux, capture_output=True, text=True, check=True)
    assert parse_screen(found.stdout).state is PaneState.NO_SESSION


def test_a_listing_without_the_agents_session_is_empty() -> None:
    assert parse_windows("---\n  1     0 systemd\n") == []


def test_a_window_the_agent_named_to_attack_the_users_terminal_is_shown_inert(tmux: dict[str, str]) -> None:
    from rich.console import Console

    from vmgen.laptop.cli.sessions_cmd import sessions_table

    hostile = "\x1b]0;owned\x07[bold red]x[/]"
    subprocess.run(["tmux", "new-window", "-d", "-t", f"{AGENT_SESSION}:", "-n", hostile, "sleep 600"], env=tmux)
    judged = (SessionRecord(1, "waiting", "waiting for the human ([link=http://x]\x1b[2J)" + "y" * 999),)
    windows = windows_of(tmux, judged)
    assert all(c.isprintable() for w in windows for c in w.name + w.runs + w.detail)
    console = Console(width=400, force_terminal=False)
    with console.capture() as captured:
        console.print(sessions_table(windows))
    text = captured.get()
    assert "\x1b" not in text and "[bold red]x[/]" in text  # shown as typed, not as markup
    lines = parse_windows("0\tclaude\t1\tbash\t1\n---\n    2     1 claude\n", judged)
    assert "[link=http://x]" in lines[0].detail and "\x1b" not in lines[0].detail and len(lines[0].detail) <= 120


class FakeSessions:
    """The VM as `vmgen session new` sees it: its windows, what is installed, whether the agent
    has a credential there already (a variable in its env file, or a login), what it was handed
    and the windows made, in the order it all happened."""

    def __init__(
        self,
        listing: str,
        installed: tuple[bool, bool, bool] = (True, True, False),
        credentials_there: bool = False,
    ) -> None:
        self.listing, self.installed, self.credentials_there = listing, installed, credentials_there
        self.made: list[tuple[str, str]] = []
        self.asked: list[str] = []
        self.env: dict[str, str] = {}
        self.first_run: dict[str, dict] = {}
        self.approved = ""
        self.steps: list[str] = []

    def windows(self) -> str:
        return self.listing

    def agent_installed(self, agent) -> AgentAvailability:
        self.asked.append(agent.name)
        return AgentAvailability(*self.installed)

    def add_credentials(self, agent, values: dict[str, str]) -> CredentialsGiven:
        self.steps.append("credentials")
        added = tuple(sorted(set(values) - set(self.env)))
        self.env = {**values, **self.env}
        present = self.credentials_there or any(variable in self.env for variable in agent.credential_variables)
        return CredentialsGiven(added, present)

    def seed_first_run(self, documents: dict[str, dict], claude_api_key: str = "") -> tuple[str, ...]:
        self.steps.append("first-run")
        self.first_run, self.approved = documents, claude_api_key
        return ()

    def new_window(self, window: str, agent: str = "") -> None:
        self.steps.append("window")
        self.made.append((window, agent))


ONE_WINDOW = "0\tclaude\t1\tnode\t1\tclaude\n---\n"


def test_a_session_of_the_workspaces_own_agent_needs_no_look_at_what_is_installed() -> None:
    from vmgen.laptop.cli.sessions_cmd import start_session

    vm = FakeSessions(ONE_WINDOW, installed=(False, False, True))
    assert start_session(vm, "app", "two", AGENTS["claude"], AGENTS["claude"]).name == "claude"
    assert vm.made == [("two", "")] and vm.asked == []
    assert vm.steps == ["window"]  # the launch handed the workspace's own agent what it needs


def test_a_session_of_another_installed_agent_runs_it() -> None:
    from vmgen.laptop.cli.sessions_cmd import start_session

    vm = FakeSessions(ONE_WINDOW, credentials_there=True)
    assert start_session(vm, "app", "cx", AGENTS["codex"], AGENTS["claude"]).name == "codex"
    assert vm.made == [("cx", "codex")]


@pytest.mark.parametrize(
    ("installed", "words"),
    [
        ((False, True, False), "codex is not installed on app (no `codex` on the agent's PATH there)"),
        ((True, False, False), "app was made before sessions of other agents: it starts only claude"),
        ((True, True, True), "app runs claude inside its dev container, where no other agent is installed"),
    ],
)
def test_an_agent_that_cannot_start_there_is_refused_in_one_line_before_anything_starts(
    installed: tuple[bool, bool, bool], words: str
) -> None:
    from vmgen.laptop.cli.sessions_cmd import start_session

    vm = FakeSessions(ONE_WINDOW, installed)
    with pytest.raises(UsageError) as refused:
        start_session(vm, "app", "cx", AGENTS["codex"], AGENTS["claude"])
    assert str(refused.value).startswith(words) and "\n" not in str(refused.value)
    assert vm.made == []


def test_another_agent_is_handed_its_key_and_first_run_files_before_its_window_starts() -> None:
    from vmgen.laptop.builder.render import first_run_documents
    from vmgen.laptop.cli.sessions_cmd import AgentHandover, start_session

    vm = FakeSessions(ONE_WINDOW)
    said: list[str] = []
    handed = AgentHandover({"GEMINI_API_KEY": "test-gemini-key"}, first_run_documents(AGENTS["gemini"], "/w/app"))
    start_session(vm, "app", "gm", AGENTS["gemini"], AGENTS["claude"], handed, say=said.append)
    assert vm.steps == ["credentials", "first-run", "window"] and vm.made == [("gm", "gemini")]
    assert vm.env == {"GEMINI_API_KEY": "test-gemini-key"}
    assert set(vm.first_run) == {".gemini/settings.json", ".gemini/trustedFolders.json"}
    assert vm.first_run[".gemini/trustedFolders.json"] == {"/w/app": "TRUST_FOLDER"}
    assert said == ["handed GEMINI_API_KEY to gemini on app"]  # its name, never its value
    assert vm.approved == ""


def test_claude_in_another_agents_workspace_gets_its_key_approved_as_the_launch_does() -> None:
    from vmgen.laptop.builder.render import first_run_documents
    from vmgen.laptop.cli.sessions_cmd import AgentHandover, start_session

    vm = FakeSessions(ONE_WINDOW.replace("claude", "codex"))
    values = {"ANTHROPIC_API_KEY": "test-anthropic-key", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    handed = AgentHandover(values, first_run_documents(AGENTS["claude"], "/w/app"))
    start_session(vm, "app", "cl", AGENTS["claude"], AGENTS["codex"], handed)
    assert vm.env == values and vm.approved == "test-anthropic-key"
    assert vm.first_run[".claude.json"]["projects"] == {"/w/app": {"hasTrustDialogAccepted": True}}


@pytest.mark.parametrize(
    ("agent", "own", "named"),
    [
        ("codex", "claude", "set OPENAI_API_KEY here"),
        ("claude", "codex", "set ANTHROPIC_API_KEY (or the anthropic_api_key setting) here"),
        ("aider", "claude", "set ANTHROPIC_API_KEY (or the anthropic_api_key setting) or OPENAI_API_KEY here"),
    ],
)
def test_an_agent_with_no_credential_here_or_there_is_refused_in_one_line_and_nothing_starts(
    agent: str, own: str, named: str
) -> None:
    from vmgen.errors import AgentCannotWork
    from vmgen.laptop.cli.sessions_cmd import AgentHandover, start_session

    vm = FakeSessions(ONE_WINDOW)
    # A base URL alone is no credential: not even it is written before the refusal.
    handed = AgentHandover({"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "OPENAI_API_KEY": ""}, {"x.json": {}})
    with pytest.raises(AgentCannotWork) as refused:
        start_session(vm, "app", "other", AGENTS[agent], AGENTS[own], handed)
    line = str(refused.value)
    assert line.startswith(f"{agent} has no credentials on app and this machine has none to hand over: {named}")
    assert line.endswith("no session was started") and "\n" not in line
    assert vm.steps == ["credentials"] and vm.env == {} and vm.made == [] and vm.first_run == {}


def test_an_agent_with_a_credential_on_the_workspace_already_needs_none_from_here() -> None:
    """A key the workspace was handed for its own agent (opencode's ANTHROPIC_API_KEY serves
    aider too), or a login made there by hand: the session starts without one from here."""
    from vmgen.laptop.cli.sessions_cmd import AgentHandover, start_session

    vm = FakeSessions(ONE_WINDOW, credentials_there=True)
    said: list[str] = []
    start_session(vm, "app", "ai", AGENTS["aider"], AGENTS["opencode"], AgentHandover(), say=said.append)
    assert vm.made == [("ai", "aider")] and vm.env == {} and said == []


def test_whether_an_agent_is_installed_is_asked_of_the_path_its_windows_get(tmp_path: Path) -> None:
    """The PATH the agent's tmux server was started with (its service's), not the one of vmgen's
    SSH command; and whether agent-run takes --agent."""
    sockets, bindir, lib = tmp_path / "tmux", tmp_path / "bin", tmp_path / "lib"
    for folder in (sockets, bindir, lib):
        folder.mkdir()
    (bindir / "codex").write_text("#!/bin/sh\n")
    (bindir / "codex").chmod(0o755)
    (lib / "agent-run").write_text('case "$1" in --agent) ;; esac\n')
    env = {**os.environ, "TMUX_TMPDIR": str(sockets), "PATH": f"{bindir}:/usr/bin:/bin"}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", AGENT_SESSION, "sleep 600"], env=env, check=True)
    try:
        ssh_env = {**env, "PATH": os.environ["PATH"]}  # vmgen's command: another PATH
        paths = VmPaths(lib=lib)
        script = installed_script(AGENTS["codex"], paths)
        found = subprocess.run(["bash", "-c", script], env=ssh_env, capture_output=True, text=True, check=True)
        assert parse_installed(found.stdout) == (True, True, False)
        script = installed_script(AGENTS["aider"], paths)
        found = subprocess.run(["bash", "-c", script], env=ssh_env, capture_output=True, text=True, check=True)
        assert parse_installed(found.stdout) == (False, True, False)
        (lib / "agent-run").write_text('case "$1" in --new) ;; esac\n')  # a workspace from before
        found = subprocess.run(["bash", "-c", script], env=ssh_env, capture_output=True, text=True, check=True)
        assert parse_installed(found.stdout).runner_takes_agents is False
        # A dev container workspace's agent-run: its agent runs through devcontainer-exec.
        (lib / "agent-run").write_text(f'case "$1" in --agent) ;; esac\n{lib}/devcontainer-exec claude\n')
        found = subprocess.run(["bash", "-c", script], env=ssh_env, capture_output=True, text=True, check=True)
        assert parse_installed(found.stdout).in_devcontainer is True
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, check=False)


def test_the_listing_names_each_windows_agent(tmux: dict[str, str]) -> None:
    subprocess.run(["tmux", "new-window", "-d", "-t", f"{AGENT_SESSION}:", "-n", "cx", "sleep 600"], env=tmux)
    subprocess.run(["tmux", "set-option", "-w", "-t", f"{AGENT_SESSION}:=cx", "@vmgen-agent", "codex"], env=tmux)
    first, cx = windows_of(tmux)
    assert (first.agent, cx.agent) == ("", "codex")
