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
from vmgen.laptop.sessions import LIST_SCRIPT, attach_argv, new_window_argv, parse_windows, validate_window_name


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
