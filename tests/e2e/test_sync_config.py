"""The laptop's Claude Code setup on one launched docker workspace, every part real: the test's
~/.claude (CLAUDE.md, a command, an agent, a skill, a hook naming a laptop path, two MCP servers
in ~/.claude.json, one the VM has and one it lacks, a symlink to the laptop's ssh key, a token in
settings.json) copied by the launch; the real Claude Code on the VM runs the command, `claude mcp
list` connects the server that is there; vmgen's hooks (root's managed settings) keep firing,
even after a `vmgen sync-config` that sets `disableAllHooks` in the agent's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import Rule, Script
from tests.polling import eventually, wait_until

from .conftest import make_repo, unique

NAME = unique("synccfg")
COMMAND_WORDS = "COMMAND-FROM-THE-LAPTOP"
MEMORY_WORDS = "MEMORY-FROM-THE-LAPTOP"
PROMPT = "SYNCED-HOOKS-PROMPT"
SECOND_PROMPT = "SYNCED-SECOND-PROMPT"
USER_HOOK_MARK = "/tmp/vmgen-user-hook-ran"
# A stdio MCP server of the smallest kind: answers initialize, tools/list and anything else.
MCP_SERVER = """#!/usr/bin/env python3
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message:
        continue
    if message.get("method") == "initialize":
        result = {"protocolVersion": message["params"].get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "laptop-echo", "version": "1"}}
    elif message.get("method") == "tools/list":
        result = {"tools": []}
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}), flush=True)
"""
SECOND_WINDOW = (
    f"tmux new-window -d -t claude -n two -c work/{NAME} "
    "'set -a; . ~/.config/vmgen/agent.env; set +a; exec claude --dangerously-skip-permissions'"
)


def laptop_settings(home: Path, **extra: object) -> str:
    hook = {"type": "command", "command": f"sh {home}/.claude/skills/tidy/mark.sh"}
    return json.dumps(
        {
            "hooks": {"UserPromptSubmit": [{"hooks": [hook]}]},
            "env": {"GITHUB_TOKEN": "test-token", "SYNCED_VARIABLE": "from-the-laptop"},
            **extra,
        }
    )


def make_laptop_setup(home: Path) -> None:
    claude = home / ".claude"
    for folder in ("commands", "agents", "skills/tidy", "skills/echo-mcp"):
        (claude / folder).mkdir(parents=True)
    (claude / "CLAUDE.md").write_text(f"{MEMORY_WORDS}: my notes are in {home}/notes.\n")
    (claude / "commands/vmgen-hello.md").write_text(f"---\ndescription: say hello\n---\nSay {COMMAND_WORDS}.\n")
    (claude / "agents/reviewer.md").write_text("---\nname: reviewer\ndescription: reviews\n---\nReview.\n")
    (claude / "skills/tidy/SKILL.md").write_text("---\nname: tidy\ndescription: tidies\n---\nTidy up.\n")
    (claude / "skills/tidy/mark.sh").write_text(f"cat >/dev/null; date >> {USER_HOOK_MARK}\n")
    (claude / "skills/echo-mcp/server.py").write_text(MCP_SERVER)
    (claude / "skills/echo-mcp/server.py").chmod(0o755)
    (claude / "commands/key.md").symlink_to(home / ".ssh/id_ed25519")  # the laptop's real ssh key
    (claude / "settings.json").write_text(laptop_settings(home))
    servers = {
        "laptop-echo": {"type": "stdio", "command": f"{claude}/skills/echo-mcp/server.py", "args": []},
        "not-here": {"type": "stdio", "command": "vmgen-no-such-mcp-server", "args": []},
    }
    (home / ".claude.json").write_text(json.dumps({"mcpServers": servers}))


@pytest.fixture(scope="module")
def launched(cli, model, tmp_path_factory):
    model.script = Script(
        rules=[
            Rule(COMMAND_WORDS, text="Hello from the synced command."),
            Rule(SECOND_PROMPT, text="The second answer."),
            Rule(PROMPT, text="The hooks answer."),
        ]
    )
    make_laptop_setup(cli.home)
    result = cli("launch", str(make_repo(tmp_path_factory.mktemp("repos"), NAME)))
    yield result
    cli("destroy", NAME, "--yes", check=False)


def events(cli) -> list[dict]:
    return [json.loads(line) for line in cli.ssh(NAME, "cat ~/.vmgen/agent-events.jsonl").splitlines()]


def test_the_launch_copied_the_setup_with_paths_rewritten_and_said_what_it_left(cli, launched) -> None:
    assert "GITHUB_TOKEN not copied (it looks like a credential)" in launched.stderr
    assert "MCP server not-here: `vmgen-no-such-mcp-server` is not on the workspace" in launched.stderr
    assert "not copied, they resolve outside ~/.claude: commands/key.md" in launched.stderr
    assert "test-token" not in launched.stderr
    assert cli.ssh(NAME, "cat ~/.claude/CLAUDE.md") == f"{MEMORY_WORDS}: my notes are in /home/agent/notes.\n"
    listed = cli.ssh(NAME, "cd ~/.claude && ls commands agents skills/tidy")
    assert "vmgen-hello.md" in listed and "reviewer.md" in listed and "SKILL.md" in listed
    settings = json.loads(cli.ssh(NAME, "cat ~/.claude/settings.json"))
    hook = settings["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    assert hook == "sh /home/agent/.claude/skills/tidy/mark.sh"
    assert settings["env"]["SYNCED_VARIABLE"] == "from-the-laptop" and "GITHUB_TOKEN" not in settings["env"]
    assert settings["env"]["DISABLE_AUTOUPDATER"] == "1"  # vmgen's own settings stay
    assert settings["skipDangerousModePermissionPrompt"] is True


def test_the_laptops_ssh_key_was_not_shipped(cli, launched) -> None:
    key = (cli.home / ".ssh/id_ed25519").read_text().splitlines()[1]
    assert cli.ssh(NAME, "test -e ~/.claude/commands/key.md || echo absent").strip() == "absent"
    found = cli.ssh(NAME, f"grep -rlF -- {key!r} ~/.claude ~/.claude.json || true")
    assert found.strip() == ""


def test_claude_code_on_the_vm_runs_the_synced_command(cli, launched, model) -> None:
    cli("send", NAME, "/vmgen-hello")
    request = model.wait_for(COMMAND_WORDS, timeout=90)
    assert request.rule == COMMAND_WORDS


def test_claude_mcp_list_connects_the_server_the_vm_has(cli, launched) -> None:
    listed = cli.ssh(NAME, f"cd work/{NAME} && claude mcp list 2>&1", check=False)
    lines = {line.split(":", 1)[0]: line for line in listed.splitlines() if ":" in line}
    assert "laptop-echo" in lines and "Connected" in lines["laptop-echo"], listed
    assert "/home/agent/.claude/skills/echo-mcp/server.py" in lines["laptop-echo"], listed
    assert "not-here" in lines and "Connected" not in lines["not-here"], listed


def test_vmgens_hooks_and_the_users_fire_together(cli, launched, model) -> None:
    before = len(events(cli))
    cli("send", NAME, f"hello, {PROMPT}")
    model.wait_for(PROMPT, timeout=90)
    grown = wait_until(lambda: events(cli), lambda seen: len(seen) > before and seen[-1]["event"] == "Stop", 60)
    assert len(grown) > before and grown[-1]["event"] == "Stop", grown[before:]
    assert cli.ssh(NAME, f"test -s {USER_HOOK_MARK} && echo ran").strip() == "ran"


def test_a_synced_disable_all_hooks_cannot_turn_vmgens_off(cli, launched, model) -> None:
    (cli.home / ".claude/settings.json").write_text(laptop_settings(cli.home, disableAllHooks=True))
    dry = cli("sync-config", NAME, "--dry-run")
    assert "not-here: vmgen-no-such-mcp-server  MISSING on the workspace" in dry.stdout
    assert "laptop-echo: /home/agent/.claude/skills/echo-mcp/server.py" in dry.stdout
    assert "commands/key.md: resolves outside ~/.claude" in dry.stdout
    assert "disableAllHooks" not in cli.ssh(NAME, "cat ~/.claude/settings.json")  # a dry run changes nothing
    synced = cli("sync-config", NAME)
    assert "copied to" in synced.stderr and "test-token" not in synced.stderr + synced.stdout
    assert json.loads(cli.ssh(NAME, "cat ~/.claude/settings.json"))["disableAllHooks"] is True
    marks = cli.ssh(NAME, f"cat {USER_HOOK_MARK}").count("\n")
    sessions = {line.get("session") for line in events(cli)}
    cli.ssh(NAME, SECOND_WINDOW)  # a new Claude Code reads the new settings
    ready = wait_until(lambda: cli.ssh(NAME, "tmux capture-pane -p -t claude:two"), lambda s: "❯" in s, timeout=90)
    assert "❯" in ready, ready
    cli.ssh(NAME, f"tmux send-keys -t claude:two -l 'again, {SECOND_PROMPT}' && tmux send-keys -t claude:two Enter")
    model.wait_for(SECOND_PROMPT, timeout=90)
    eventually(
        lambda: any(e.get("session") not in sessions and e["event"] == "Stop" for e in events(cli)),
        timeout=60,
        what="a Stop event of the new session in the agent-events file",
    )
    # The user's own hook was turned off (the setting took effect), vmgen's were not.
    assert cli.ssh(NAME, f"cat {USER_HOOK_MARK}").count("\n") == marks
