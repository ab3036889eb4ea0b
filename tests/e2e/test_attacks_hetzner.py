"""The attack suite (attack_suite.py) against a workspace on the simulated Hetzner cloud, with a
real S3 server (moto) as R2, and the cloud's metadata service."""

from __future__ import annotations

import re

import pytest

from tests.fakes.hetzner import FakeHetzner
from tests.fakes.moto_server import moto_server, s3_client

from .attack_suite import *
from .attack_suite import BACKUP_DEADLINE_SECONDS, Workspace
from .conftest import Cli, make_repo

NAME, DOOMED = "attack-h", "doomed-h"
BUCKET = "vmgen-attacks"
# Distinct values, so that finding one anywhere the agent can read means a leak.
TOKEN = "hz-attack-token-5d8e41"
R2_KEY, R2_SECRET = "r2-attack-key-7b1c90", "r2-attack-secret-9f3a27"


@pytest.fixture(scope="module")
def cloud(cli, vm_image, tmp_path_factory):
    fake = FakeHetzner(image=vm_image, tokens=(TOKEN,)).start()
    with moto_server(tmp_path_factory.mktemp("r2") / "moto.log", host=fake.gateway or "127.0.0.1") as port:
        endpoint = f"http://{fake.gateway}:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        env = {
            "VMGEN_PROVIDER": "hetzner",
            "HCLOUD_TOKEN": TOKEN,
            "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
            "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
            "VMGEN_R2_BUCKET": BUCKET,
            "VMGEN_R2_ENDPOINT": endpoint,
            "VMGEN_R2_ACCESS_KEY_ID": R2_KEY,
            "VMGEN_R2_SECRET_ACCESS_KEY": R2_SECRET,
            "VMGEN_IDLE_INTERVAL_SECONDS": "2",
            "VMGEN_IDLE_MINUTES": "60",
            # Root's backup deadline in seconds; room for the suite's own backups in the rate limit.
            "VMGEN_BACKUP_DEADLINE_MINUTES": str(BACKUP_DEADLINE_SECONDS / 60),
            "VMGEN_BACKUP_KEEP": "12",
            "VMGEN_BACKUP_REQUESTS_PER_HOUR": "6",
        }
        yield fake, endpoint, env
    fake.stop()


@pytest.fixture(scope="module")
def ws(cli, cloud, docker_client, tmp_path_factory):
    _fake, endpoint, env = cloud
    shell = Cli(env=dict(cli.env, **env), home=cli.home)
    shell("launch", str(make_repo(tmp_path_factory.mktemp("attack"), NAME)))

    def fetch(key: str) -> bytes:
        return s3_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read()

    yield Workspace(NAME, "hetzner", shell, docker_client, fetch, secrets=[TOKEN, R2_KEY, R2_SECRET])
    shell("destroy", NAME, "--yes", check=False)


@pytest.fixture(scope="module")
def doomed(cli, cloud, docker_client, tmp_path_factory, hook):
    _fake, _endpoint, env = cloud
    shell = Cli(
        env=dict(cli.env, **env, VMGEN_MAX_LIFETIME_HOURS="0.04", VMGEN_IDLE_WEBHOOK_URL=hook.url), home=cli.home
    )
    shell("launch", str(make_repo(tmp_path_factory.mktemp("doomed"), DOOMED)))
    yield Workspace(DOOMED, "hetzner", shell, docker_client, lambda bid: b"")
    shell("destroy", DOOMED, "--yes", check=False)


@pytest.fixture
def gone(doomed: Workspace, cloud):
    """On a cloud the limit backs up and deletes the server through the API."""
    fake = cloud[0]
    return lambda: DOOMED not in {server.name for server in fake.state.servers.values()}


@pytest.fixture
def kept(doomed: Workspace, cloud):
    """Without a backup, the server's disk is kept as a snapshot, labelled for the laptop."""

    def snapshot() -> str:
        found = [
            image
            for image in cloud[0].state.images.values()
            if image.labels.get("vmgen-ws") == DOOMED and image.labels.get("vmgen-rescue") == "1"
        ]
        assert len(found) == 1 and found[0].type == "snapshot" and found[0].status == "available", found
        return f"snapshot {found[0].id}"

    return snapshot


def test_the_metadata_service_is_root_only_over_ipv4_and_ipv6(ws: Workspace, cloud) -> None:
    host, port = re.match(r"http://([^:/]+):(\d+)", cloud[0].metadata_url).groups()  # type: ignore[union-attr]
    probe = (
        'python3 -c \'import socket,sys; s=socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else '
        'socket.AF_INET); s.settimeout(5); s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")\' '
    )
    for address in (host, f"::ffff:{host}"):
        attempt = ws.agent_run(probe + f"{address} {port}")
        assert "connected" not in attempt.stdout, address
    assert "connected" in ws.root(probe + f"{host} {port}")[1]


def test_a_disk_kept_as_a_snapshot_comes_back_with_its_files(doomed: Workspace, gone, kept) -> None:
    """After the hard lifetime kept the doomed workspace's disk as a snapshot (no backup could be
    made), `vmgen list` names it and `vmgen restore NAME --snapshot ID` makes the server again."""
    assert gone(), "runs after the hard lifetime's test"
    snapshot = kept().split()[1]
    listed = doomed.cli("list")
    assert any(
        DOOMED in line and "kept" in line and f"snapshot {snapshot}" in line for line in listed.stdout.splitlines()
    ), listed.stdout
    restored = doomed.cli("restore", DOOMED, "--snapshot", snapshot)
    assert f"restored {DOOMED} from snapshot {snapshot}" in restored.stderr
    assert doomed.agent(f"cat ~/work/{DOOMED}/precious.txt").strip() == "kept-without-a-backup"
    assert "kept" not in doomed.cli("list").stdout  # the snapshot went once the server was back
