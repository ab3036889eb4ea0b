"""A "server of the user's" for the ssh provider's tests: a real sshd of the test's own (a free
port, its own host key, the test's key authorized, root's login allowed), through which the
Docker SDK and vmgen's `ssh` reach this machine's Docker engine: the same engine, reached over
SSH, as `DOCKER_HOST=ssh://...` reaches a server's.

OpenSSH's client reads the user's config from the passwd home, not $HOME: a test would otherwise
use the real user's ~/.ssh. So the tests put a `ssh` first on PATH that adds `-F` with the test's
own client config (its key and the pinned host key for the server's address), as the user's own
~/.ssh/config does for a real server.

The server's address is this machine's own (eth0), so a workspace's published port is reached
through Docker's NAT back into this machine, where a connection now and then gets no answer at all
(a plain published port, no vmgen: 2 of 300 connects timed out after 10 s at 192.0.2.2, 0 of 400
at 127.0.0.1; every SYN of the stuck connection is dropped, a new one goes through). A user's
laptop reaches a server over a real network; the client config here tries such a connection again
(`ConnectionAttempts`), as a user's own ssh config may."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.polling import wait_until
from tests.ports import free_port
from vmgen.laptop.builder.hostkeys import generate_host_key


def this_machines_address() -> str:
    """An address of this machine other than loopback: workspaces on "the server" are reached at
    the server's address, and a test must be able to tell it from 127.0.0.1."""
    said = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
    found = [word for word in said if "." in word and not word.startswith("127.")]
    assert found, f"no IPv4 address besides loopback on this machine: {said}"
    return found[0]


@dataclass(frozen=True)
class Server:
    address: str
    port: int
    user: str
    folder: Path  # the sshd's files and the client's config
    shim: Path  # a folder with the `ssh` that reads the client config: first on PATH

    @property
    def host(self) -> str:
        """What `--host` and `ssh_host` take."""
        return f"{self.user}@{self.address}:{self.port}"

    def path(self, path: str) -> str:
        return f"{self.shim}{os.pathsep}{path}"


@contextmanager
def ssh_server(folder: Path, authorized: Path | None = None) -> Iterator[Server]:
    """A started sshd on this machine's address; `authorized`: the public key it takes (else a key
    made here, which the client config names)."""
    folder.mkdir(parents=True, exist_ok=True)
    address, user = this_machines_address(), getpass.getuser()
    host_key = generate_host_key()
    (folder / "host_key").write_text(host_key.private_openssh)
    (folder / "host_key").chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
    (folder / "authorized_keys").write_text((authorized or folder / "id.pub").read_text())
    port = free_port(address)
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {folder}/host_key\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {folder}/sshd.pid\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {user}\n"
    )
    (folder / "known_hosts").write_text(f"[{address}]:{port} {host_key.public_openssh}\n")
    (folder / "ssh_config").write_text(
        f"Host {address}\n  IdentityFile {folder}/id\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {folder}/known_hosts\n  GlobalKnownHostsFile /dev/null\n"
        "  ConnectionAttempts 3\n"
    )
    shim = folder / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "ssh").write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {folder}/ssh_config "$@"\n')
    (shim / "ssh").chmod(0o755)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    # Its log to a file: a pipe nobody reads fills after some hundred logins, and sshd, blocked
    # writing to it, stops answering.
    log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - closed when the server stops
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log)

    def answers() -> bool:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None

    try:
        assert wait_until(answers, bool, timeout=20) and proc.poll() is None, (
            folder / "sshd.log"
        ).read_text() or "sshd did not start"
        yield Server(address, port, user, folder, shim)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
