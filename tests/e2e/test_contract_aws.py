"""The provider contract (provider_contract.py) on the simulated EC2 (tests/fakes/aws: moto's EC2
and SSM, a simulated VM booted per running instance, IMDSv2); backups go to a second moto server
(S3) on the fake's network. The VM holds no AWS credential: it deletes itself by powering off
(InstanceInitiatedShutdownBehavior=terminate). Besides the contract: the metadata service takes
IMDSv2 tokens only, with a hop limit no container on the VM gets past."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fakes.aws import FakeAws

from .conftest import Cli
from .provider_contract import *
from .provider_contract import SECONDS_SCALE, ContractCloud, Refusal, s3_backup_store

REFUSALS = ("bad credentials", "quota", "unknown size")


def metadata_locked_down(fake: FakeAws):
    def check(cli: Cli, name: str) -> None:
        found = fake.client().describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": [name]}])
        options = found["Reservations"][0]["Instances"][0]["MetadataOptions"]
        assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 1)

    return check


@contextmanager
def instance_of_another_laptop(fake: FakeAws, name: str) -> Iterator[None]:
    """Workspace NAME, launched by vmgen on another laptop into the same account (stopped)."""
    ec2 = fake.client()
    tags = [{"Key": "vmgen", "Value": "1"}, {"Key": "vmgen-ws", "Value": name}, {"Key": "Name", "Value": name}]
    made = ec2.run_instances(
        ImageId=fake.ami,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    instance = made["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance])
    try:
        yield
        state = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]
        assert state == "stopped"  # not vmgen's on this laptop: untouched
    finally:
        ec2.terminate_instances(InstanceIds=[instance])


def refusals(cli, fake: FakeAws) -> dict[str, Refusal]:
    @contextmanager
    def wrong_key(cli) -> Iterator[list[str]]:
        cli.env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret"
        cli.env["AWS_ACCESS_KEY_ID"] = "AKIAWRONGWRONGWRONG0"
        try:
            yield []
        finally:
            cli.env.update(fake.environment())

    @contextmanager
    def quota(cli) -> Iterator[list[str]]:
        fake.fail(
            "RunInstances",
            "InstanceLimitExceeded",
            "Your quota allows for 0 more running instance(s). You requested at least 1",
        )
        yield []

    @contextmanager
    def unknown(cli) -> Iterator[list[str]]:
        yield ["--type", "m9z.huge"]

    return {
        "bad credentials": Refusal(wrong_key, "AWS refused the credentials"),
        "quota": Refusal(quota, "quota allows for 0 more", code=1),
        "unknown size": Refusal(unknown, "'m9z.huge' is not one vmgen offers on aws"),
    }


@pytest.fixture(scope="module")
def cloud(cli, vm_image, tmp_path_factory) -> Iterator[ContractCloud]:
    with FakeAws(boot=True, image=vm_image) as fake:
        gateway = fake.vms.gateway or "127.0.0.1"
        with s3_backup_store(cli, gateway, tmp_path_factory.mktemp("s3")):
            cli.env.update({**fake.environment(), "VMGEN_PROVIDER": "aws", **SECONDS_SCALE})
            yield ContractCloud(
                provider="aws",
                resources=lambda names: fake.vmgen_resources(),
                take_name=lambda name: instance_of_another_laptop(fake, name),
                name_taken_says="already exists on aws",
                refusals=refusals(cli, fake),
                size="t3.large",
                server_type="t3.large",
                location="us-east-1",
                running_checks=metadata_locked_down(fake),
            )
