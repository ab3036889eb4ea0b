"""The attack suite (attack_suite.py) against a docker workspace with a local backup store."""

from __future__ import annotations

import pytest

from .attack_suite import *  # noqa: F403 - the suite's tests, collected for this provider
from .attack_suite import Workspace
from .conftest import Cli, make_repo, unique

NAME, DOOMED = unique("attack-d"), unique("doomed-d")


def attacker(cli: Cli, **env: str) -> Cli:
    # Seconds-scale watchdog ticks; an idle timeout far away, so only the hard limit acts.
    return Cli(env=dict(cli.env, VMGEN_IDLE_INTERVAL_SECONDS="2", VMGEN_IDLE_MINUTES="60", **env), home=cli.home)


@pytest.fixture(scope="module")
def ws(cli, docker_client, tmp_path_factory):
    shell = attacker(cli)
    shell("launch", str(make_repo(tmp_path_factory.mktemp("attack"), NAME)))
    store = cli.home / ".local/share/vmgen/backups/ws" / NAME
    yield Workspace(NAME, "docker", shell, docker_client, lambda bid: (store / f"{bid}.tar.zst.age").read_bytes())
    shell("destroy", NAME, "--yes", check=False)


@pytest.fixture(scope="module")
def doomed(cli, docker_client, tmp_path_factory):
    shell = attacker(cli, VMGEN_MAX_LIFETIME_HOURS="0.04")  # 144 s after boot
    shell("launch", str(make_repo(tmp_path_factory.mktemp("doomed"), DOOMED)))
    yield Workspace(DOOMED, "docker", shell, docker_client, lambda bid: b"")
    shell("destroy", DOOMED, "--yes", check=False)


@pytest.fixture
def gone(doomed: Workspace, docker_client):
    """Docker workspaces power off at the limit (a container cannot delete itself)."""
    def stopped() -> bool:
        return docker_client.containers.get(f"vmgen-{DOOMED}").status == "exited"
    return stopped
