"""The plan of `vmgen sync-config` on a laptop ~/.claude fixture (CLAUDE.md, a command, an agent,
a skill, a hook naming a laptop path, two MCP servers, a symlink to a key outside, a credentials
file, a huge file, a FIFO), and the tar made from it unpacked by the real shell script, GNU tar
and python3 the agent runs, into a home that stands in for the agent's."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from vmgen.laptop.claudesetup import (
    UNPACK_PROGRAM,
    UNPACK_SCRIPT,
    PathRewrite,
    SyncPlan,
    plan_sync,
    setup_tar,
)
from vmgen.laptop.cli.claude_setup import describe

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
CAP = 1024 * 1024


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    claude = home / ".claude"
    for folder in ("commands", "agents", "skills/tidy", "skills/big", "output-styles", "projects/p", "todos"):
        (claude / folder).mkdir(parents=True)
    (home / ".ssh").mkdir()
    (home / ".ssh/id_ed25519").write_text(KEY)
    (claude / "CLAUDE.md").write_text(f"Notes live in {home}/notes and tools in {claude}/tools.\n")
    (claude / "commands/hello.md").write_text("Say hello.\n")
    (claude / "agents/reviewer.md").write_text("---\nname: reviewer\n---\nReview.\n")
    (claude / "skills/tidy/SKILL.md").write_text("---\nname: tidy\n---\nTidy up.\n")
    (claude / "skills/tidy/run.sh").write_text("#!/bin/sh\necho tidy\n")
    (claude / "skills/tidy/run.sh").chmod(0o755)
    (claude / "output-styles/terse.md").write_text("Be terse.\n")
    (claude / "commands/key.md").symlink_to(home / ".ssh/id_ed25519")
    (claude / "commands/same.md").symlink_to(claude / "commands/hello.md")  # inside: copied as a file
    os.mkfifo(claude / "commands/pipe.md")
    with open(claude / "skills/big/blob.bin", "wb") as huge:  # sparse: cheap to make, past the cap
        huge.truncate(CAP + 1)
    (claude / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "test-token"}}')
    (claude / "projects/p/s.jsonl").write_text("{}\n")
    (claude / "todos/t.json").write_text("[]\n")
    hook = {"type": "command", "command": f"{claude}/hooks/log.sh"}
    settings = {
        "hooks": {"PostToolUse": [{"matcher": "*", "hooks": [hook]}]},
        "env": {"ANTHROPIC_API_KEY": "test-key", "GITHUB_TOKEN": "test-token", "MY_SECRET": "x", "EDITOR": "vim"},
        "apiKeyHelper": f"{home}/bin/key-helper",
        "model": "opus",
    }
    (claude / "settings.json").write_text(json.dumps(settings))
    state = {
        "numStartups": 3,
        "mcpServers": {
            "local": {"type": "stdio", "command": f"{home}/bin/mcp-local", "args": ["--root", f"{home}/work"]},
            "missing": {"command": "not-installed-mcp", "env": {"API_TOKEN": "test-token", "LEVEL": "1"}},
            "remote": {"type": "http", "url": "https://mcp.example.com", "headers": {"Authorization": "Bearer x"}},
        },
        "projects": {"/somewhere": {"mcpServers": {"project-only": {"command": "x"}}}},
    }
    (home / ".claude.json").write_text(json.dumps(state))
    return home


def files_of(plan: SyncPlan) -> dict[str, bytes]:
    return {f.path: f.content for f in plan.files}


def test_the_plan_copies_the_setup_and_nothing_else(home: Path) -> None:
    plan = plan_sync(home, cap=CAP)
    assert sorted(files_of(plan)) == [
        "CLAUDE.md",
        "agents/reviewer.md",
        "commands/hello.md",
        "commands/same.md",
        "output-styles/terse.md",
        "skills/tidy/SKILL.md",
        "skills/tidy/run.sh",
    ]
    assert all(b"PRIVATE KEY" not in content and b"test-token" not in content for content in files_of(plan).values())
    reasons = {skipped.path: skipped.reason for skipped in plan.skipped}
    assert reasons["commands/key.md"].startswith("resolves outside ~/.claude")
    assert reasons["commands/pipe.md"] == "not a regular file"
    assert reasons["skills/big/blob.bin"].startswith("over the 1.0 MB cap")
    assert any("skills/big/blob.bin" in warning and "sync_exclude" in warning for warning in plan.warnings)
    assert "not copied, they resolve outside ~/.claude: commands/key.md" in plan.warnings
    assert next(f for f in plan.files if f.path == "skills/tidy/run.sh").executable


def test_laptop_paths_become_the_vms(home: Path) -> None:
    plan = plan_sync(home, cap=CAP)
    claude_md = next(f for f in plan.files if f.path == "CLAUDE.md")
    assert claude_md.content == b"Notes live in /home/agent/notes and tools in /home/agent/.claude/tools.\n"
    assert claude_md.rewrites == 2
    assert plan.settings is not None
    hook = plan.settings["hooks"]["PostToolUse"][0]["hooks"][0]["command"]
    assert hook == "/home/agent/.claude/hooks/log.sh"
    local = next(server for server in plan.mcp_servers if server.name == "local")
    assert local.command == "/home/agent/bin/mcp-local"
    assert local.config["args"] == ["--root", "/home/agent/work"]


def test_a_path_is_rewritten_only_where_it_is_the_whole_prefix() -> None:
    rewrite = PathRewrite("/home/al", "/home/al/.claude")
    assert rewrite.apply("/home/al/x /home/alice/y /home/al.bak /home/al") == (
        "/home/agent/x /home/alice/y /home/al.bak /home/agent",
        2,
    )


def test_credentials_in_settings_and_mcp_servers_stay_behind_with_a_warning(home: Path) -> None:
    plan = plan_sync(home, cap=CAP)
    assert plan.settings is not None
    assert plan.settings["env"] == {"EDITOR": "vim"}
    assert "apiKeyHelper" not in plan.settings and plan.settings["model"] == "opus"
    servers = {server.name: server for server in plan.mcp_servers}
    assert sorted(servers) == ["local", "missing", "remote"]  # a project's own servers are not the user's
    assert servers["missing"].config["env"] == {"LEVEL": "1"}
    assert servers["remote"].config["headers"] == {} and servers["remote"].command == ""
    assert plan.commands == ("/home/agent/bin/mcp-local", "not-installed-mcp")
    said = "\n".join(plan.warnings)
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "MY_SECRET", "apiKeyHelper", "API_TOKEN", "Authorization"):
        assert name in said
    assert "test-token" not in said and "test-key" not in said
    document = json.dumps([plan.settings, [s.config for s in plan.mcp_servers]])
    assert "test-token" not in document and "test-key" not in document and "Bearer" not in document


def test_sync_exclude_and_folders_linked_from_outside(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "dotfiles-agents"
    outside.mkdir()
    (outside / "spy.md").write_text("outside\n")
    claude = home / ".claude"
    (claude / "agents").rename(claude / "agents-old")
    (claude / "agents").symlink_to(outside)
    (claude / "skills/tidy/loop").symlink_to(claude / "skills")
    plan = plan_sync(home, excludes=["skills/big", "*.sh"], cap=CAP)
    reasons = {skipped.path: skipped.reason for skipped in plan.skipped}
    assert reasons["skills/big"] == "sync_exclude 'skills/big'"
    assert reasons["skills/tidy/run.sh"] == "sync_exclude '*.sh'"
    assert reasons["agents"].startswith("resolves outside ~/.claude")
    assert reasons["skills/tidy/loop"] == "a link to a folder already copied"
    assert not any(path.startswith("agents/") for path in files_of(plan))
    assert not any(w.startswith("not copied, past") for w in plan.warnings)  # excluded, not capped


def test_the_tar_holds_only_relative_regular_files_and_folders(home: Path) -> None:
    plan = plan_sync(home, cap=CAP)
    with tarfile.open(fileobj=io.BytesIO(setup_tar(plan)), mode="r:") as archive:
        members = archive.getmembers()
        assert all(m.isreg() or m.isdir() for m in members)
        assert all(not m.name.startswith("/") and ".." not in m.name.split("/") for m in members)
        assert all(m.uid == 0 and m.uname == "" for m in members)
        names = {m.name for m in members if m.isreg()}
        assert names == {f"claude/{f.path}" for f in plan.files} | {"merge.json"}
        merge = archive.extractfile("merge.json")
        assert merge is not None
        assert sorted(json.loads(merge.read())["mcpServers"]) == ["local", "missing", "remote"]


def test_the_agents_script_unpacks_and_merges_keeping_the_vms_own_keys(home: Path, tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    (agent / ".claude/commands").mkdir(parents=True)
    (agent / ".claude/commands/mine.md").write_text("the agent's own\n")
    vm_settings = {"skipDangerousModePermissionPrompt": True, "env": {"DISABLE_AUTOUPDATER": "1"}, "model": "haiku"}
    (agent / ".claude/settings.json").write_text(json.dumps(vm_settings))
    vm_state = {"hasCompletedOnboarding": True, "mcpServers": {"vm-own": {"command": "true"}}}
    (agent / ".claude.json").write_text(json.dumps(vm_state))
    plan = plan_sync(home, cap=CAP)
    env = {"HOME": str(agent), "PATH": os.environ["PATH"]}
    subprocess.run(["sh", "-c", UNPACK_SCRIPT, "sh", UNPACK_PROGRAM], input=setup_tar(plan), env=env, check=True)
    assert (agent / ".claude/commands/hello.md").read_text() == "Say hello.\n"
    assert (agent / ".claude/commands/mine.md").read_text() == "the agent's own\n"
    assert os.access(agent / ".claude/skills/tidy/run.sh", os.X_OK)
    assert not (agent / ".claude/commands/key.md").exists()
    assert not list((agent / ".claude").glob(".vmgen-sync*"))  # the stage is gone
    settings = json.loads((agent / ".claude/settings.json").read_text())
    assert settings["skipDangerousModePermissionPrompt"] is True
    assert settings["env"] == {"DISABLE_AUTOUPDATER": "1", "EDITOR": "vim"}
    assert settings["model"] == "opus" and "hooks" in settings
    state = json.loads((agent / ".claude.json").read_text())
    assert state["hasCompletedOnboarding"] is True
    assert sorted(state["mcpServers"]) == ["local", "missing", "remote", "vm-own"]
    assert oct((agent / ".claude.json").stat().st_mode & 0o777) == "0o600"


def test_the_dry_run_names_files_rewrites_missing_commands_and_what_stays(home: Path) -> None:
    plan = plan_sync(home, cap=CAP)
    text = "\n".join(describe(plan, ("not-installed-mcp",)))
    assert "CLAUDE.md  (" in text and "2 laptop path(s) rewritten" in text
    assert "missing: not-installed-mcp  MISSING on the workspace" in text
    assert "local: /home/agent/bin/mcp-local (2 laptop path(s) rewritten)  found on the workspace" in text
    assert "commands/key.md: resolves outside ~/.claude" in text
    assert "never copied: .credentials.json, projects/" in text


def test_no_claude_setup_is_an_empty_plan(tmp_path: Path) -> None:
    plan = plan_sync(tmp_path)
    assert plan.empty and plan.warnings == () and plan.commands == ()
