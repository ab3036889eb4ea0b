"""AWS baking on the simulated EC2 (tests/fakes/aws: moto's EC2 and SSM, a VM booted per running
instance): `vmgen image build` bakes an AMI (the fake commits the build instance's VM) that a
launch boots, skipping every install step. The AWS workspace's life (launch, idle self-delete by
power-off, restore, destroy) is the provider contract's: test_contract_aws.py."""

from __future__ import annotations

import json

import pytest

from tests.containers import output_of
from tests.fakes.aws import FakeAws

from .conftest import make_repo


@pytest.fixture(scope="module")
def cloud(cli, vm_image):
    with FakeAws(boot=True, image=vm_image) as fake:
        # No backup store here: the idle action deletes (the launched workspace is destroyed first).
        cli.env.update({**fake.environment(), "VMGEN_PROVIDER": "aws", "VMGEN_IDLE_ACTION": "delete"})
        yield fake


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
