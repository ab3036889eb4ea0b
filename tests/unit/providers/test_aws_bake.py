"""Baked AMIs on the AWS provider against moto's EC2 (tests/fakes/aws, no VM booted): the AMI a
bake makes from its stopped build instance, tagged with the stamps, waited for until available;
`image list` / launches finding it; `image rm` taking its snapshots with it; and a failed bake
or a wait that runs out leaving nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from tests.fakes.aws import ACCESS_KEY, SECRET_KEY, FakeAws
from vmgen.contract.enums import IdleAction
from vmgen.errors import BakeFailed
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder.install import workspace_plan
from vmgen.laptop.providers.aws import AwsProvider
from vmgen.laptop.spec import GitSource, VmgenInstall, WatchdogTuning, WorkspaceSpec
from vmgen.laptop.stamps import ImageStamp
from vmgen.selfwheel import VmgenWheel

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlq tester@laptop"
USER_DATA = "#cloud-config\nruncmd: [[echo, hello]]\n"
STAMP = ImageStamp(packages="p-1a2b", agent="claude-2.1.0", vmgen="0.0.0")


def spec(name: str) -> WorkspaceSpec:
    return WorkspaceSpec(
        name=name,
        source=GitSource("https://example.com/app"),
        agent=AGENTS["claude"],
        vmgen=VmgenInstall(version="0.0.0", find_links="http://wheels.example:8080/"),
        ssh_keys=(PUBKEY,),
        watchdog=WatchdogTuning(action=IdleAction.DELETE),
    )


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeAws]:
    with FakeAws() as fake:
        yield fake


@pytest.fixture(scope="module")
def session() -> boto3.Session:
    """One for the module: a new session reads boto3's models of EC2 and SSM again (half a
    second of CPU), and the providers only make their clients from it."""
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture
def aws(cloud: FakeAws, session: boto3.Session, home: Path) -> Iterator[AwsProvider]:
    provider = AwsProvider(region=cloud.region, endpoint=cloud.endpoint, poll_interval=0.1, session=session)
    yield provider
    cloud.hold_images = False
    for image in provider.baked_images():
        provider.remove_baked(image)
    for workspace in provider.workspaces():
        provider.delete(workspace.name)
    assert cloud.vmgen_resources() == {}


def instance_id(cloud: FakeAws, name: str) -> str:
    found = cloud.client().describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": [name]}])["Reservations"]
    return found[0]["Instances"][0]["InstanceId"]


def built(aws: AwsProvider, cloud: FakeAws, name: str = "vmgen-bake-1") -> str:
    """An AMI made by the bake's last half from an instance standing in for a provisioned build
    instance; returns its id."""
    aws.create(spec(name), USER_DATA)
    steps: list[str] = []
    image = aws.image_of(instance_id(cloud, name), name, STAMP, "2.1.0", steps.append)
    assert "stopping the build instance" in steps and any("to be available" in step for step in steps)
    aws.delete(name)
    return image["ImageId"]


def test_the_ami_carries_the_stamps_and_launches_pick_it(aws: AwsProvider, cloud: FakeAws) -> None:
    ami = built(aws, cloud)
    ec2 = cloud.client()
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert image["State"] == "available" and image["Name"] == "vmgen-bake-1"
    assert image["Description"] == f"vmgen bake: {STAMP.describe()}"
    assert tags["vmgen-baked"] == "1" and tags["vmgen-base"] == "ubuntu-24.04" and tags["vmgen"] == "1"
    assert ImageStamp.from_labels(tags) == STAMP and tags["vmgen-agent-version"] == "2.1.0"
    # The snapshots EC2 made for it are vmgen's too, by tag.
    snapshots = cloud.own_snapshots()
    assert snapshots and all({"Key": "vmgen", "Value": "1"} in s["Tags"] for s in snapshots)

    (listed,) = aws.baked_images()
    assert (listed.ref, listed.name, listed.stamp, listed.base, listed.agent_version) == (
        ami,
        "vmgen-bake-1",
        STAMP,
        "ubuntu-24.04",
        "2.1.0",
    )
    assert aws.newest_baked(spec("next")) == listed
    # A launch from it boots the AMI.
    aws.create(replace(spec("next"), image=listed.ref), USER_DATA)
    (reservation,) = ec2.describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": ["next"]}])["Reservations"]
    assert reservation["Instances"][0]["ImageId"] == ami
    # Another base's AMIs are not picked; an AMI of the user's own (untagged) is never listed.
    other = AwsProvider(
        region=cloud.region, endpoint=cloud.endpoint, image="/my/base", session=aws.session, poll_interval=0.1
    )
    assert other.newest_baked() is None
    assert len(aws.baked_images()) == 1


def test_image_rm_deregisters_the_ami_and_deletes_its_snapshots(aws: AwsProvider, cloud: FakeAws) -> None:
    built(aws, cloud, "vmgen-bake-old")
    newer = built(aws, cloud, "vmgen-bake-new")
    assert cloud.vmgen_resources() == {"images": 2, "snapshots": 2}
    old, new = sorted(aws.baked_images(), key=lambda b: b.name != "vmgen-bake-old")
    aws.remove_baked(old)
    assert [b.ref for b in aws.baked_images()] == [newer]
    aws.remove_baked(new)
    found = cloud.vmgen_resources()
    assert "images" not in found and "snapshots" not in found  # DeregisterImage alone leaves them
    aws.remove_baked(new)  # already gone: nothing to do


def test_an_ami_that_never_becomes_available_is_one_error_and_undone(aws: AwsProvider, cloud: FakeAws) -> None:
    aws.create(spec("vmgen-bake-slow"), USER_DATA)
    cloud.hold_images = True  # EC2 still copying the disk
    aws.IMAGE_WAIT_MINUTES = 0.01
    with pytest.raises(BakeFailed, match=r"^the AMI ami-\w+ was not available after 0.01 minutes \(state pending\)"):
        aws.image_of(instance_id(cloud, "vmgen-bake-slow"), "vmgen-bake-slow", STAMP, "", lambda _: None)
    aws.delete("vmgen-bake-slow")
    found = cloud.vmgen_resources()
    assert "images" not in found and "snapshots" not in found


def test_a_failed_bake_leaves_nothing_it_made(aws: AwsProvider, cloud: FakeAws, home: Path) -> None:
    wheel = VmgenWheel(version="0.0.0", sha256="ab" * 32, content=b"not a wheel")
    plan = workspace_plan(
        AGENTS["claude"],
        "latest",
        VmgenInstall(version="0.0.0", wheel_sha256=wheel.sha256),
        desktop=False,
        domain="",
        code_ui_version="",
    )
    steps: list[str] = []
    # moto's instance has no VM behind its address: the build instance never answers over SSH.
    with pytest.raises(BakeFailed, match="the build VM did not answer over SSH"):
        aws.bake_on_instance(
            plan,
            wheel,
            steps.append,
            size="small",
            public_key=PUBKEY,
            identities=(home / ".ssh" / "id_ed25519",),
            timeout=2,
        )
    assert "terminating the build instance" not in steps and any("booting a" in s for s in steps)
    # No instance, AMI, snapshot, volume, security group or key pair of vmgen's is left.
    assert cloud.vmgen_resources() == {}
    assert aws.workspaces() == []
