"""`--host user@server[:port]` on `vmgen launch`, `restore` and `sizes`: one option, the same
meaning and the same one-line refusals; and `vmgen restore NAME` of a workspace that ran on a
server of the user's comes back on that server, whatever the setting says now, unless --provider
or --host says otherwise. No server is contacted: the ssh provider's first login is replaced by
one that says which server it was asked to reach."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from vmgen.errors import ProviderUnavailable
from vmgen.laptop.cli import main
from vmgen.laptop.cli.backups import restore, restore_provider
from vmgen.laptop.cli.launching import launch
from vmgen.laptop.cli.workspaces import sizes
from vmgen.laptop.config import Settings
from vmgen.laptop.providers import ssh
from vmgen.laptop.providers.ssh_host import SshHost
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState

REFUSED = "error: --host names your own server for a provider that runs on one (ssh); docker does not"


@pytest.fixture(autouse=True)
def no_server_is_reached(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def asked(server: SshHost, timeout: float = 0) -> str:
        raise ProviderUnavailable(f"asked to reach {server}")

    monkeypatch.setattr(ssh, "check_reachable", asked)


def made_on(name: str, provider: str, server: str = "") -> None:
    """A workspace this machine launched (its record and pinned key), on SERVER when given."""
    record = WorkspaceRecord(name, provider, 0.0, "https://example.com/app.git", "claude")
    WorkspaceState(name).create(record, "ssh-ed25519 AAAA")
    if server:
        WorkspaceState(name).write(ssh.HOST_FILE, f"{server}\n")


def vmgen(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def error_line(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_three_commands_share_one_host_option() -> None:
    def host(command: click.Command) -> click.Option:
        [found] = [p for p in command.params if isinstance(p, click.Option) and "--host" in p.opts]
        return found

    helps = {host(command).help for command in (launch, restore, sizes)}
    assert helps == {"Your own server, user@host[:port], for a provider that runs on one."}


def test_sizes_asks_the_server_host_names() -> None:
    result = vmgen("sizes", "--provider", "ssh", "--host", "me@box:2222", VMGEN_SSH_HOST="you@other")
    assert result.exit_code == 1
    assert error_line(result) == "error: asked to reach me@box:2222"


def test_sizes_host_goes_to_the_configured_provider_without_provider() -> None:
    result = vmgen("sizes", "--host", "me@box", VMGEN_PROVIDER="ssh")
    assert error_line(result) == "error: asked to reach me@box"


@pytest.mark.parametrize("command", [["sizes"], ["restore", "app"]], ids=["sizes", "restore"])
def test_host_for_a_provider_without_servers_is_launchs_one_line(command: list[str]) -> None:
    result = vmgen(*command, "--provider", "docker", "--host", "me@box")
    assert result.exit_code == 2
    assert error_line(result) == REFUSED


@pytest.mark.parametrize("command", [["sizes"], ["restore", "app"]], ids=["sizes", "restore"])
def test_a_host_that_is_not_one_is_the_settings_one_line(command: list[str]) -> None:
    result = vmgen(*command, "--provider", "ssh", "--host", "server.example.com")
    assert result.exit_code == 2
    assert "(--host, VMGEN_SSH_HOST) is 'server.example.com': it takes user@host[:port]" in error_line(result)


def test_restore_comes_back_on_the_server_the_workspace_ran_on() -> None:
    made_on("app", "ssh", "me@box:2222")
    # As app2, which has no server of its own: the restore makes it on the one the provider is built for.
    result = vmgen("restore", "app", "--as", "app2", VMGEN_PROVIDER="docker", VMGEN_SSH_HOST="you@other")
    assert result.exit_code == 1
    assert error_line(result) == "error: asked to reach me@box:2222"


def test_restore_of_the_same_name_is_built_for_its_recorded_server() -> None:
    made_on("app", "ssh", "me@box:2222")
    with click.Context(main) as ctx:
        ctx.obj = Settings(provider="docker", ssh_host="you@other")
        chosen = restore_provider("app", None, None)
    assert chosen.name == "ssh"
    assert getattr(chosen, "server", None) == SshHost("me", "box", 2222)


def test_restore_host_takes_the_place_of_the_recorded_server() -> None:
    made_on("app", "ssh", "me@box:2222")
    result = vmgen("restore", "app", "--as", "app2", "--host", "you@else:2200", VMGEN_PROVIDER="docker")
    assert error_line(result) == "error: asked to reach you@else:2200"


def test_restore_provider_leaves_the_record_to_the_settings() -> None:
    made_on("app", "ssh", "me@box:2222")
    result = vmgen("restore", "app", "--as", "app2", "--provider", "ssh", VMGEN_SSH_HOST="you@other")
    assert error_line(result) == "error: asked to reach you@other"


def test_restore_of_a_workspace_on_a_cloud_keeps_the_configured_provider() -> None:
    made_on("app", "hetzner")
    with click.Context(main) as ctx:
        ctx.obj = Settings(provider="ssh", ssh_host="you@other")
        chosen = restore_provider("app", None, None)
    assert chosen.name == "ssh"
    assert getattr(chosen, "server", None) == SshHost("you", "other", 22)


def test_restore_of_a_snapshot_refuses_host_for_the_recorded_cloud() -> None:
    made_on("app", "hetzner")
    result = vmgen("restore", "app", "--snapshot", "123", "--host", "me@box")
    assert result.exit_code == 2
    assert error_line(result) == REFUSED.replace("docker does not", "hetzner does not")
