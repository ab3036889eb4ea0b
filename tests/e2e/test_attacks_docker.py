"""The attack suite (attack_suite.py) against a docker workspace with a local backup store: the
attacks where a docker workspace differs (see attack_suite.SAME_ON_EVERY_PROVIDER)."""

from __future__ import annotations

import pytest

from . import attack_suite
from .attack_suite import *
from .attack_suite import BACKUP_DEADLINE_SECONDS, Workspace
from .conftest import Cli, make_repo, unique

for _same in attack_suite.SAME_ON_EVERY_PROVIDER:  # run once, on the Hetzner workspace
    del globals()[_same]

NAME, DOOMED = unique("attack-d"), unique("doomed-d")


def attacker(cli: Cli, **env: str) -> Cli:
    # Seconds-scale watchdog ticks; an idle timeout far away, so only the hard limit acts. Root's
    # backup deadline in seconds; room for the suite's own backups in the rate limit.
    return Cli(
        env=dict(
            cli.env,
            VMGEN_IDLE_INTERVAL_SECONDS="2",
            VMGEN_IDLE_MINUTES="60",
            VMGEN_BACKUP_DEADLINE_MINUTES=str(BACKUP_DEADLINE_SECONDS / 60),
            VMGEN_BACKUP_KEEP="12",
            VMGEN_BACKUP_REQUESTS_PER_HOUR="6",
            **env,
        ),
        home=cli.home,
    )


def store_of(cli: Cli):
    return cli.home / ".local/share/vmgen/backups"


@pytest.fixture(scope="module")
def ws(cli, docker_client, tmp_path_factory):
    shell = attacker(cli)
    shell("launch", str(make_repo(tmp_path_factory.mktemp("attack"), NAME)))
    yield Workspace(NAME, "docker", shell, docker_client, lambda key: (store_of(cli) / key).read_bytes())
    shell("destroy", NAME, "--yes", check=False)


@pytest.fixture(scope="module")
def doomed(cli, docker_client, tmp_path_factory, hook):
    shell = attacker(cli, VMGEN_MAX_LIFETIME_HOURS="0.04", VMGEN_IDLE_WEBHOOK_URL=hook.url)  # 144 s after boot
    shell("launch", str(make_repo(tmp_path_factory.mktemp("doomed"), DOOMED)))
    yield Workspace(DOOMED, "docker", shell, docker_client, lambda key: b"")
    shell("destroy", DOOMED, "--yes", check=False)


@pytest.fixture
def gone(doomed: Workspace, docker_client):
    """Docker workspaces power off at the limit (a container cannot delete itself)."""

    def stopped() -> bool:
        return docker_client.containers.get(f"vmgen-{DOOMED}").status == "exited"

    return stopped


@pytest.fixture
def kept(doomed: Workspace):
    """Without a backup, a docker workspace keeps its disk: the volume stays."""
    return lambda: f"`vmgen start {DOOMED}` brings it back"


def test_a_workspace_sees_only_its_own_folder_of_the_local_store(ws: Workspace) -> None:
    other = store_of(ws.cli) / "ws" / "someone-else"
    other.mkdir(parents=True, exist_ok=True)
    (other / "20260101T000000Z-0001.json").write_text("{}")
    try:
        assert ws.agent("ls /var/lib/vmgen/backups/ws/").split() == [NAME]
        assert ws.agent_run("cat /var/lib/vmgen/backups/ws/someone-else/20260101T000000Z-0001.json").returncode != 0
    finally:
        (other / "20260101T000000Z-0001.json").unlink()
        other.rmdir()
