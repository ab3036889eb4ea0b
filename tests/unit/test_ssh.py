"""Talking to a workspace over the real OpenSSH client, against a real sshd on loopback whose host
key vmgen generated (as it does for every workspace): the key is pinned from the first
connection, argv arrives verbatim, file contents never travel in an argv, exit codes pass."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.ports import answers, free_port
from vmgen.errors import BootFailed, RemoteCommandFailed
from vmgen.laptop.builder.hostkeys import generate_host_key
from vmgen.laptop.providers.base import SSHEndpoint
from vmgen.laptop.readiness import failure_report, relevant_tail, wait_for_ssh
from vmgen.laptop.ssh import SSHTarget, remote, run, stream, write_file
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a free loopback port, for this user, with a vmgen-generated host key."""
    folder = tmp_path_factory.mktemp("sshd")
    host_key = generate_host_key()
    (folder / "host_key").write_text(host_key.private_openssh)
    (folder / "host_key").chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
    (folder / "authorized_keys").write_text((folder / "id.pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {folder}/sshd.pid\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {getpass.getuser()}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    assert wait_until(lambda: answers(port) or proc.poll() is not None, bool, timeout=20) and proc.poll() is None, (
        proc.stderr.read().decode() if proc.stderr else "sshd did not start"
    )
    yield port, host_key, folder / "id"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def target(sshd, tmp_path) -> SSHTarget:
    port, host_key, identity = sshd
    state = WorkspaceState("box", tmp_path)
    state.create(WorkspaceRecord("box", "docker", time.time(), "/src", "claude"), host_key.public_openssh)
    return SSHTarget.for_workspace(SSHEndpoint("127.0.0.1", port, getpass.getuser()), state, (identity,))


def test_argv_arrives_verbatim_and_exit_codes_pass(target: SSHTarget) -> None:
    words = ["a b", "it's", '"q"', "$(touch /tmp/vmgen-ssh-sentinel)", "*", ""]
    out = run(target, ["printf", "[%s]", *words]).stdout.decode()
    assert out == "".join(f"[{w}]" for w in words)
    assert not Path("/tmp/vmgen-ssh-sentinel").exists()
    assert run(target, ["sh", "-c", "exit 7"], check=False).returncode == 7
    with pytest.raises(RemoteCommandFailed, match=r"\(exit 3\): broke here"):
        run(target, ["sh", "-c", "echo broke here >&2; exit 3"])
    assert remote(["echo", "a b"]) == "echo 'a b'"


def test_a_file_is_written_from_stdin_never_through_an_argv(target: SSHTarget, tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "agent.env"
    secret = b"ANTHROPIC_API_KEY='test-key-not-real'\n"
    write_file(target, str(dest), secret)
    assert dest.read_bytes() == secret and oct(dest.stat().st_mode & 0o777) == "0o600"
    assert not dest.with_name("agent.env.tmp").exists()
    write_file(target, str(dest), b"public\n", mode="644")
    assert oct(dest.stat().st_mode & 0o777) == "0o644"


def test_only_the_pinned_host_key_is_accepted(target: SSHTarget) -> None:
    target.known_hosts.write_text(f"{target.host_alias} {generate_host_key().public_openssh}\n")  # another key
    result = run(target, ["true"], check=False)
    assert result.returncode == 255 and b"Host key verification failed" in result.stderr


def test_a_stream_delivers_lines_as_they_come(target: SSHTarget) -> None:
    process = stream(target, ["sh", "-c", "echo first; read never"], stdin=subprocess.PIPE)  # type: ignore[arg-type]
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == b"first\n"  # while the command still runs
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_waiting_for_ssh_retries_until_the_workspace_has_an_address(target: SSHTarget) -> None:
    answers_after = iter([None, None, target])
    messages: list[str] = []
    assert wait_for_ssh(lambda: next(answers_after, target), 30, messages.append) == target
    assert messages.count("waiting for SSH") == 2
    closed = SSHTarget(SSHEndpoint("127.0.0.1", free_port(), "agent"), target.known_hosts, target.host_alias)
    with pytest.raises(BootFailed, match="SSH did not answer within 2s"):
        wait_for_ssh(lambda: closed, 2, messages.append)


def test_an_ssh_that_hangs_on_a_loaded_workspace_is_waited_for_again(
    target: SSHTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmgen.laptop.readiness as readiness

    calls: list[int] = []

    def hangs_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # sshd took the connection and said nothing for 15 s
            raise subprocess.TimeoutExpired(["ssh"], 15)
        return run(*args, **kwargs)

    monkeypatch.setattr(readiness, "run", hangs_once)
    messages: list[str] = []
    assert wait_for_ssh(lambda: target, 30, messages.append) == target
    assert len(calls) == 2 and messages == ["waiting for SSH"]


def test_no_attempt_to_reach_ssh_is_given_longer_than_the_wait_has_left(
    target: SSHTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmgen.laptop.readiness as readiness

    given: list[float] = []

    def hangs(*args, timeout: float, **kwargs):  # as an sshd that took the connection and says nothing
        given.append(timeout)
        time.sleep(timeout)
        raise subprocess.TimeoutExpired(["ssh"], timeout)

    monkeypatch.setattr(readiness, "run", hangs)
    with pytest.raises(BootFailed, match="SSH did not answer within 3s"):
        wait_for_ssh(lambda: target, 3, lambda message: None)
    assert given and all(seconds <= 3 for seconds in given), given


def test_the_failure_tail_skips_cloud_inits_closing_banner() -> None:
    log = [f"line {i}" for i in range(30)] + ["Cloud-init v. 22.4 finished at Mon, 1 Jan", "ci-info: | key |"]
    assert relevant_tail(log, 3) == ["line 27", "line 28", "line 29"]


def test_a_failed_provisioning_shows_its_phase_and_that_phases_own_lines_first() -> None:
    # A clone that failed on DNS, after the firewall phase's chatter.
    log = [
        "vmgen-skip 1.0 packages x",
        "vmgen-phase 2.0 firewall",
        "Default incoming policy changed to 'deny'",
        "Rules updated",
        "Firewall is active and enabled on system startup",
        "vmgen-phase 3.0 repo",
        "Cloning into '/home/agent/work/app'...",
        "fatal: unable to access 'https://nohost.invalid/me/app.git/': Could not resolve host: nohost.invalid",
    ]
    report = failure_report(log)
    assert report.splitlines()[0] == "failed in the provisioning phase 'repo':"
    assert "Could not resolve host" in report.splitlines()[2]
    assert "Rules updated" not in report and "Firewall" not in report
    assert failure_report([]).startswith("(nothing in the provisioning log")


def test_a_tunnel_reaches_a_unix_socket_on_the_workspace(target: SSHTarget, tmp_path: Path) -> None:
    """`vmgen open` without a domain: the page listens on a unix socket, forwarded over SSH."""
    from vmgen.laptop.ssh import tunnel_command

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "page.sock"))
    listener.listen()
    local = free_port()
    with subprocess.Popen(tunnel_command(target, local, str(tmp_path / "page.sock"))) as tunnel:
        try:
            assert wait_until(lambda: answers(local), bool, timeout=20)
            with socket.create_connection(("127.0.0.1", local), timeout=10) as client:
                client.sendall(b"hello page")
                listener.settimeout(10)
                received: list[bytes] = []
                while not received or received[-1] == b"":  # the readiness probe's connection comes first
                    conn, _ = listener.accept()
                    with conn:
                        received.append(conn.recv(100))
                assert received[-1] == b"hello page"
        finally:
            tunnel.terminate()
            listener.close()


def test_without_the_openssh_client_a_workspace_command_is_one_line(tmp_path, monkeypatch):
    from vmgen.errors import UsageError
    from vmgen.laptop.ssh import SSHTarget, run
    from vmgen.laptop.values import SSHEndpoint

    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh on it
    target = SSHTarget(SSHEndpoint("192.0.2.1", 22), tmp_path / "known_hosts", "vmgen-x")
    with pytest.raises(UsageError, match="OpenSSH client"):
        run(target, ["true"])
