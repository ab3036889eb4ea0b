"""The provider contract (provider_contract.py) on the simulated Hetzner cloud: the real hcloud
client talks to the fake API (tests/fakes/hetzner), whose servers boot as simulated VMs running
the rendered cloud-init; backups go to a real S3 server (moto) standing in for R2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fakes.hetzner import FakeHetzner

from .provider_contract import *
from .provider_contract import SECONDS_SCALE, ContractCloud, Refusal, s3_backup_store

REFUSALS = ("bad token", "read-only token", "quota", "unknown size", "deprecated size")


def vmgen_resources(fake: FakeHetzner) -> dict[str, int]:
    """What carries vmgen's label in the project (the fake cloud is this module's alone): servers,
    the shared firewall and key, and snapshots (none is asked for here)."""
    state = fake.state
    found = {
        kind: sum(1 for item in getattr(state, kind).values() if item.labels.get("vmgen") == "1")
        for kind in ("servers", "firewalls", "ssh_keys")
    }
    found["snapshots"] = sum(1 for image in state.images.values() if image.type == "snapshot")
    return {kind: count for kind, count in found.items() if count}


@contextmanager
def server_named(fake: FakeHetzner, name: str) -> Iterator[None]:
    """A server of the user's own (made without vmgen) under the workspace's name."""
    from hcloud.images import Image
    from hcloud.server_types import ServerType

    client = fake.client()
    other = client.servers.create(name=name, server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"))
    try:
        yield
        assert name in [s.name for s in client.servers.get_all()]  # not vmgen's: untouched
    finally:
        other.action.wait_until_finished()  # a server is locked (423) while its create action runs
        other.server.delete()


def refusals(cli, fake: FakeHetzner) -> dict[str, Refusal]:
    @contextmanager
    def token(value: str) -> Iterator[list[str]]:
        cli.env["HCLOUD_TOKEN"] = value
        try:
            yield []
        finally:
            cli.env["HCLOUD_TOKEN"] = "test-token"

    @contextmanager
    def quota(cli) -> Iterator[list[str]]:
        fake.max_servers = 0
        try:
            yield []
        finally:
            fake.max_servers = None

    @contextmanager
    def args(*given: str) -> Iterator[list[str]]:
        yield list(given)

    return {
        "bad token": Refusal(lambda cli: token("wrong-token"), "Hetzner rejected the API token"),
        "read-only token": Refusal(lambda cli: token(fake.readonly_token), "read-only"),
        "quota": Refusal(quota, "project limit reached", code=1),
        "unknown size": Refusal(
            lambda cli: args("--type", "cx53", "--region", "hel1"), "server type 'cx53' is not available in hel1"
        ),
        "deprecated size": Refusal(lambda cli: args("--type", "cx22"), "is deprecated"),
    }


@pytest.fixture(scope="module")
def hetzner(vm_image) -> Iterator[FakeHetzner]:
    fake = FakeHetzner(image=vm_image).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def cloud(cli, hetzner, tmp_path_factory) -> Iterator[ContractCloud]:
    fake = hetzner
    with s3_backup_store(cli, fake.gateway or "127.0.0.1", tmp_path_factory.mktemp("r2")):
        cli.env.update(
            {
                "VMGEN_PROVIDER": "hetzner",
                "HCLOUD_TOKEN": "test-token",
                "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
                "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
                "VMGEN_REGION": "fsn1",
                **SECONDS_SCALE,
            }
        )
        yield ContractCloud(
            provider="hetzner",
            resources=lambda names: vmgen_resources(fake),
            take_name=lambda name: server_named(fake, name),
            name_taken_says="already has a resource with that name",
            refusals=refusals(cli, fake),
            size="cx33",
            server_type="cx33",
            location="fsn1",
        )


def test_a_rate_limited_api_is_waited_out_as_its_headers_say(cli, cloud, hetzner) -> None:
    hetzner.rate_limit_next(times=2)
    cli("sizes", "--location", "fsn1")  # backs off as the headers say, then succeeds
    assert vmgen_resources(hetzner) == {}
