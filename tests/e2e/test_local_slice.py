"""The local vertical slice, end to end on the docker provider with every part real: the
simulated VM boots from rendered cloud-init, the real Claude Code CLI runs in tmux against the
scripted model API, and the user drives it through the `vmgen` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import eventually

from .conftest import API_KEY, make_repo, unique

NAME = unique("slice")


@pytest.fixture(scope="module")
def launched(cli, model, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("repos"), NAME)
    model.script = Script(
        rules=[
            Rule(
                trigger="HELLO.md",
                tool=ToolUse(
                    "Write",
                    {"file_path": f"/home/agent/work/{NAME}/HELLO.md", "content": "hello from the scripted model\n"},
                ),
                after_tool_text="I created HELLO.md.",
            )
        ]
    )
    cli.env["VMGEN_IDLE_INTERVAL_SECONDS"] = "5"
    result = cli("launch", str(repo))
    yield result
    cli("destroy", NAME, "--yes", check=False)


def agent_pid(cli) -> str:
    return cli.ssh(NAME, "pgrep -u agent -o -f '^claude ' || pgrep -u agent -o claude").strip()


def test_launch_ends_ready_with_how_to_connect(launched) -> None:
    assert "ready" in launched.stderr
    assert f"vmgen connect {NAME}" in launched.stderr


def test_list_shows_the_running_workspace(cli, launched) -> None:
    listing = cli("list").stdout
    row = next(line for line in listing.splitlines() if line.split()[:1] == [NAME])
    assert "docker" in row and "running" in row


def test_a_second_launch_with_the_same_name_is_refused(cli, launched, tmp_path) -> None:
    other = make_repo(tmp_path, NAME)
    result = cli("launch", str(other), check=False)
    assert result.returncode == 2
    assert f"a workspace named {NAME!r} already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli.ssh(NAME, "true") == ""  # the existing one is untouched


def test_ssh_passes_the_exit_code_through(cli, launched) -> None:
    assert cli("ssh", NAME, "--", "exit 3", check=False).returncode == 3


def test_the_host_key_is_pinned(cli, launched) -> None:
    known_hosts = cli.home / ".local/state/vmgen/workspaces" / NAME / "known_hosts"
    pinned = known_hosts.read_text()
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(cli.home / "impostor")], check=True)
    alias = pinned.split()[0]
    known_hosts.write_text(f"{alias} {(cli.home / 'impostor.pub').read_text()}")
    try:
        result = cli("ssh", NAME, "--", "true", check=False)
        assert result.returncode != 0
        assert "Host key verification failed" in result.stderr
    finally:
        known_hosts.write_text(pinned)


def test_the_repository_was_uploaded_respecting_gitignore(cli, launched) -> None:
    files = cli.ssh(NAME, f"cd work/{NAME} && ls -A && git log --oneline | wc -l").split()
    assert {"README.md", ".gitignore", "notes.txt", ".git"} <= set(files)
    assert "secret.txt" not in files
    assert files[-1] == "1"  # the history came along


def test_the_agent_runs_the_real_claude_cli_in_tmux(cli, launched) -> None:
    sessions = cli.ssh(NAME, "tmux list-sessions -F '#{session_name}'").split()
    assert "claude" in sessions
    command = cli.ssh(NAME, f"ps -o args= -p {agent_pid(cli)}")
    assert "claude" in command
    version = cli.ssh(NAME, "claude --version")
    assert "2.1.332" in version


def test_credentials_are_delivered_to_the_agent_only(cli, launched, docker_client) -> None:
    env_file = "/home/agent/.config/vmgen/agent.env"
    assert cli.ssh(NAME, f"stat -c '%a %U' {env_file}").strip() == "600 agent"
    container = docker_client.containers.get(f"vmgen-{NAME}")
    seed = container.exec_run(["cat", "/var/lib/cloud/seed/nocloud/user-data"]).output.decode()
    assert seed.startswith("#cloud-config") and API_KEY not in seed
    assert API_KEY not in json.dumps(container.attrs)  # not in env, labels or command line


def test_send_drives_the_agent_which_writes_the_file(cli, launched, model) -> None:
    cli("send", NAME, "please add a HELLO.md")
    request = model.wait_for("please add a HELLO.md", timeout=60)
    assert request.has_tools  # the agent loop, not a side request
    eventually(
        lambda: cli.ssh(NAME, f"cat work/{NAME}/HELLO.md", check=False) == "hello from the scripted model\n",
        timeout=60,
        what="HELLO.md written by the agent",
    )
    # The transcript Claude Code keeps is there for the watchdog and for resuming.
    transcripts = cli.ssh(NAME, f"ls .claude/projects/-home-agent-work-{NAME}/").split()
    assert any(name.endswith(".jsonl") for name in transcripts)


def test_disconnect_and_reconnect_reach_the_same_session_and_agent(cli, launched, tmp_path) -> None:
    before = agent_pid(cli)
    # A real terminal: `vmgen connect` inside a local tmux session, then the laptop "goes away".
    local = f"vmgen-connect-test-{tmp_path.name}"
    env = " ".join(f"{k}={subprocess.list2cmdline([v])}" for k, v in cli.env.items())
    for _attempt in range(2):
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                local,
                "-x",
                "120",
                "-y",
                "30",
                f"env {env} {sys.executable} -m vmgen connect {NAME}",
            ],
            check=True,
            cwd=cli.home,
        )
        eventually(
            lambda: cli.ssh(NAME, "tmux list-clients -t claude | wc -l").strip() == "1",
            timeout=30,
            what="the attached tmux client",
        )
        subprocess.run(["tmux", "kill-session", "-t", local], check=True)
        eventually(
            lambda: cli.ssh(NAME, "tmux list-clients -t claude | wc -l").strip() == "0",
            timeout=30,
            what="the client to go away",
        )
    assert agent_pid(cli) == before
    assert cli.ssh(NAME, "tmux list-sessions | wc -l").strip() == "1"


def test_keepalive_and_status_from_the_laptop(cli, launched) -> None:
    held = cli("keepalive", NAME, "--for", "2h", "--reason", "long review")
    assert "keepalive until" in held.stderr

    def reasons() -> str:
        state = json.loads(cli("status", NAME, "--json").stdout)
        return " ".join(state["verdict"]["reasons"])

    eventually(lambda: "long review" in reasons(), timeout=90, what="the lease in the watchdog's verdict")
    table = cli("status", NAME).stdout
    assert "keepalive" in table and "next action" in table
    bad = cli("keepalive", NAME, "--for", "soon", check=False)
    assert bad.returncode == 2 and "invalid duration" in bad.stderr


def test_the_watchdog_sees_the_agents_connection_to_its_model(cli, launched, model) -> None:
    # Root in the simulated VM may read the agent's sockets as root on a real VM does
    # (CAP_SYS_PTRACE): a turn waiting on a slow model is work, seen through that connection.
    model.script = Script(rules=[Rule(trigger="THINK SLOWLY", text="Thought it through.", delay=60)])
    cli("send", NAME, "THINK SLOWLY about it")
    model.wait_for("THINK SLOWLY", timeout=60)

    def agent() -> dict:
        return json.loads(cli("status", NAME, "--json").stdout)["agent"]

    eventually(lambda: "model connection" in agent()["detail"], timeout=50, what="the model connection in the verdict")
    assert agent()["state"] == "working"


def test_open_without_a_domain_tunnels_the_workspace_page(cli, launched) -> None:
    opened = subprocess.Popen(
        [sys.executable, "-m", "vmgen", "open", NAME, "--no-browser"],
        env=cli.env,
        cwd=cli.home,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert opened.stderr is not None
        line = opened.stderr.readline()  # printed once the tunnel is started
        url = line.split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        import urllib.request

        def page() -> str:
            try:
                with urllib.request.urlopen(url + "api/state", timeout=5) as response:
                    return response.read().decode()
            except OSError:
                return ""

        eventually(
            lambda: json.loads(page() or "{}").get("workspace") == NAME,
            timeout=30,
            what="the workspace page through the SSH tunnel",
        )
    finally:
        opened.terminate()
        opened.wait(timeout=10)
