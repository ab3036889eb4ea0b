"""The agent's tmux session is named for what it runs, on both sides, and each agent's
recognition and resume reach the VM: the rendered files, the laptop's commands, root's page."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.builder.test_render import files_of, make_spec, render
from vmgen.contract.documents import WatchSettings
from vmgen.contract.names import AGENT_SESSION, VM, VmPaths, agent_session
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.sessions import attach_argv, list_script, new_window_argv
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState
from vmgen.vmside.pageops import _agent_session


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_the_vm_starts_each_agent_in_a_session_of_its_name_and_watches_it_as_declared(name: str) -> None:
    files = files_of(render(make_spec(agent=name, agent_version="1.2.3")))
    starter = files[str(VM.program("agent-session"))]["content"]
    assert f"new-session -d -s {name} " in starter and f"has-session -t {name} " in starter
    watch = WatchSettings.from_toml(files[str(VM.watch_settings)]["content"]).agent_watch
    assert watch == AGENTS[name].watch


def test_an_agent_name_that_is_no_plain_word_names_no_session() -> None:
    assert agent_session("claude") == AGENT_SESSION == "claude"  # every older workspace's too
    with pytest.raises(ValueError):
        agent_session("codex; rm -rf /")


def test_the_laptop_attaches_to_the_session_its_records_agent_runs_in(tmp_path: Path) -> None:
    state = WorkspaceState("app", tmp_path)
    assert state.agent_session == "claude"  # no record: the default agent's
    state.create(WorkspaceRecord("app", "docker", 0.0, "git", "codex"), "ssh-ed25519 AAAA")
    assert state.agent_session == "codex"
    assert attach_argv(session=state.agent_session) == ["tmux", "new-session", "-A", "-s", "codex"]
    assert attach_argv("review", session="codex")[3] == "codex:=review"
    assert new_window_argv("review", session="codex")[4] == "codex:"
    assert "tmux list-windows -t codex " in list_script("codex")


def test_roots_page_types_into_the_session_of_the_workspaces_agent(tmp_path: Path) -> None:
    paths = VmPaths(etc=tmp_path)
    assert _agent_session(paths) == "claude"  # no description yet
    paths.workspace_info.write_text(json.dumps({"agent": "aider"}))
    assert _agent_session(paths) == "aider"
    paths.workspace_info.write_text(json.dumps({"agent": "../x"}))
    assert _agent_session(paths) == "claude"


@pytest.mark.parametrize("rollout, expected", [(True, "resume --last"), (False, "")])
def test_codex_logs_in_with_its_key_and_resumes_only_when_it_has_a_conversation(
    tmp_path: Path, rollout: bool, expected: str
) -> None:
    runner = files_of(render(make_spec(agent="codex", agent_version="1.2.3")))[str(VM.program("agent-run"))]["content"]
    runner = runner.replace("/home/agent", str(tmp_path)).replace("exec bash -l", "exit 0")
    day = tmp_path / ".codex/sessions/2026/12/07"
    day.mkdir(parents=True)
    if rollout:
        (day / "rollout-2026-12-07T15-55-55-x.jsonl").write_text("{}\n")
    (tmp_path / ".config/vmgen").mkdir(parents=True)
    (tmp_path / ".config/vmgen/agent.env").write_text("OPENAI_API_KEY=test-token\n")  # as the CLI delivers it
    (tmp_path / "bin").mkdir()
    # codex as far as agent-run sees it: not logged in; `login --with-api-key` reads the key.
    (tmp_path / "bin/codex").write_text(
        f"""#!/bin/sh
case "$1 $2" in
  "login status") exit 1 ;;
  "login --with-api-key") cat > {tmp_path}/codex-login; exit 0 ;;
esac
echo "$@" > {tmp_path}/codex-args
"""
    )
    (tmp_path / "bin/codex").chmod(0o755)
    (tmp_path / "work/app").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    env.pop("OPENAI_API_KEY", None)
    subprocess.run(["bash", "-c", runner, "agent-run"], env=env, capture_output=True, check=True, timeout=30)
    assert (tmp_path / "codex-login").read_text().strip() == "test-token"
    assert (tmp_path / "codex-args").read_text().strip() == expected


@pytest.mark.parametrize("name", ["gemini", "opencode", "aider"])
def test_an_agent_whose_conversation_is_the_started_mark_starts_fresh_the_first_time(tmp_path: Path, name: str) -> None:
    """Its resume command (`gemini --resume latest`, ...) only once it has started in this home."""
    runner = files_of(render(make_spec(agent=name)))[str(VM.program("agent-run"))]["content"]
    runner = runner.replace("/home/agent", str(tmp_path)).replace("exec bash -l", "exit 0")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / name).write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/args\n')
    (tmp_path / "bin" / name).chmod(0o755)
    (tmp_path / "work/app").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    env.pop("TMUX_PANE", None)
    for _ in range(2):
        subprocess.run(["bash", "-c", runner, "agent-run"], env=env, capture_output=True, check=True, timeout=30)
    first, second = (tmp_path / "args").read_text().splitlines()
    assert first == "" and second == AGENTS[name].resume_command().split(" ", 1)[1]
