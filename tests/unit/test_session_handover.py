"""What `vmgen session new --agent X` hands a further agent before its window starts, through a
real sshd of the test's own (tests/ssh_server.py) with the VM's paths relocated below the test's
folder: X's key joins the env file agent-run loads (over SSH stdin, never in argv, mode 0600, the
workspace's own variables kept), and X's first-run files, the launch's own, are merged into what
the agent's home has."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh_server import Server, ssh_server
from vmgen.contract.names import VmPaths
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder.render import first_run_documents, gemini_first_run
from vmgen.laptop.handover import add_agent_credentials, agent_env_file, merge_first_run
from vmgen.laptop.ssh import SSHTarget
from vmgen.laptop.values import SSHEndpoint

HOSTILE = "test-key 'quoted' $(touch SENTINEL)\nsecond line"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ssh_server(tmp_path_factory.mktemp("sshd")) as started:
        yield started


@pytest.fixture
def target(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SSHTarget:
    """vmgen's ssh to the test's sshd, through a shim that keeps every argv it was given."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {tmp_path}/ssh-argv\nexec {server.shim}/ssh "$@"\n')
    (shim / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return SSHTarget(
        SSHEndpoint(server.address, server.port, server.user),
        server.folder / "known_hosts",
        f"[{server.address}]:{server.port}",
        (server.folder / "id",),
    )


def sourced(env_file: Path, *variables: str) -> dict[str, str]:
    """The variables as agent-run's shell has them after loading the file."""
    script = f"set -a; . {env_file}; set +a; " + "; ".join(f'printf "%s\\0" "${{{v}-UNSET}}"' for v in variables)
    found = subprocess.run(["bash", "-c", script], capture_output=True, cwd=env_file.parent, check=True)
    return dict(zip(variables, found.stdout.decode().split("\0"), strict=False))


def test_another_agents_key_joins_the_env_file_and_the_workspaces_own_stays(target: SSHTarget, tmp_path: Path) -> None:
    paths = VmPaths(home=tmp_path / "home")
    paths.agent_env.parent.mkdir(parents=True)
    # What the launch handed the workspace's own agent (claude): its key and a hostile value.
    paths.agent_env.write_bytes(agent_env_file({"ANTHROPIC_API_KEY": "test-own-key", "ANTHROPIC_BASE_URL": HOSTILE}))
    paths.agent_env.chmod(0o600)
    given = add_agent_credentials(target, AGENTS["codex"], {"OPENAI_API_KEY": "test-codex-key"}, paths)
    assert given.added == ("OPENAI_API_KEY",) and given.present
    have = sourced(paths.agent_env, "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY")
    assert have == {
        "ANTHROPIC_API_KEY": "test-own-key",
        "ANTHROPIC_BASE_URL": HOSTILE,
        "OPENAI_API_KEY": "test-codex-key",
    }
    assert not (paths.agent_env.parent / "SENTINEL").exists()
    assert paths.agent_env.stat().st_mode & 0o777 == 0o600
    # A second session of opencode (ANTHROPIC_API_KEY or OPENAI_API_KEY): the workspace has both;
    # a different value from here changes neither.
    again = add_agent_credentials(target, AGENTS["opencode"], {"ANTHROPIC_API_KEY": "test-other-key"}, paths)
    assert again.added == () and again.present
    assert sourced(paths.agent_env, "ANTHROPIC_API_KEY")["ANTHROPIC_API_KEY"] == "test-own-key"
    # The agent's screen check finds a handed-over key at a line's start, as it does the launch's.
    assert any(line.startswith("OPENAI_API_KEY=") for line in paths.agent_env.read_text().splitlines())
    argv = (tmp_path / "ssh-argv").read_text()
    assert "python3" in argv  # it went through vmgen's ssh
    assert "test-codex-key" not in argv and "test-other-key" not in argv and "test-own-key" not in argv


def test_a_workspace_without_an_env_file_gets_one_of_mode_600(target: SSHTarget, tmp_path: Path) -> None:
    paths = VmPaths(home=tmp_path / "home")
    given = add_agent_credentials(target, AGENTS["gemini"], {"GEMINI_API_KEY": "test-gemini-key"}, paths)
    assert given.added == ("GEMINI_API_KEY",) and given.present
    assert paths.agent_env.stat().st_mode & 0o777 == 0o600
    assert sourced(paths.agent_env, "GEMINI_API_KEY") == {"GEMINI_API_KEY": "test-gemini-key"}
    assert "test-gemini-key" not in (tmp_path / "ssh-argv").read_text()


def test_whether_the_agent_has_a_credential_there_asks_its_variables_and_its_login(
    target: SSHTarget, tmp_path: Path
) -> None:
    paths = VmPaths(home=tmp_path / "home")
    codex = AGENTS["codex"]
    assert not add_agent_credentials(target, codex, {}, paths).present  # no file at all
    paths.agent_env.parent.mkdir(parents=True)
    paths.agent_env.write_bytes(agent_env_file({"ANTHROPIC_API_KEY": "test-own-key"}))
    assert not add_agent_credentials(target, codex, {}, paths).present  # claude's key is not codex's
    assert paths.agent_env.read_bytes() == agent_env_file({"ANTHROPIC_API_KEY": "test-own-key"})  # untouched
    login = paths.home / codex.credential_files[0]
    login.parent.mkdir(parents=True)
    login.write_text('{"OPENAI_API_KEY": "test-login"}')  # codex logged in by hand there
    assert add_agent_credentials(target, codex, {}, paths).present


def test_the_first_run_files_are_the_launchs_merged_into_what_the_home_has(target: SSHTarget, tmp_path: Path) -> None:
    home = tmp_path / "home"
    gemini = home / ".gemini"
    gemini.mkdir(parents=True)
    # The user ran gemini there by hand once: chose another login and a theme. Both stay.
    mine = {"security": {"auth": {"selectedType": "oauth-personal"}}, "ui": {"theme": "Dracula"}}
    dotfiles = tmp_path / "dotfiles-settings.json"
    dotfiles.write_text(json.dumps(mine))
    (gemini / "settings.json").symlink_to(dotfiles)
    documents = first_run_documents(AGENTS["gemini"], "/home/agent/work/app")
    assert documents == gemini_first_run("/home/agent/work/app")
    assert merge_first_run(target, documents, home) == ()
    merged = json.loads(dotfiles.read_text())
    assert merged["security"]["auth"]["selectedType"] == "oauth-personal" and merged["ui"] == {"theme": "Dracula"}
    assert merged["privacy"] == {"usageStatisticsEnabled": False} and merged["general"]["enableAutoUpdate"] is False
    assert (gemini / "settings.json").is_symlink()  # a dotfiles manager's link stays a link
    trusted = gemini / "trustedFolders.json"
    assert json.loads(trusted.read_text()) == {"/home/agent/work/app": "TRUST_FOLDER"}
    assert trusted.stat().st_mode & 0o777 == 0o600


def test_a_first_run_file_that_is_no_json_object_is_left_alone_and_named(target: SSHTarget, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude.json").write_text("not json {")
    kept = merge_first_run(target, first_run_documents(AGENTS["claude"], "/home/agent/work/app"), home)
    assert kept == (".claude.json",)
    assert (home / ".claude.json").read_text() == "not json {"
    assert json.loads((home / ".claude" / "settings.json").read_text())["skipDangerousModePermissionPrompt"] is True
