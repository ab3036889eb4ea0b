"""The AWS provider end to end on the simulated EC2 (tests/fakes/aws: moto's EC2 and SSM, a VM
booted per running instance): `vmgen launch` through the CLI, the workspace ready with its agent,
listed with its price; idle, it deletes itself by powering off (the instance terminates, its
disk with it), and `vmgen destroy` leaves moto holding nothing of vmgen's. One booted workspace."""

from __future__ import annotations

import pytest

from tests.fakes.aws import FakeAws
from tests.polling import eventually

from .conftest import make_repo

NAME = "cirrus"
IDLE_MINUTES = 0.5


@pytest.fixture(scope="module")
def cloud(cli, vm_image):
    with FakeAws(boot=True, image=vm_image) as fake:
        cli.env.update(
            {
                **fake.environment(),
                "VMGEN_PROVIDER": "aws",
                # No backup store here: the idle action deletes (powering off would terminate the
                # instance anyway, which is what this module watches).
                "VMGEN_IDLE_ACTION": "delete",
                "VMGEN_IDLE_WARN_MINUTES": "0.25",
                "VMGEN_IDLE_INTERVAL_SECONDS": "2",
            }
        )
        yield fake


def state_of(fake: FakeAws, name: str) -> str:
    found = fake.client().describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": [name]}])["Reservations"]
    return found[0]["Instances"][0]["State"]["Name"] if found else "absent"


def test_launch_ready_then_the_idle_workspace_terminates_itself(cli, cloud, tmp_path) -> None:
    cli("launch", str(make_repo(tmp_path, NAME)), "--idle-minutes", str(IDLE_MINUTES))
    assert "claude" in cli.ssh(NAME, "tmux list-sessions -F '#{session_name}'")
    row = next(line for line in cli("list").stdout.splitlines() if line.split()[:1] == [NAME])
    assert "aws" in row and "running" in row and "t3.large" in row and "0.0832" in row
    assert cloud.vmgen_resources() == {"instances": 1, "security groups": 1, "key pairs": 1, "volumes": 1}
    # The agent cannot reach the metadata service; the laptop's half asked for IMDSv2 tokens only.
    options = cloud.client().describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": [NAME]}])
    metadata = options["Reservations"][0]["Instances"][0]["MetadataOptions"]
    assert (metadata["HttpTokens"], metadata["HttpPutResponseHopLimit"]) == ("required", 1)

    # Idle: the watchdog powers the VM off, and EC2 (the controller) terminates the instance.
    eventually(
        lambda: state_of(cloud, NAME) == "terminated",
        timeout=IDLE_MINUTES * 60 + 180,
        what="the idle workspace to power off and terminate",
        interval=3,
    )
    row = next(line for line in cli("list").stdout.splitlines() if line.split()[:1] == [NAME])
    assert "gone" in row  # vmgen's record of it, nothing on AWS
    # What the VM cannot remove without a credential (the shared group and key) goes with destroy.
    assert cloud.vmgen_resources() == {"security groups": 1, "key pairs": 1}
    cli("destroy", NAME, "--yes")
    assert cloud.vmgen_resources() == {}
