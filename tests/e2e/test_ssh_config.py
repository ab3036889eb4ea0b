"""`ssh vmgen-<name>` and port forwards on one launched docker workspace, every part real: the
generated entry read by the real OpenSSH client with the test's ~/.ssh/config (HOME is the cli
fixture's home; ssh itself finds ~ through the passwd database, hence `-F` and nothing else),
the pinned host key, a server the agent runs on the VM's :3000 answering on this machine."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.polling import eventually
from tests.ports import free_port

from .conftest import make_repo, unique

NAME = unique("sshcfg")
ALIAS = f"vmgen-{NAME}"
# The user's own config, with a `Host *` that would undo the pinning were vmgen's line below it.
USER_CONFIG = b"# my own settings\nHost *\n  User nobody\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"


@pytest.fixture(scope="module")
def launched(cli, tmp_path_factory):
    config = cli.home / ".ssh" / "config"
    config.write_bytes(USER_CONFIG)
    config.chmod(0o600)
    result = cli("launch", str(make_repo(tmp_path_factory.mktemp("repos"), NAME)))
    yield result
    cli("forward", "--stop", check=False)
    cli("destroy", NAME, "--yes", check=False)


def ssh(cli, *command: str) -> subprocess.CompletedProcess[str]:
    """The plain ssh client with the user's config and no other flag."""
    config = cli.home / ".ssh" / "config"
    return subprocess.run(
        ["ssh", "-F", str(config), ALIAS, *command], env=cli.env, capture_output=True, text=True, timeout=60
    )


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/probe.txt", timeout=10) as answer:
        return answer.read().decode()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


def test_ready_prints_the_ssh_and_ide_one_liners(launched) -> None:
    assert f"ssh {ALIAS}" in launched.stderr
    assert f"code --remote ssh-remote+{ALIAS} /home/agent/work/{NAME}" in launched.stderr
    assert f"cursor --remote ssh-remote+{ALIAS} /home/agent/work/{NAME}" in launched.stderr


def test_ssh_vmgen_name_works_with_no_flags_and_the_users_config_kept_but_one_line(cli, launched) -> None:
    reached = ssh(cli, "true")
    assert reached.returncode == 0, reached.stderr
    assert ssh(cli, "id", "-un").stdout.strip() == "agent"
    config = (cli.home / ".ssh" / "config").read_bytes()
    assert config == f"Include {cli.home}/.ssh/vmgen/config\n".encode() + USER_CONFIG
    # The entry pins the workspace's own host key: another key there is refused, whatever `Host *` says.
    known_hosts = cli.home / f".local/state/vmgen/workspaces/{NAME}/known_hosts"
    pinned = known_hosts.read_text()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(cli.home / "other")], check=True)
    known_hosts.write_text(f"{ALIAS} {(cli.home / 'other.pub').read_text()}")
    try:
        mismatch = ssh(cli, "true")
        assert mismatch.returncode == 255 and "Host key verification failed" in mismatch.stderr
    finally:
        known_hosts.write_text(pinned)


def test_info_lists_the_port_a_server_of_the_agent_listens_on(cli, launched) -> None:
    cli.ssh(
        NAME,
        "mkdir -p /tmp/fwd && echo forwarded-from-the-vm > /tmp/fwd/probe.txt && "
        "setsid -f python3 -m http.server 3000 --bind 127.0.0.1 --directory /tmp/fwd >/dev/null 2>&1 < /dev/null",
    )
    eventually(lambda: "3000" in cli("info", NAME).stdout, 30, "the server on :3000 in `vmgen info`")
    info = cli("info", NAME).stdout
    assert f"ssh {ALIAS}" in info and f"ssh-remote+{ALIAS} /home/agent/work/{NAME}" in info
    assert any(line.split()[:2] == ["3000", "127.0.0.1"] for line in info.splitlines())


def test_a_forward_answers_here_until_ctrl_c(cli, launched) -> None:
    local = free_port()
    # SIGINT at its default, as a terminal's Ctrl-C finds it (a background shell hands it down ignored).
    forward = subprocess.Popen(
        ["env", "--default-signal=INT", sys.executable, "-m", "vmgen", "forward", NAME, f"{local}:3000"],
        env=cli.env,
        cwd=cli.home,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert forward.stderr is not None
        for line in forward.stderr:
            seen.append(line)
            if line.startswith("forwarding "):
                break
        assert f"localhost:{local} -> {NAME}:3000" in "".join(seen), "".join(seen)
        assert fetch(local) == "forwarded-from-the-vm\n"
        forward.send_signal(signal.SIGINT)
        seen.append(forward.stderr.read())
        assert forward.wait(timeout=30) == 0, "".join(seen)
    finally:
        forward.kill()
    assert "stopped forwarding" in "".join(seen)
    assert refused(local)


def test_a_background_forward_is_listed_and_stopped_and_a_taken_port_is_one_line(cli, launched) -> None:
    local = free_port()
    started = cli("forward", "-d", NAME, f"{local}:3000")
    assert "in the background" in started.stderr
    assert fetch(local) == "forwarded-from-the-vm\n"
    listed = cli("forward", "--list").stdout
    assert any(line.split()[:3] == [NAME, f"localhost:{local}", "3000"] for line in listed.splitlines()), listed
    taken = cli("forward", NAME, f"{local}:3000", check=False)  # the background one holds it
    assert taken.returncode == 1
    in_use = f"error: local port {local} is in use on this machine; pick another (e.g. `{local + 1}:3000`)"
    assert taken.stderr.strip() == in_use
    stopped = cli("forward", "--stop", NAME)
    assert f"stopped localhost:{local} -> {NAME}:3000" in stopped.stderr
    assert refused(local)
    assert "no forward running" in cli("forward", "--list").stderr


def test_a_workspace_that_deleted_itself_loses_its_entry_at_the_next_list(cli, launched) -> None:
    # What a self-delete leaves on this machine: the record of a workspace that came up, its
    # entry; the engine has no such workspace any more.
    from vmgen.laptop.sshconfig import SshFiles, sync
    from vmgen.laptop.state import SshReach, WorkspaceRecord, WorkspaceState
    from vmgen.laptop.values import SSHEndpoint

    ghost = unique("ghost")
    root = cli.home / ".local/state/vmgen"
    state = WorkspaceState(ghost, root)
    state.create(WorkspaceRecord(ghost, "docker", time.time(), "/src", "claude"), "ssh-ed25519 AAAAC3ghost")
    state.record_reach(SshReach(SSHEndpoint("127.0.0.1", 1, "agent")))
    files = SshFiles.of_home(cli.home)
    sync(files, root)
    assert f"Host vmgen-{ghost}\n" in files.vmgen_config.read_text()
    listing = cli("list")
    assert any(line.split()[:3] == [ghost, "docker", "gone"] for line in listing.stdout.splitlines())
    entries = files.vmgen_config.read_text()
    assert f"vmgen-{ghost}" not in entries and f"Host {ALIAS}\n" in entries
    cli("destroy", ghost, "--yes")


def test_after_stop_and_start_the_entry_follows_the_workspace(cli, launched) -> None:
    cli("stop", NAME)
    started = cli("start", NAME)
    assert f"ssh {ALIAS}" in started.stderr
    row = next(line.split() for line in cli("list").stdout.splitlines() if line.split()[:1] == [NAME])
    port = row[3].rpartition(":")[2]  # docker publishes SSH on a free port at each start
    assert f"  Port {port}\n" in (cli.home / ".ssh/vmgen/config").read_text()
    reached = ssh(cli, "true")
    assert reached.returncode == 0, reached.stderr


def test_destroy_removes_the_entry_and_the_uninstall_gives_the_config_back(cli, launched) -> None:
    local = free_port()
    cli("forward", "-d", NAME, f"{local}:3000")
    destroyed = cli("destroy", NAME, "--yes")
    assert f"stopped its background forward(s) (localhost:{local} -> {NAME}:3000)" in destroyed.stderr
    assert refused(local)
    assert ALIAS not in (cli.home / ".ssh/vmgen/config").read_text()
    gone = ssh(cli, "true")
    assert gone.returncode == 255 and "Could not resolve hostname" in gone.stderr
    cli("ssh-config", "--uninstall")
    assert (cli.home / ".ssh" / "config").read_bytes() == USER_CONFIG
    assert not Path(cli.home / ".ssh" / "vmgen").exists()
