"""Talking to a workspace through the real OpenSSH client, with its host key pinned.

The host key was generated on the laptop and handed to the VM in user-data, so even the first
connection is verified (`StrictHostKeyChecking=yes` against the workspace's own known_hosts).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import RemoteCommandFailed, UsageError
from .state import WorkspaceState
from .values import SSHEndpoint


@dataclass(frozen=True)
class SSHTarget:
    endpoint: SSHEndpoint
    known_hosts: Path
    host_alias: str
    identities: tuple[Path, ...] = ()

    @classmethod
    def for_workspace(cls, endpoint: SSHEndpoint, state: WorkspaceState, identities: Sequence[Path] = ()) -> SSHTarget:
        return cls(endpoint, state.known_hosts, state.host_alias, tuple(identities))

    def base_command(self, *, tty: bool = False, connect_timeout: int = 10) -> list[str]:
        if shutil.which("ssh") is None:  # else a FileNotFoundError far from here, as a traceback
            raise UsageError("the OpenSSH client (`ssh`) is not on PATH: vmgen reaches workspaces with it")
        command = [
            "ssh",
            "-p",
            str(self.endpoint.port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            f"HostKeyAlias={self.host_alias}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "UpdateHostKeys=no",
            "-o",
            "BatchMode=yes" if not tty else "BatchMode=no",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "LogLevel=ERROR",
        ]
        for identity in self.identities:
            command += ["-i", str(identity)]
        command.append("-t" if tty else "-T")
        command.append(f"{self.endpoint.user}@{self.endpoint.host}")
        return command


def remote(argv: Sequence[str]) -> str:
    """One remote shell command line from an argv; every word quoted."""
    return shlex.join(argv)


def run(
    target: SSHTarget,
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv on the workspace and capture its output."""
    result = subprocess.run(
        [*target.base_command(), remote(argv)],
        input=input,
        check=False,  # checked below, with the remote error in the message
        capture_output=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise RemoteCommandFailed(
            f"`{remote(argv)}` failed on the workspace (exit {result.returncode})"
            + (f": {detail[-1]}" if detail else ""),
            result.returncode,
        )
    return result


def write_file(target: SSHTarget, path: str, content: bytes, mode: str = "600") -> None:
    """Write a file on the workspace from stdin, so its content never appears in any argv."""
    script = (
        f'umask 077 && mkdir -p "$(dirname {shlex.quote(path)})" && '
        f"cat > {shlex.quote(path)}.tmp && chmod {mode} {shlex.quote(path)}.tmp && "
        f"mv {shlex.quote(path)}.tmp {shlex.quote(path)}"
    )
    run(target, ["sh", "-c", script], input=content)


def write_file_while_booting(
    target: SSHTarget, path: str, content: bytes, mode: str = "600", attempts: int = 30
) -> None:
    """write_file early in a boot, when cloud-init may restart sshd under us: a lost connection
    is tried again (the write is atomic, so a retry is harmless)."""
    for attempt in range(attempts):
        try:
            write_file(target, path, content, mode=mode)
            return
        except RemoteCommandFailed as exc:
            if not exc.connection_lost or attempt == attempts - 1:
                raise
            time.sleep(1)  # sshd comes back by itself; nothing to wait on from here


def stream(target: SSHTarget, argv: Sequence[str], stdin: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """Start argv on the workspace with its stdout readable as it comes."""
    return subprocess.Popen(
        [*target.base_command(), remote(argv)],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def tunnel_command(target: SSHTarget, local_port: int, remote: int | str) -> list[str]:
    """ssh forwarding 127.0.0.1:local_port here to 127.0.0.1:<remote> (a port) or to the unix
    socket at <remote> (a path) on the workspace."""
    command = target.base_command()
    destination = command.pop()
    return [
        *command,
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        f"127.0.0.1:{local_port}:{remote}" if isinstance(remote, str) else f"127.0.0.1:{local_port}:127.0.0.1:{remote}",
        destination,
    ]


def interactive(target: SSHTarget, remote_command: str, tty: bool) -> int:
    """Run a command with the terminal attached; returns its exit code."""
    command = [*target.base_command(tty=tty), remote_command]
    return subprocess.call(command)


def default_identities(home: Path | None = None) -> tuple[Path, ...]:
    """Private keys beside the user's `~/.ssh/*.pub`, passed explicitly so HOME is honoured."""
    ssh_dir = (home or Path.home()) / ".ssh"
    return tuple(pub.with_suffix("") for pub in sorted(ssh_dir.glob("*.pub")) if pub.with_suffix("").is_file())
