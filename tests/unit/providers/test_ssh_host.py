"""The ssh provider's server: `ssh_host` / `--host` checked (one line for a value it does not
take), what its ssh login's failures say, where a workspace on it is reached, and, against a real
sshd of the test's own in front of this machine's Docker engine, that a bad server (nothing
answers, the key refused) is one line and nothing is made."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh_server import Server, free_port, ssh_server, this_machines_address
from tests.unit.cli.test_cli import one_error_line, vmgen
from vmgen.errors import ConfigError, ProviderAuthError, ProviderUnavailable, UsageError
from vmgen.laptop.config import Settings, load_settings
from vmgen.laptop.providers import get_provider, provider_class
from vmgen.laptop.providers.docker import DockerProvider
from vmgen.laptop.providers.ssh import HOST_FILE, PUBLISH_ON, ServerEngine, SshProvider, missing_image
from vmgen.laptop.providers.ssh_host import SshHost, login_verdict, parse_ssh_host
from vmgen.laptop.state import WorkspaceState


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("root@server.example.com", SshHost("root", "server.example.com", 22)),
        ("me@203.0.113.5:2222", SshHost("me", "203.0.113.5", 2222)),
        (" deploy_1@box ", SshHost("deploy_1", "box", 22)),
    ],
)
def test_a_server_is_user_at_host_and_an_optional_port(text: str, parsed: SshHost) -> None:
    assert parse_ssh_host(text) == parsed
    assert parsed.docker_url == f"ssh://{parsed.user}@{parsed.host}:{parsed.port}"


@pytest.mark.parametrize(
    "text", ["server.example.com", "root@", "@host", "root@host:0", "root@host:70000", "root@host:ssh", "a b@host"]
)
def test_anything_else_is_one_line_that_says_what_it_takes(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ssh_host \(--host, VMGEN_SSH_HOST\) is .*: it takes user@host\[:port\]"):
        parse_ssh_host(text)


def test_the_setting_is_read_like_every_other_and_checked_when_the_provider_is_made(home: Path) -> None:
    settings = load_settings(environ={"VMGEN_SSH_HOST": "me@box:2200"})
    assert settings.ssh_host == "me@box:2200"
    with pytest.raises(ConfigError, match="it takes user@host"):
        get_provider("ssh", Settings(ssh_host="box"))


def test_launch_host_fills_the_setting_of_the_provider_that_takes_one() -> None:
    assert provider_class("ssh").host_setting == "ssh_host"
    assert [name for name in ("aws", "docker", "hetzner") if provider_class(name).host_setting] == []


def test_without_a_server_nothing_is_listed_and_a_launch_says_how_to_name_one(home: Path) -> None:
    provider = get_provider("ssh", Settings())
    assert isinstance(provider, SshProvider)
    assert provider.workspaces() == [] and provider.get("app") is None and provider.leftovers() == []
    with pytest.raises(UsageError, match=r"`--host user@server` on the command, or the setting ssh_host"):
        provider.engine()


def test_a_workspace_is_found_on_the_server_it_was_made_on_whatever_ssh_host_says_now(home: Path) -> None:
    WorkspaceState("app").write(HOST_FILE, "me@box:2222\n")
    asked: list[SshHost] = []

    def connect(server: SshHost, image: str) -> ServerEngine:
        asked.append(server)
        raise ProviderUnavailable(f"{server} is not here")

    provider = SshProvider(parse_ssh_host("you@other"), "img", connect)
    assert provider.recorded_server("app") == SshHost("me", "box", 2222)
    assert provider.servers() == [SshHost("you", "other", 22), SshHost("me", "box", 2222)]
    with pytest.raises(ProviderUnavailable, match="me@box:2222 is not here"):
        provider.get("app")
    with pytest.raises(ProviderUnavailable, match="you@other is not here"):
        provider.get("new")  # a name with no record: the configured server
    assert asked == [SshHost("me", "box", 2222), SshHost("you", "other", 22)]


def test_a_workspace_is_published_on_the_servers_addresses_and_reached_at_its_name() -> None:
    assert PUBLISH_ON == "0.0.0.0"
    assert provider_class("ssh").shares_local_folders is False
    assert DockerProvider.publish_on == DockerProvider.reached_at == "127.0.0.1"


def test_what_the_login_said_becomes_one_line() -> None:
    server = SshHost("me", "box", 2222)
    assert login_verdict(server, 0, "20.10.24+dfsg1\n", "") == "20.10.24+dfsg1"
    with pytest.raises(ProviderAuthError, match=r"me@box:2222 refused the SSH login \(me@box: Permission denied"):
        login_verdict(server, 255, "", "me@box: Permission denied (publickey).\n")
    with pytest.raises(ProviderAuthError, match=r"host key is not the one your ~/\.ssh/known_hosts has"):
        login_verdict(server, 255, "", "No ED25519 host key is known for box.\nHost key verification failed.\n")
    with pytest.raises(ProviderUnavailable, match=r"cannot reach me@box:2222 over SSH: .*Connection refused"):
        login_verdict(server, 255, "", "ssh: connect to host box port 2222: Connection refused\n")
    with pytest.raises(ProviderUnavailable, match="has no `docker` command: install Docker there"):
        login_verdict(server, 127, "", "bash: line 1: docker: command not found\n")
    with pytest.raises(ProviderAuthError, match="may not use Docker's socket: add it to the docker group"):
        login_verdict(
            server, 1, "", "permission denied while trying to connect to the Docker daemon socket at unix://...\n"
        )


def test_a_missing_image_says_how_to_put_it_on_the_server() -> None:
    said = missing_image("vmgen-debian12:latest", SshHost("me", "box", 2222))
    assert "docker save vmgen-debian12:latest | ssh -p 2222 me@box docker load" in said
    assert "DOCKER_HOST=ssh://me@box:2222 images/debian12-test/build.sh" in said


# --- a real sshd in front of this machine's engine ---------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ssh_server(tmp_path_factory.mktemp("server")) as started:
        yield started


@pytest.fixture
def through(server: Server, monkeypatch: pytest.MonkeyPatch, home: Path) -> Server:
    monkeypatch.setenv("PATH", server.path(os.environ["PATH"]))
    return server


def test_a_server_reached_over_ssh_lists_and_sizes_from_its_own_engine(through: Server) -> None:
    provider = get_provider("ssh", Settings(ssh_host=through.host))
    assert isinstance(provider, SshProvider)
    names = {w.name for w in provider.workspaces()}
    assert "vmgen-ssh-nobody" not in names and provider.get("vmgen-ssh-nobody") is None
    sizes = provider.sizes()
    assert {s.preset for s in sizes} == {"small", "medium", "large"} and {s.price_hourly for s in sizes} == {0.0}
    assert {s.location for s in sizes} == {through.host}


def test_a_refused_key_is_one_line_and_nothing_is_made(tmp_path: Path, through: Server, home: Path) -> None:
    # A second server that takes another key than the one the client offers.
    other = tmp_path / "other.pub"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    with ssh_server(tmp_path / "refusing", authorized=other) as refusing:
        env = {"PATH": refusing.path(os.environ["PATH"])}
        result = vmgen(home, "launch", str(home), "--provider", "ssh", "--host", refusing.host, **env)
    assert result.returncode == 2
    assert "refused the SSH login" in one_error_line(result) and "Permission denied" in result.stderr
    assert not (home / ".local/state/vmgen/workspaces").exists()


def test_a_server_that_does_not_answer_is_one_line_and_nothing_is_made(through: Server, home: Path) -> None:
    closed = f"root@{this_machines_address()}:{free_port(this_machines_address())}"
    result = vmgen(home, "launch", str(home), "--provider", "ssh", "--host", closed, PATH=through.path("/usr/bin:/bin"))
    assert result.returncode == 1
    assert one_error_line(result).startswith(f"error: cannot reach {closed} over SSH: ")
    assert not (home / ".local/state/vmgen/workspaces").exists()


def test_a_host_that_is_not_one_and_a_provider_without_servers_are_refused(home: Path) -> None:
    result = vmgen(home, "launch", str(home), "--provider", "ssh", "--host", "server.example.com")
    assert result.returncode == 2 and "it takes user@host[:port]" in one_error_line(result)
    result = vmgen(home, "launch", str(home), "--provider", "docker", "--host", "me@box")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "error: --host names your own server for a provider that runs on one (ssh); docker does not"
    )
