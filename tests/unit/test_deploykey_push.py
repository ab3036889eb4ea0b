"""The deploy key the handover gives the agent, used for real: a git server over SSH (a real sshd on
loopback, as GitHub serves a deploy key: the key admitted for its one repository, git's own
services only, through `git-shell`) and the agent's files as vmgen's handover writes them over
SSH (the key and ~/.ssh/config 0600, the clone's push URL over ssh). `git push` in the clone
arrives; a push to another repository of the same server is refused; another key is not let in.

The server stands in for github.com: the ssh options given on the command line point the config's
`Host github.com` at loopback (ssh keeps the first value of each option) and pin the test server's
host key under the name github.com, since github.com's real keys (checked in test_deploykeys.py)
cannot be served here."""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import time
from pathlib import Path, PurePosixPath

import pytest

from tests.polling import wait_until
from tests.ports import answers, free_port
from vmgen.laptop.builder.hostkeys import generate_host_key
from vmgen.laptop.deploykeys import new_key_pair
from vmgen.laptop.handover import deliver_deploy_key
from vmgen.laptop.ssh import SSHTarget
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState
from vmgen.laptop.values import SSHEndpoint

REPO = "https://github.com/octo/app.git"

# GitHub's side of a deploy key, in small: the key's one repository, git's fetch and push only.
SERVE = """#!/bin/sh
set -eu
root=$1 allowed=$2
case "${SSH_ORIGINAL_COMMAND:-}" in
  "git-receive-pack '$allowed'"|"git-upload-pack '$allowed'") ;;
  *) echo "ERROR: Permission to that repository denied to this deploy key." >&2; exit 1 ;;
esac
exec git-shell -c "${SSH_ORIGINAL_COMMAND%% *} '$root/$allowed'"
"""


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def server(tmp_path: Path):
    """A git server for the deploy key of octo/app.git, and the agent's files vmgen wrote for it."""
    folder = tmp_path / "server"
    repos = folder / "repos" / "octo"
    repos.mkdir(parents=True)
    for name in ("app.git", "other.git"):
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repos / name)], check=True)
    serve = folder / "serve"
    serve.write_text(SERVE)
    serve.chmod(0o755)
    pair = new_key_pair("vmgen:app:test")
    restrictions = "restrict"  # no forwarding, no pty, no agent: the forced command alone
    forced = shlex.join([str(serve), str(folder / "repos"), "octo/app.git"])
    # vmgen's own login (the handover's) and the deploy key, as GitHub would admit it.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
    (folder / "authorized_keys").write_text(
        (folder / "id.pub").read_text() + f'command="{forced}",{restrictions} {pair.public_openssh}\n'
    )
    host_key = generate_host_key()
    (folder / "host_key").write_text(host_key.private_openssh)
    (folder / "host_key").chmod(0o600)
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {folder}/sshd.pid\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {getpass.getuser()}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: answers(port) or proc.poll() is not None, bool, timeout=20) and proc.poll() is None, (
            proc.stderr.read().decode() if proc.stderr else "sshd did not start"
        )
        # The agent's home as the handover leaves it: delivered by vmgen's handover over SSH, into a
        # clone of the repository made over https (the push URL becomes ssh).
        home = tmp_path / "agent"
        clone = home / "work" / "app"
        subprocess.run(["git", "init", "-q", "-b", "main", str(clone)], check=True)
        git("remote", "add", "origin", "https://github.com/octo/app.git", cwd=clone)
        state = WorkspaceState("box", tmp_path / "state")
        state.create(WorkspaceRecord("box", "docker", time.time(), REPO, "claude"), host_key.public_openssh)
        target = SSHTarget.for_workspace(SSHEndpoint("127.0.0.1", port, getpass.getuser()), state, (folder / "id",))
        deliver_deploy_key(target, pair.private_openssh, "git@github.com:octo/app.git", str(clone), PurePosixPath(home))
        known = folder / "known_hosts"
        known.write_text(f"github.com {host_key.public_openssh}\n")
        ssh = shlex.join(
            [
                "ssh",
                "-F",
                str(home / ".ssh" / "config"),
                "-o",
                "HostName=127.0.0.1",
                "-o",
                f"Port={port}",
                "-o",
                f"User={getpass.getuser()}",
                "-o",
                "HostKeyAlias=github.com",
                "-o",
                f"UserKnownHostsFile={known}",
                "-o",
                "BatchMode=yes",
            ]
        )
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | {"GIT_SSH_COMMAND": ssh}
        yield repos, home, env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_handover_leaves_the_key_the_config_and_the_push_url(server) -> None:
    _, home, _ = server
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (home / ".ssh").iterdir()}
    assert modes == {"vmgen_deploy_key": "0o600", "config": "0o600", "vmgen_github_known_hosts": "0o644"}
    clone = home / "work" / "app"
    assert git("remote", "get-url", "--push", "origin", cwd=clone).stdout.strip() == "git@github.com:octo/app.git"
    assert git("remote", "get-url", "origin", cwd=clone).stdout.strip() == REPO  # fetches as cloned


def a_commit(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text("pushed from a workspace\n")
    git("add", "README", cwd=work)
    git("-c", "user.name=agent", "-c", "user.email=agent@vmgen.invalid", "commit", "-qm", "first", cwd=work)
    return work


def test_the_deploy_key_pushes_to_its_repository_and_to_no_other(server, tmp_path: Path) -> None:
    repos, _, env = server
    work = a_commit(tmp_path)
    pushed = git("push", "git@github.com:octo/app.git", "main", cwd=work, env=env)
    assert pushed.returncode == 0, pushed.stderr
    head = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert git("rev-parse", "main", cwd=repos / "app.git").stdout.strip() == head
    refused = git("push", "git@github.com:octo/other.git", "main", cwd=work, env=env)
    assert refused.returncode != 0 and "denied to this deploy key" in refused.stderr
    assert git("rev-parse", "--verify", "-q", "main", cwd=repos / "other.git").returncode != 0


def test_git_push_in_the_clone_goes_over_ssh_with_the_key(server) -> None:
    repos, home, env = server
    clone = home / "work" / "app"
    (clone / "README").write_text("from the agent\n")
    git("add", "README", cwd=clone)
    git("-c", "user.name=agent", "-c", "user.email=agent@vmgen.invalid", "commit", "-qm", "work", cwd=clone)
    pushed = git("push", "origin", "main", cwd=clone, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert git("rev-parse", "main", cwd=repos / "app.git").stdout == git("rev-parse", "HEAD", cwd=clone).stdout


def test_another_key_is_not_let_in(server, tmp_path: Path) -> None:
    repos, home, env = server
    # The agent's key swapped for one the server does not know: IdentitiesOnly offers no other.
    (home / ".ssh" / "vmgen_deploy_key").write_bytes(new_key_pair("stranger").private_openssh)
    refused = git("push", "git@github.com:octo/app.git", "main", cwd=a_commit(tmp_path), env=env)
    assert refused.returncode != 0 and "Permission denied (publickey)" in refused.stderr
    assert git("rev-parse", "--verify", "-q", "main", cwd=repos / "app.git").returncode != 0
