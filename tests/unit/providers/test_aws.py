"""The AWS provider against moto's EC2 and SSM (tests/fakes/aws, no VM booted): what it makes, how
it is tagged and locked down, the errors a user sees, and that nothing of vmgen's is left after a
destroy."""

from __future__ import annotations

import base64
import functools
import gzip
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fakes.aws import ACCESS_KEY, SECRET_KEY, FakeAws
from tests.fakes.aws.fake import ImdsHandler
from vmgen.contract.documents import WatchSettings
from vmgen.contract.enums import IdleAction, WorkspaceStatus
from vmgen.errors import (
    ProviderAuthError,
    ProviderLimit,
    ServerTypeUnavailable,
    UsageError,
    UserDataTooLarge,
    WorkspaceExists,
    WorkspaceNotFound,
)
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.config import Settings
from vmgen.laptop.providers import get_provider
from vmgen.laptop.providers.aws import AwsProvider
from vmgen.laptop.spec import GitSource, VmgenInstall, WatchdogTuning, WorkspaceSpec
from vmgen.vmside.providers.aws import metadata

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlq tester@laptop"
USER_DATA = "#cloud-config\nruncmd: [[echo, hello]]\n"


def spec(name: str, size: str = "small", action: IdleAction = IdleAction.BACKUP_THEN_DELETE) -> WorkspaceSpec:
    return WorkspaceSpec(
        name=name,
        source=GitSource("https://example.com/app"),
        agent=AGENTS["claude"],
        vmgen=VmgenInstall(version="0.0.0", find_links="http://wheels.example:8080/"),
        ssh_keys=(PUBKEY,),
        size=size,
        watchdog=WatchdogTuning(action=action),
    )


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeAws]:
    with FakeAws() as fake:
        yield fake


@pytest.fixture
def aws(cloud: FakeAws, home: Path) -> Iterator[AwsProvider]:
    provider = provider_for(cloud)
    yield provider
    for workspace in provider.workspaces():
        provider.delete(workspace.name)
    assert cloud.vmgen_resources() == {}


def provider_for(cloud: FakeAws, key: str = ACCESS_KEY) -> AwsProvider:
    return AwsProvider(region=cloud.region, endpoint=cloud.endpoint, poll_interval=0.1, session=session_for(key))


@functools.cache
def session_for(key: str) -> boto3.Session:
    """One per access key for the module: a new session reads boto3's models of EC2 and SSM
    again (half a second of CPU), and the providers only make their clients from it."""
    return boto3.Session(aws_access_key_id=key, aws_secret_access_key=SECRET_KEY)


def only_instance(cloud: FakeAws, name: str) -> dict[str, Any]:
    found = cloud.client().describe_instances(Filters=[{"Name": "tag:vmgen-ws", "Values": [name]}])["Reservations"]
    return found[0]["Instances"][0]


def test_a_workspace_is_an_instance_locked_down_as_promised(aws: AwsProvider, cloud: FakeAws) -> None:
    made = aws.create(spec("app"), USER_DATA)
    assert (made.name, made.provider, made.status, made.server_type) == (
        "app",
        "aws",
        WorkspaceStatus.RUNNING,
        "t3.medium",
    )
    assert made.ssh is not None and made.ssh.host == made.address and made.price_hourly == 0.0416
    instance = only_instance(cloud, "app")
    ec2 = cloud.client()
    # IMDSv2 only, one hop: a container on the VM cannot reach the metadata service.
    options = instance["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 1)
    attribute = ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attribute["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    # Gzipped: cloud-init uncompresses it, and EC2's 16 KiB holds twice the text.
    assert gzip.decompress(base64.b64decode(user_data["UserData"]["Value"])).decode() == USER_DATA
    assert instance["ImageId"] == cloud.ami  # Canonical's parameter, resolved at run time
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["vmgen"] == "1" and tags["vmgen-ws"] == "app" and tags["Name"] == "app"
    assert tags["vmgen-owner-id"] and "@" in tags["vmgen-owner"]
    assert made.owner_id == tags["vmgen-owner-id"]
    root = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}])
    (volume,) = root["Volumes"]
    assert (volume["VolumeType"], volume["Size"]) == ("gp3", 40)
    (mapping,) = instance["BlockDeviceMappings"]
    assert mapping["Ebs"]["DeleteOnTermination"] is True
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "tag:vmgen", "Values": ["1"]}])["SecurityGroups"]
    assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [group["GroupId"]]
    assert sorted(p["FromPort"] for p in group["IpPermissions"]) == [22, 80, 443]
    assert all(
        p["IpRanges"] == [{"CidrIp": "0.0.0.0/0", "Description": f"vmgen {p['FromPort']}"}]
        for p in group["IpPermissions"]
    )
    (key,) = ec2.describe_key_pairs(Filters=[{"Name": "tag:vmgen", "Values": ["1"]}])["KeyPairs"]
    assert instance["KeyName"] == key["KeyName"]


def test_list_get_stop_start_and_destroy_by_tags(aws: AwsProvider, cloud: FakeAws) -> None:
    aws.create(spec("one"), USER_DATA)
    aws.create(spec("two", size="c7i.large"), USER_DATA)
    # Not vmgen's: an instance of the user's own in the same account is never listed or touched.
    theirs = cloud.client().run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert [(w.name, w.server_type) for w in aws.workspaces()] == [("one", "t3.medium"), ("two", "c7i.large")]
    stopped = aws.stop("one")
    assert stopped.status == WorkspaceStatus.STOPPED and stopped.ssh is None
    assert aws.get("one") == stopped
    assert aws.start("one").status == WorkspaceStatus.RUNNING
    assert aws.delete("one") == ""
    assert aws.get("one") is None
    # The shared pieces stay while a workspace uses them, and go with the last.
    assert cloud.vmgen_resources() == {"instances": 1, "security groups": 1, "key pairs": 1, "volumes": 1}
    assert aws.delete("two") == ""
    assert cloud.vmgen_resources() == {}
    assert (
        cloud.client().describe_instances(InstanceIds=[theirs])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "running"
    )
    cloud.client().terminate_instances(InstanceIds=[theirs])


def test_a_taken_name_an_unknown_workspace_and_an_unknown_type_are_refused(aws: AwsProvider, cloud: FakeAws) -> None:
    aws.create(spec("taken"), USER_DATA)
    with pytest.raises(WorkspaceExists, match="'taken' already exists on aws"):
        aws.create(spec("taken"), USER_DATA)
    with pytest.raises(WorkspaceNotFound):
        aws.stop("nobody")
    with pytest.raises(ServerTypeUnavailable, match=r"'m9z\.huge' is not one vmgen offers on aws"):
        aws.create(spec("odd", size="m9z.huge"), USER_DATA)
    assert [w.name for w in aws.workspaces()] == ["taken"]


def test_a_users_own_group_named_vmgen_is_neither_taken_over_nor_touched(aws: AwsProvider, cloud: FakeAws) -> None:
    ec2 = cloud.client()
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    theirs = ec2.create_security_group(GroupName="vmgen", Description="the user's own", VpcId=vpc)["GroupId"]
    try:
        with pytest.raises(UsageError, match="already has a security group named 'vmgen' that vmgen did not make"):
            aws.create(spec("clash"), USER_DATA)
        assert cloud.vmgen_resources() == {}
    finally:
        ec2.delete_security_group(GroupId=theirs)


def test_an_image_aws_does_not_have_is_a_clear_error_before_anything_is_made(aws: AwsProvider, cloud: FakeAws) -> None:
    with pytest.raises(UsageError, match="AWS has no image ami-0000000000000dead in us-east-1"):
        aws.create(replace(spec("imageless"), image="ami-0000000000000dead"), USER_DATA)
    assert cloud.vmgen_resources() == {}


def test_an_instance_type_aws_does_not_have_is_the_same_error(aws: AwsProvider, cloud: FakeAws) -> None:
    cloud.fail("RunInstances", "InvalidInstanceType", "The following supplied instance types do not exist: [t3.small]")
    with pytest.raises(ServerTypeUnavailable, match="do not exist"):
        aws.create(spec("gone-type"), USER_DATA)
    assert cloud.vmgen_resources() == {}  # the shared pieces made for it went too


def test_user_data_over_ec2s_limit_once_gzipped_is_refused_before_anything_is_made(
    aws: AwsProvider, cloud: FakeAws
) -> None:
    incompressible = "#cloud-config\n# " + base64.b64encode(secrets.token_bytes(18 * 1024)).decode() + "\n"
    assert len(incompressible) < aws.user_data_limit  # the text passes the launch's own check
    with pytest.raises(UserDataTooLarge, match="KiB gzipped; EC2 accepts at most 16 KiB"):
        aws.create(spec("bulky"), incompressible)
    assert cloud.vmgen_resources() == {}


def test_a_quota_is_a_provider_limit_and_leaves_nothing(aws: AwsProvider, cloud: FakeAws) -> None:
    cloud.fail(
        "RunInstances",
        "InstanceLimitExceeded",
        "Your quota allows for 0 more running instance(s). You requested at least 1",
    )
    with pytest.raises(ProviderLimit, match="quota allows for 0 more"):
        aws.create(spec("over"), USER_DATA)
    assert cloud.vmgen_resources() == {}


def test_bad_credentials_are_an_auth_error_before_anything_is_made(cloud: FakeAws, home: Path) -> None:
    bad = provider_for(cloud, key="AKIAWRONGWRONGWRONG0")
    with pytest.raises(ProviderAuthError, match="AWS refused the credentials"):
        bad.workspaces()
    with pytest.raises(ProviderAuthError):
        bad.create(spec("nope"), USER_DATA)
    assert cloud.vmgen_resources() == {}


def test_no_credentials_at_all_say_where_they_are_looked_for(
    cloud: FakeAws, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", cloud.endpoint)
    provider = get_provider("aws", Settings(aws_region="us-east-1"))
    with pytest.raises(ProviderAuthError, match="no AWS credentials: set AWS_ACCESS_KEY_ID"):
        provider.workspaces()


def test_settings_reach_boto3s_chain(cloud: FakeAws, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in cloud.environment().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    provider = get_provider("aws", Settings(aws_region="us-east-1"))
    assert isinstance(provider, AwsProvider) and provider.region == "us-east-1"  # aws_region wins
    assert provider.workspaces() == []
    fallback = get_provider("aws", Settings())
    assert isinstance(fallback, AwsProvider) and fallback.region == "eu-west-1"  # else boto3's own


def test_a_named_subnet_is_used_and_an_unknown_one_is_an_error(aws: AwsProvider, cloud: FakeAws) -> None:
    ec2 = cloud.client()
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    try:
        aws.subnet = subnet
        aws.create(spec("in-subnet"), USER_DATA)
        instance = only_instance(cloud, "in-subnet")
        assert (instance["SubnetId"], instance["VpcId"]) == (subnet, vpc)
        aws.delete("in-subnet")
        aws.subnet = "subnet-0000000000000dead"
        with pytest.raises(UsageError, match="no subnet subnet-0000000000000dead in us-east-1"):
            aws.create(spec("lost"), USER_DATA)
    finally:
        aws.subnet = ""
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_powering_off_to_keep_the_disk_is_refused_where_it_would_terminate(aws: AwsProvider) -> None:
    with pytest.raises(UsageError, match="idle_action=poweroff would lose the work"):
        aws.check(spec("keep", action=IdleAction.POWEROFF))
    aws.check(spec("fine", action=IdleAction.DELETE))


def test_the_vm_deletes_itself_without_any_credential(aws: AwsProvider) -> None:
    self_delete = aws.self_delete_spec()
    assert self_delete.secrets == () and self_delete.metadata_url == "http://169.254.169.254/latest"
    assert replace(self_delete, provider="x").metadata_blocks == (("169.254.169.254", None),)


def test_the_vm_half_reads_its_address_through_an_imdsv2_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The VM half asks the token first, then the value with it (the fake's IMDS refuses without)."""

    class Fake:
        def __init__(self) -> None:
            self.tokens: set[str] = set()

        def instance_for(self, address: str) -> Any:
            return type("I", (), {"id": "i-0abc", "public_ip": "203.0.113.7"})()

    server = ThreadingHTTPServer(("127.0.0.1", 0), ImdsHandler)
    server.fake = Fake()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/latest"
        settings = replace(WatchSettings(name="app", provider="aws"), metadata_url=url)
        assert metadata(settings, "public-ipv4") == "203.0.113.7"
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"{url}/meta-data/public-ipv4", timeout=5)
    finally:
        server.shutdown()
