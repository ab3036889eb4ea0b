"""`permission_mode`: declared once, refused outside its words on the laptop and on the VM; the agent's
start command follows it; vmgen's hooks live in Claude Code's managed settings (root's file), with
the policy that keeps the agent from answering its own prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.builder.test_render import files_of, make_spec, render
from vmgen.contract.documents import WatchSettings
from vmgen.contract.enums import PermissionMode
from vmgen.errors import ConfigError, DocumentError, InvalidSpec
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder import check_schema
from vmgen.laptop.config import load_settings
from vmgen.laptop.spec import VmgenInstall, WatchdogTuning, make_spec as make_checked_spec

MANAGED = "/etc/claude-code/managed-settings.json"


def test_a_word_outside_the_modes_is_refused_on_both_sides(tmp_path: Path) -> None:
    none = tmp_path / "none"
    with pytest.raises(ConfigError, match="permission_mode"):
        load_settings({"VMGEN_PERMISSION_MODE": "yolo"}, none, none)
    assert load_settings({"VMGEN_PERMISSION_MODE": "acceptEdits"}, none, none).permission_mode == "acceptEdits"
    with pytest.raises(DocumentError, match="permission_mode"):
        WatchSettings.from_toml('permission_mode = "yolo"\n')
    assert WatchSettings.from_toml('permission_mode = "plan"\n').permission_mode == PermissionMode.PLAN


def test_the_start_command_follows_the_mode() -> None:
    claude = AGENTS["claude"]
    assert claude.start_command() == "claude --dangerously-skip-permissions"
    assert claude.resume_command(PermissionMode.DEFAULT) == "claude --continue --permission-mode default"
    assert claude.start_command(PermissionMode.ACCEPT_EDITS) == "claude --permission-mode acceptEdits"


def test_an_agent_whose_prompts_vmgen_cannot_answer_takes_bypass_only(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="permission_mode 'default' needs"):
        make_checked_spec(
            "https://github.com/me/app",
            name=None,
            agent="codex",
            agent_version="latest",
            size="small",
            region="",
            image="",
            desktop=False,
            configured_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0KjgNlbgsqOgjCm2oFkXzBeX1LM t@l",),
            vmgen=VmgenInstall(version="0.1.0"),
            watchdog=WatchdogTuning(idle_minutes=30, permission_mode=PermissionMode.DEFAULT),
            home=tmp_path,
        )


def test_the_hooks_are_roots_and_the_agent_cannot_allow_itself() -> None:
    spec = make_spec(watchdog=WatchdogTuning(permission_mode=PermissionMode.ACCEPT_EDITS))
    user_data = render(spec)
    check_schema(user_data)
    files = files_of(user_data)
    managed = files[MANAGED]
    assert (managed["owner"], managed["permissions"]) == ("root:root", "0644")
    settings = json.loads(managed["content"])
    assert settings["allowManagedHooksOnly"] is True  # a hook of the agent's would be ignored
    assert settings["allowManagedPermissionRulesOnly"] is True  # so would an allow rule it wrote
    assert settings["permissions"] == {"defaultMode": "acceptEdits", "disableBypassPermissionsMode": "disable"}
    (hook,) = settings["hooks"]["PermissionRequest"][0]["hooks"]
    assert hook["command"] == "/opt/vmgen/bin/python -I -m vmgen.vmside.permission_hook"
    assert "Stop" in settings["hooks"]  # the watchdog's hooks moved along, out of the agent's reach
    assert "hooks" not in json.loads(files["/home/agent/.claude/settings.json"]["content"])
    assert (
        'claude --session-id "$session_id" --permission-mode acceptEdits'
        in files["/usr/local/lib/vmgen/agent-run"]["content"]
    )
    assert 'permission_mode = "acceptEdits"' in files["/etc/vmgen/idlewatch.toml"]["content"]


def test_bypass_has_the_watchdogs_hooks_and_no_permission_hook() -> None:
    files = files_of(render(make_spec()))
    settings = json.loads(files[MANAGED]["content"])
    assert "PermissionRequest" not in settings["hooks"] and "allowManagedHooksOnly" not in settings
    assert (
        'claude --session-id "$session_id" --dangerously-skip-permissions'
        in files["/usr/local/lib/vmgen/agent-run"]["content"]
    )


@pytest.mark.parametrize("agent", sorted(set(AGENTS) - {"claude"}))
def test_another_agents_workspace_has_the_hooks_for_a_further_claude_session(agent: str) -> None:
    """`vmgen session new --agent claude` can start Claude Code there, and the laptop cannot write
    root's files: the watchdog's hooks are in place from the boot, out of the agent's reach."""
    files = files_of(render(make_spec(agent=agent)))
    managed = files[MANAGED]
    assert (managed["owner"], managed["permissions"]) == ("root:root", "0644")
    settings = json.loads(managed["content"])
    assert "Stop" in settings["hooks"] and "PermissionRequest" not in settings["hooks"]  # bypass: its only mode
    assert "/home/agent/.claude.json" not in files  # Claude Code's own files: the session merges them in
