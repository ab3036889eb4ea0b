"""The AWS provider end to end on the simulated EC2 (tests/fakes/aws: moto's EC2 and SSM, a VM
booted per running instance): `vmgen launch` through the CLI, the workspace ready with its agent,
listed with its price; idle, it deletes itself by powering off (the instance terminates, its
disk with it), and `vmgen destroy` leaves moto holding nothing of vmgen's. Then `vmgen image build`
bakes an AMI (the fake commits the build instance's VM) that a second launch boots, skipping every
install step."""

from __future__ import annotations

import json

import pytest

from tests.containers import output_of
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


BAKED = "stratus"
INSTALL_STEPS = {"packages", "node", "agent", "vmgen"}


def test_image_build_bakes_an_ami_a_launch_boots_and_skips_every_install(cli, cloud, docker_client, tmp_path):
    """`vmgen image build --provider aws`: a build instance boots with the bake user-data, is
    provisioned over SSH, loses that access, is stopped and imaged; the AMI carries the stamps,
    the build instance is gone, and a launch boots the AMI and installs nothing."""
    made = cli("image", "build", "--provider", "aws")
    assert "USD in us-east-1" in made.stderr  # what keeping it costs
    ec2 = cloud.client()
    (image,) = ec2.describe_images(Owners=["self"])["Images"]
    assert image["State"] == "available" and image["Name"] in cli("image", "list").stdout
    assert cloud.vmgen_resources() == {"images": 1, "snapshots": 1}  # the build instance and its group went
    # The bake's access went before the image: no key of the bake, no host key, no instance, no wheel.
    inside = output_of(
        docker_client,
        cloud.images[image["ImageId"]],
        ["sh", "-c", "ls -A /root/.ssh /etc/ssh/ssh_host_* /var/lib/cloud/instance /var/lib/vmgen/incoming 2>&1; true"],
    )
    assert b"authorized_keys" not in inside and b"ssh_host_ed25519_key" not in inside and b".whl" not in inside
    assert inside.count(b"No such file or directory") >= 3, inside

    result = json.loads(cli("launch", str(make_repo(tmp_path, BAKED)), "--json").stdout)
    assert result["image"] == image["ImageId"]
    instance = ec2.describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": [BAKED]}])["Reservations"][0]
    assert instance["Instances"][0]["ImageId"] == image["ImageId"]
    log = cli.ssh(BAKED, "cat /var/log/vmgen/phases.log")
    assert {line.split()[2] for line in log.splitlines() if line.startswith("vmgen-skip ")} >= INSTALL_STEPS
    cli("destroy", BAKED, "--yes")
    cli("image", "rm", image["Name"])
    assert cloud.vmgen_resources() == {}  # the AMI's snapshot went with it
