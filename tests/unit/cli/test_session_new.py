"""`vmgen session new --agent X` from the command line: this machine's key for X (as a launch
reads it) and X's first-run files for the workspace's repository folder reach the workspace
before the window; what is said names the variable, never its value; no key anywhere is one
line and no window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unit.test_sessions import ONE_WINDOW, FakeSessions
from vmgen.cli import main
from vmgen.laptop.cli import sessions_cmd
from vmgen.laptop.state import WorkspaceState


@pytest.fixture
def vm(home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSessions:
    made = FakeSessions(ONE_WINDOW)
    monkeypatch.setattr(sessions_cmd, "running_target", lambda name: object())
    monkeypatch.setattr(sessions_cmd, "SshWorkspaceClient", lambda target, name: made)
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    record = {"name": "app", "provider": "docker", "created_at": 0.0, "source": "x", "agent": "claude"}
    WorkspaceState("app").write("workspace.json", json.dumps(record | {"repo_dir": "/home/agent/work/orig"}))
    return made


def test_the_key_and_first_run_files_reach_the_workspace_and_only_the_variables_name_is_said(
    vm: FakeSessions,
) -> None:
    done = CliRunner().invoke(
        main, ["session", "new", "app", "--name", "gm", "--agent", "gemini"], env={"GEMINI_API_KEY": "test-gem-key"}
    )
    assert done.exit_code == 0, done.output
    assert vm.steps == ["credentials", "first-run", "window"] and vm.made == [("gm", "gemini")]
    assert vm.env == {"GEMINI_API_KEY": "test-gem-key"}
    assert vm.first_run[".gemini/trustedFolders.json"] == {"/home/agent/work/orig": "TRUST_FOLDER"}
    assert "handed GEMINI_API_KEY to gemini on app" in done.output and "test-gem-key" not in done.output


def test_no_key_here_or_there_is_one_line_naming_it_and_no_window(vm: FakeSessions) -> None:
    done = CliRunner().invoke(main, ["session", "new", "app", "--name", "cx", "--agent", "codex"])
    assert done.exit_code == 1 and "Traceback" not in done.output
    (line,) = done.output.strip().splitlines()
    assert "codex has no credentials on app" in line and "set OPENAI_API_KEY here" in line
    assert vm.made == [] and vm.env == {} and vm.first_run == {}
