"""A server of the user's, as the ssh provider names and reaches it: `user@host[:port]` parsed and
checked (pure), the Docker SDK's address for its engine, and the first contact over the system's
ssh that turns what went wrong (no route, a refused login, no Docker there) into one line."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from ...errors import ConfigError, ProviderAuthError, ProviderUnavailable

SETTING = "ssh_host"
# A user name as useradd takes it, and a host name or IPv4 address (an IPv6 literal would need
# brackets the Docker SDK's ssh transport does not parse).
_USER = r"[a-z_][a-z0-9_.-]{0,31}"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_FORM = re.compile(rf"(?P<user>{_USER})@(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?")
CONNECT_TIMEOUT = 10  # seconds ssh waits for the server to answer


@dataclass(frozen=True)
class SshHost:
    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def docker_url(self) -> str:
        """The engine's address for the Docker SDK (`DOCKER_HOST=ssh://...`)."""
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def ssh_command(self, *remote: str) -> list[str]:
        """The system's ssh to this server, never asking for a password (a refused key is an error,
        not a prompt), with the user's own ssh config (keys, agent, known hosts) otherwise."""
        return [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-p",
            str(self.port),
            "-l",
            self.user,
            "--",
            self.host,
            *remote,
        ]


def parse_ssh_host(text: str) -> SshHost:
    """`user@host[:port]`, or one line saying what the setting takes."""
    found = _FORM.fullmatch(text.strip())
    port = int(found["port"]) if found and found["port"] else 22
    if found is None or not 0 < port < 65536:
        raise ConfigError(
            f"{SETTING} (--host, VMGEN_SSH_HOST) is {text!r}: it takes user@host[:port], "
            "e.g. root@server.example.com or me@203.0.113.5:2222"
        )
    return SshHost(found["user"], found["host"], port)


def check_reachable(server: SshHost, timeout: float = 3 * CONNECT_TIMEOUT) -> str:
    """Log in once and ask the server's Docker for its version (what the engine's address needs:
    a key the server takes and a `docker` command that may use the engine). Returns the version;
    raises with one line naming what failed. Nothing is made on the server."""
    command = server.ssh_command("docker", "version", "--format", "{{.Server.Version}}")
    try:
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise ProviderUnavailable(f"{server} did not answer over SSH within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise ProviderUnavailable("the ssh provider needs OpenSSH's ssh client on this machine") from None
    return login_verdict(server, done.returncode, done.stdout, done.stderr)


def login_verdict(server: SshHost, returncode: int, stdout: str, stderr: str) -> str:
    """What `check_reachable`'s ssh said, as the engine's version or one line (pure)."""
    said = last_line(stderr)
    if returncode == 0 and stdout.strip():
        return stdout.strip().splitlines()[-1]
    if returncode == 255:  # ssh's own failure: the server never ran the command
        if "Permission denied" in stderr or "Too many authentication failures" in stderr:
            raise ProviderAuthError(
                f"{server} refused the SSH login ({said}): add your public key to {server.user}'s "
                f"~/.ssh/authorized_keys there (e.g. `ssh-copy-id -p {server.port} {server.user}@{server.host}`)"
            )
        if "Host key verification failed" in stderr:
            raise ProviderAuthError(
                f"{server}'s host key is not the one your ~/.ssh/known_hosts has, or is not known yet: "
                f"log in once with `ssh -p {server.port} {server.user}@{server.host}` to check and accept it"
            )
        raise ProviderUnavailable(f"cannot reach {server} over SSH: {said or 'ssh failed'}")
    if returncode == 127 or "command not found" in stderr:
        raise ProviderUnavailable(f"{server} has no `docker` command: install Docker there")
    if "permission denied" in stderr.lower():
        raise ProviderAuthError(
            f"{server.user} on {server.host} may not use Docker's socket: add it to the docker group, or log in as root"
        )
    raise ProviderUnavailable(f"the Docker engine on {server} does not answer: {said or f'exit {returncode}'}")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
