"""Workspaces on AWS EC2, through boto3.

Credentials and region come from boto3's own chain (AWS_ACCESS_KEY_ID / AWS_PROFILE / SSO / an
instance role; AWS_DEFAULT_REGION, ~/.aws/config), the region overridable by `aws_region`, the endpoint by
boto3's AWS_ENDPOINT_URL. Everything vmgen makes carries the tag `vmgen=1`: the instances (plus
`vmgen-ws=<name>`, `Name` and the owner's tags, on their root volume too), one security group
`vmgen` per VPC (inbound 22/80/443) and the user's imported key pair. The shared pieces go with the
last workspace.

The instance boots Canonical's Ubuntu 24.04, resolved at run time from Canonical's SSM public
parameter, on a gp3 root volume deleted with it; its metadata service wants IMDSv2 tokens with a
hop limit of 1 (a container on the VM cannot reach it). It is made with
InstanceInitiatedShutdownBehavior=terminate: the VM deletes itself by powering off, with no AWS
credential on it (`vmgen.vmside.providers.aws`). So on AWS every power-off from inside the VM
ends the instance and its disk; `check` refuses the idle action that would power off to keep
the disk.

Baked images are AMIs (`bake`): a build instance (tagged `vmgen-bake=1`, never a workspace) boots
the base image with the bake user-data, is provisioned over SSH as root, cleaned of that access,
stopped through the API (its shutdown behaviour is `stop`: an OS power-off must not terminate it
before the image is made), imaged with CreateImage (the stamps and owner as the AMI's tags, and its
EBS snapshots tagged `vmgen=1`), and terminated once the AMI is `available`. `image rm` deregisters
the AMI and deletes its snapshots: DeregisterImage alone leaves them, billed.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, WaiterError

from ...contract.enums import IdleAction, WorkspaceStatus
from ...errors import (
    BakeFailed,
    ProviderActionFailed,
    ProviderAuthError,
    ProviderLimit,
    ProviderUnavailable,
    ResourceLeftBehind,
    ServerTypeUnavailable,
    UsageError,
    UserDataTooLarge,
    VmgenError,
    WorkspaceExists,
    WorkspaceNotFound,
)
from ..spec import SIZE_PRESETS, WorkspaceSpec
from ..stamps import AGENT_VERSION_LABEL, BAKED_LABEL, BASE_LABEL, BakedImage, ImageStamp, label_value
from .aws_sizes import (
    GP3_GB_MONTH,
    HOURS_A_MONTH,
    PRICE_REGION,
    ROOT_GB,
    SNAPSHOT_GB_MONTH,
    TYPES,
    instance_type,
    price_hourly,
)
from .base import (
    LABEL,
    OWNER_ID_LABEL,
    OWNER_LABEL,
    WS_LABEL,
    BakeOptions,
    KeptDisk,
    Leftover,
    SelfDelete,
    Size,
    SSHEndpoint,
    Workspace,
    owned,
    owner_labels,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import ImageTypeDef, InstanceTypeDef, TagSpecificationTypeDef
    from mypy_boto3_ssm import SSMClient

    from ...selfwheel import VmgenWheel
    from ..builder.install import InstallPlan
    from ..config import Settings

DEFAULT_REGION = "us-east-1"
# Canonical's public parameter for the current Ubuntu 24.04 AMI (gp3 root, amd64), per region
# (https://documentation.ubuntu.com/aws/aws-how-to/instances/find-ubuntu-images/).
UBUNTU_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
METADATA_URL = "http://169.254.169.254/latest"
EC2_USER_DATA_BYTES = 16 * 1024
SECURITY_GROUP = "vmgen"
BAKE_LABEL = "vmgen-bake"  # a build instance: it holds no workspace
# What a bake's base is called when no image is configured (Canonical's parameter): the base tag
# of the AMIs baked from it, which a launch from the same configuration picks.
DEFAULT_BASE = "ubuntu-24.04"
# Every state but terminated: what still holds a name, an address or a bill.
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
STATUS = {
    "pending": WorkspaceStatus.STARTING,
    "running": WorkspaceStatus.RUNNING,
    "stopping": WorkspaceStatus.STOPPING,
    "stopped": WorkspaceStatus.STOPPED,
    "shutting-down": WorkspaceStatus.DELETING,
}
# EC2's error codes (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
AUTH_CODES = {
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "OptInRequired",
}
LIMIT_CODES = {
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "ResourceLimitExceeded",
    "VolumeLimitExceeded",
    "SecurityGroupLimitExceeded",
    "RequestLimitExceeded",
}
NO_ROOM_CODES = {"InsufficientInstanceCapacity", "InsufficientCapacity", "Unsupported"}
NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidKeyPair.NotFound", "InvalidGroup.NotFound"}
# An AMI or snapshot already gone is removed (EC2's codes for them, "Error codes").
IMAGE_GONE_CODES = {"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidSnapshot.NotFound"}


@contextmanager
def api_errors(action: str) -> Iterator[None]:
    """Translate boto3's exceptions into one line a user can act on."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code in AUTH_CODES:
            raise ProviderAuthError(
                f"AWS refused the credentials to {action} ({code}): check AWS_ACCESS_KEY_ID / AWS_PROFILE "
                "and the key's permissions"
            ) from None
        if code in LIMIT_CODES:
            raise ProviderLimit(f"AWS limit reached while trying to {action}: {message} ({code})") from None
        if code == "InvalidInstanceType" or (code.startswith("InvalidParameterValue") and "instance type" in message):
            raise ServerTypeUnavailable(f"AWS does not offer that instance type here: {message}") from None
        if code in NO_ROOM_CODES:
            raise ProviderActionFailed(
                f"AWS has no room to {action} right now ({message}): try again later or another --type"
            ) from None
        raise VmgenError(f"AWS API error while trying to {action}: {message} ({code})") from None
    except NoCredentialsError:
        raise ProviderAuthError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or `aws configure`"
        ) from None
    except EndpointConnectionError:
        raise ProviderUnavailable("cannot reach the AWS API: is the network up?") from None
    except BotoCoreError as exc:
        raise VmgenError(f"AWS client error while trying to {action}: {exc}") from None


def key_pair_name(public_key: str) -> str:
    """One key pair per public key, named after it (EC2's own fingerprints differ by key type)."""
    return "vmgen-" + hashlib.sha256(public_key.split()[1].encode()).hexdigest()[:16]


def tagged(kind: str, values: dict[str, str]) -> TagSpecificationTypeDef:
    """The tags a resource is made with (its TagSpecifications entry)."""
    return cast(
        "TagSpecificationTypeDef", {"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in values.items()]}
    )


class AwsProvider:
    name = "aws"
    # EC2 takes 16 KiB of UserData (before its base64); vmgen's text travels gzipped (cloud-init
    # uncompresses gzip user-data on any datasource: its "User-Data Formats"), a domain with the
    # desktop's 23.2 KiB as 11 KiB. The text's limit here; create() checks the gzipped size.
    user_data_limit = 32 * 1024
    public = True
    shares_local_folders = False
    # A stopped instance is not billed; its EBS volume is (stop_note says so).
    stop_bills = False
    # Keeps no snapshot of a workspace's disk (kept_disks): the VM holds no AWS credential. Baked
    # AMIs are another thing (bake, baked_images).
    snapshots = False
    auto_bakes = True  # a cloud: every cold launch pays minutes of installs
    metadata_address = "169.254.169.254"
    price_source = f"AWS's on-demand Linux prices for {PRICE_REGION} (USD; a table in vmgen, aws_sizes.py)"
    currency = "USD"
    bake_methods: tuple[str, ...] = ()
    secret_variables: tuple[str, ...] = ()  # the VM deletes itself by powering off
    host_setting = ""  # servers of its own cloud, none of the user's
    # Right after its last instance is terminated, EC2 may still count the security group as in
    # use (DependencyViolation) while the network interface goes: the waits between tries.
    GROUP_IN_USE_WAITS: tuple[float, ...] = (2.0, 4.0, 8.0)
    # How long a bake waits for its AMI to be `available` (EC2 copies the disk into snapshots:
    # minutes for a workspace's disk), and for the build instance to stop.
    IMAGE_WAIT_MINUTES = 30.0

    def __init__(
        self,
        region: str = "",
        subnet: str = "",
        image: str = "",
        endpoint: str | None = None,
        poll_interval: float = 5.0,
        session: boto3.Session | None = None,
    ) -> None:
        self.session = session or boto3.Session()
        self.region = region or self.session.region_name or DEFAULT_REGION
        self.subnet = subnet
        self.image = image
        self.poll_interval = poll_interval
        config = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="vmgen")
        self.ec2: EC2Client = self.session.client("ec2", region_name=self.region, endpoint_url=endpoint, config=config)
        self.ssm: SSMClient = self.session.client("ssm", region_name=self.region, endpoint_url=endpoint, config=config)

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsProvider:
        return cls(region=settings.aws_region, subnet=settings.aws_subnet, image=settings.image)

    @classmethod
    def configured_image(cls, settings: Settings) -> str:
        return settings.image

    # --- the Provider protocol -------------------------------------------------------------

    def check(self, spec: WorkspaceSpec) -> None:
        instance_type(spec.size)
        if spec.watchdog.action is IdleAction.POWEROFF:
            raise UsageError(
                "on aws a workspace that powers itself off is terminated with its disk (that is how it deletes "
                "itself without AWS credentials), so idle_action=poweroff would lose the work: configure a backup "
                "store (the idle action becomes backup-then-delete) or choose idle_action=delete"
            )

    def create(self, spec: WorkspaceSpec, user_data: str) -> Workspace:
        self.check(spec)
        payload = gzip.compress(user_data.encode(), mtime=0)
        if len(payload) > EC2_USER_DATA_BYTES:
            raise UserDataTooLarge(
                f"rendered user-data is {len(payload) / 1024:.1f} KiB gzipped; EC2 accepts at most "
                f"{EC2_USER_DATA_BYTES // 1024} KiB (fewer extra packages or files help)"
            )
        with api_errors("check existing instances"):
            if self._instance(spec.name) is not None:
                raise WorkspaceExists(f"a workspace named {spec.name!r} already exists on aws")
        chosen = instance_type(spec.size)
        with api_errors("find the network"):
            subnet, vpc = self._network()
        with api_errors("find the Ubuntu image"):
            image = spec.image or self._image()
            root_device = self._root_device(image)
        labels = {"Name": spec.name, LABEL: "1", WS_LABEL: spec.name, **owner_labels()}
        try:  # whatever of the shared pieces a failed create made goes (unless a workspace uses it)
            with api_errors("import the SSH key"):
                key = self._key_pair(spec.ssh_keys[0])
            with api_errors("create the security group"):
                group = self._security_group(vpc)
            with api_errors(f"run a {chosen} instance in {self.region}"):
                made = self.ec2.run_instances(
                    ImageId=image,
                    InstanceType=chosen,  # type: ignore[arg-type]
                    MinCount=1,
                    MaxCount=1,
                    KeyName=key,
                    UserData=payload,  # type: ignore[arg-type]
                    NetworkInterfaces=[
                        {"DeviceIndex": 0, "SubnetId": subnet, "Groups": [group], "AssociatePublicIpAddress": True}
                    ],
                    BlockDeviceMappings=[
                        {
                            "DeviceName": root_device,
                            "Ebs": {"VolumeSize": ROOT_GB, "VolumeType": "gp3", "DeleteOnTermination": True},
                        }
                    ],
                    MetadataOptions={
                        "HttpTokens": "required",
                        "HttpPutResponseHopLimit": 1,
                        "HttpEndpoint": "enabled",
                    },
                    InstanceInitiatedShutdownBehavior="terminate",
                    TagSpecifications=[tagged(kind, labels) for kind in ("instance", "volume", "network-interface")],
                )
        except BaseException:
            self._remove_shared_quietly()
            raise
        instance_id = made["Instances"][0]["InstanceId"]
        try:
            with api_errors("wait for the instance to run"):
                self._wait("instance_running", instance_id)
                return self._describe(self._by_id(instance_id))
        except BaseException as failure:
            self._terminate_half_made(spec.name, instance_id, failure)
            raise

    def get(self, name: str) -> Workspace | None:
        with api_errors("read instances"):
            found = self._instance(name)
        return self._describe(found) if found else None

    def workspaces(self) -> list[Workspace]:
        with api_errors("list instances"):
            found = self._instances([{"Name": f"tag:{LABEL}", "Values": ["1"]}])
        return sorted((self._describe(i) for i in found), key=lambda w: w.name)

    def start(self, name: str) -> Workspace:
        instance = self._require(name)
        with api_errors("start the instance"):
            self.ec2.start_instances(InstanceIds=[instance["InstanceId"]])
            self._wait("instance_running", instance["InstanceId"])
            return self._describe(self._by_id(instance["InstanceId"]))

    def stop(self, name: str) -> Workspace:
        instance = self._require(name)
        with api_errors("stop the instance"):
            # Stopped through the API, not from inside: the shutdown behaviour does not apply.
            self.ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
            self._wait("instance_stopped", instance["InstanceId"])
            return self._describe(self._by_id(instance["InstanceId"]))

    def delete(self, name: str) -> str:
        """Terminate the workspace's instance (its root volume goes with it) and, with the last
        one, the shared security group and key pair; returns a note about what is left, or ""."""
        with api_errors("read instances"):
            instance = self._instance(name)
        if instance is not None:
            self._terminate(name, instance["InstanceId"])
        with api_errors("remove the shared security group and key pair"):
            return self._remove_shared_when_unused(self.GROUP_IN_USE_WAITS)

    def leftovers(self, name: str | None = None) -> list[Leftover]:
        """vmgen's volumes no instance holds (the root volume goes with its instance: one left is a
        cleanup cut short)."""
        filters: list[Any] = [
            {"Name": f"tag:{LABEL}", "Values": ["1"]},
            {"Name": "status", "Values": ["available"]},
        ]
        if name:
            filters.append({"Name": f"tag:{WS_LABEL}", "Values": [name]})
        with api_errors("list volumes"):
            volumes = self.ec2.describe_volumes(Filters=filters)["Volumes"]
        return [
            Leftover(
                name=found.get(WS_LABEL, ""),
                what=f"volume {volume['VolumeId']}",
                owner=found.get(OWNER_LABEL, ""),
                owner_id=found.get(OWNER_ID_LABEL, ""),
            )
            for volume in volumes
            for found in [{t["Key"]: t["Value"] for t in volume.get("Tags", [])}]
        ]

    def kept_disks(self, name: str | None = None) -> list[KeptDisk]:
        return []  # the VM keeps no snapshot of itself: it holds no AWS credential

    def restore_kept(self, name: str, snapshot: str, ssh_public_key: str, user_data: str) -> Workspace:
        raise UsageError("aws workspaces keep no snapshots; `vmgen restore NAME` restores from a backup")

    def remove_kept(self, snapshot: str) -> None:
        raise UsageError("aws workspaces keep no snapshots")

    def self_delete_spec(self) -> SelfDelete:
        return SelfDelete(provider=self.name, metadata_url=METADATA_URL)

    def baked_images(self, base: str | None = None) -> list[BakedImage]:
        """AMIs vmgen baked in this account (owned by self, tagged), newest first; only those
        from `base` when given."""
        return [self._baked(image) for image in self._baked_amis(base)]

    def newest_baked(self, spec: WorkspaceSpec | None = None) -> BakedImage | None:
        """The newest of this user's own AMIs baked from the configured base (another user's in a
        shared account boots only when named). Every AMI vmgen bakes boots every size: all its
        types are x86_64 and the bake's disk is a workspace's."""
        for image in self._baked_amis(self._base()):
            baked = self._baked(image)
            if owned(baked.owner, baked.owner_id):
                return baked
        return None

    def remove_baked(self, image: BakedImage) -> None:
        """Deregister the AMI, then delete its EBS snapshots (EC2 refuses to delete a snapshot a
        registered AMI uses, and DeregisterImage alone leaves them, billed)."""
        with api_errors(f"read the AMI {image.ref}"):
            found = self._ami(image.ref)
        snapshots = _snapshots_of(found) if found else []
        with api_errors(f"deregister the AMI {image.ref}"):
            _gone_is_done(lambda: self.ec2.deregister_image(ImageId=image.ref))
        for snapshot in snapshots:
            with api_errors(f"delete the snapshot {snapshot} of {image.ref}"):
                _gone_is_done(partial(self.ec2.delete_snapshot, SnapshotId=snapshot))

    def bake(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], options: BakeOptions
    ) -> BakedImage | None:
        """An AMI baked on a build instance of ours over SSH (see the module docstring)."""
        from ..spec import discover_public_keys
        from ..ssh import default_identities

        if options.method:
            raise UsageError(f"aws bakes its own way, not with {options.method}")
        keys = discover_public_keys(options.ssh_public_keys)
        if not keys:
            raise UsageError("baking on AWS needs an SSH key: `ssh-keygen -t ed25519` (or set ssh_public_keys)")
        progress("baking an AMI on a build instance")
        return self.bake_on_instance(
            plan, wheel, progress, size=options.size, public_key=keys[0], identities=default_identities()
        )

    def bake_on_instance(
        self,
        plan: InstallPlan,
        wheel: VmgenWheel,
        progress: Callable[[str], None],
        *,
        size: str,
        public_key: str,
        identities: tuple[Path, ...],
        timeout: float = 1800,
    ) -> BakedImage:
        """Bake an AMI of the install plan on a fresh build instance (never a workspace). Whatever
        fails, the build instance goes, and so do an AMI not yet available and its snapshots, and
        the security group when no other instance uses it: a failed bake leaves nothing."""
        from ..builder.hostkeys import generate_host_key
        from ..builder.render import BakeAccess, render_bake_user_data
        from ..ssh import SSHTarget
        from .ssh_bake import bake_over_ssh

        if wheel.sha256 != plan.vmgen.wheel_sha256:
            raise BakeFailed("the vmgen wheel to bake is not the one the install plan names")
        chosen = instance_type(size)
        host_key = generate_host_key()
        payload = gzip.compress(render_bake_user_data(plan, BakeAccess(host_key, (public_key,))).encode(), mtime=0)
        if len(payload) > EC2_USER_DATA_BYTES:
            raise UserDataTooLarge(
                f"the bake's user-data is {len(payload) / 1024:.1f} KiB gzipped; EC2 accepts at most "
                f"{EC2_USER_DATA_BYTES // 1024} KiB"
            )
        name = f"vmgen-bake-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        base = self._base()
        with api_errors("find the network"):
            subnet, vpc = self._network()
        with api_errors("find the base image"):
            image = self._image()
            root_device = self._root_device(image)
        labels = {"Name": name, LABEL: "1", BAKE_LABEL: "1", WS_LABEL: name, **owner_labels()}
        instance_id = ""
        try:
            with api_errors("create the security group"):
                group = self._security_group(vpc)
            progress(f"booting a {chosen} build instance from {base}")
            with api_errors(f"run the {chosen} build instance"):
                made = self.ec2.run_instances(
                    ImageId=image,
                    InstanceType=chosen,  # type: ignore[arg-type]
                    MinCount=1,
                    MaxCount=1,
                    UserData=payload,  # type: ignore[arg-type]
                    NetworkInterfaces=[
                        {"DeviceIndex": 0, "SubnetId": subnet, "Groups": [group], "AssociatePublicIpAddress": True}
                    ],
                    BlockDeviceMappings=[
                        {
                            "DeviceName": root_device,
                            "Ebs": {"VolumeSize": ROOT_GB, "VolumeType": "gp3", "DeleteOnTermination": True},
                        }
                    ],
                    MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
                    InstanceInitiatedShutdownBehavior="stop",
                    TagSpecifications=[tagged(kind, labels) for kind in ("instance", "volume", "network-interface")],
                )
            instance_id = made["Instances"][0]["InstanceId"]
            with api_errors("wait for the build instance to run"):
                self._wait("instance_running", instance_id)
                address = self._by_id(instance_id).get("PublicIpAddress", "")
            with tempfile.TemporaryDirectory(prefix="vmgen-bake-") as scratch:
                known_hosts = Path(scratch) / "known_hosts"
                known_hosts.write_text(f"{name} {host_key.public_openssh}\n")
                target = SSHTarget(SSHEndpoint(host=address, user="root"), known_hosts, name, identities)
                version = bake_over_ssh(target, wheel, progress, timeout, plan.agent_version_command)
            found = self.image_of(instance_id, name, plan.stamp, version, progress)
        except BaseException as failure:
            self._undo_bake(name, instance_id, failure)
            raise
        progress("terminating the build instance")
        self._terminate(name, instance_id)
        self._remove_shared_quietly()
        return self._baked(found)

    def image_of(
        self, instance_id: str, name: str, stamp: ImageStamp, agent_version: str, progress: Callable[[str], None]
    ) -> ImageTypeDef:
        """Stop the provisioned build instance through the API, make its AMI (named `name`, tagged
        with the stamps, the base and the owner), wait until it is available and tag its
        snapshots. An AMI that does not become available is deregistered and its snapshots
        deleted before the error."""
        progress("stopping the build instance")
        with api_errors("stop the build instance"):
            self.ec2.stop_instances(InstanceIds=[instance_id])
            self._wait("instance_stopped", instance_id)
        progress("making the AMI")
        tags = stamp.labels(self._base()) | owner_labels() | {LABEL: "1", "Name": name}
        if agent_version:
            tags[AGENT_VERSION_LABEL] = agent_version
        with api_errors("make the AMI"):
            ami = self.ec2.create_image(
                InstanceId=instance_id,
                Name=name,
                Description=f"vmgen bake: {stamp.describe()}",
                TagSpecifications=[tagged("image", tags)],
            )["ImageId"]
        try:
            progress(f"waiting for {ami} to be available (EC2 copies the disk into snapshots)")
            self._wait_for_image(ami)
            with api_errors("tag the AMI's snapshots"):
                found = self._ami(ami)
                if found is None:
                    raise BakeFailed(f"the AMI {ami} was gone once available")
                snapshots = _snapshots_of(found)
                if snapshots:  # so a snapshot an interrupted `image rm` left is still vmgen's
                    self.ec2.create_tags(
                        Resources=snapshots, Tags=[{"Key": LABEL, "Value": "1"}, {"Key": "Name", "Value": name}]
                    )
            return found
        except BaseException as failure:
            try:
                self.remove_baked(BakedImage(ami, name, datetime.now(UTC), stamp, ""))
            except VmgenError as left:
                raise ResourceLeftBehind(
                    f"{str(failure) or type(failure).__name__}; the AMI {ami} may be left, and billed for its "
                    f"snapshots ({left}): `vmgen image rm {ami}` or the AWS console removes it"
                ) from None
            raise

    def _wait_for_image(self, ami: str) -> None:
        attempts = max(1, int(self.IMAGE_WAIT_MINUTES * 60 / self.poll_interval))
        with api_errors(f"wait for {ami}"):
            waiter: Any = self.ec2.get_waiter("image_available")
            try:
                waiter.wait(ImageIds=[ami], WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": attempts})
            except WaiterError as exc:
                last: Any = exc.last_response or {}
                state = (last.get("Images") or [{}])[0].get("State", "unknown")
                raise BakeFailed(
                    f"the AMI {ami} was not available after {self.IMAGE_WAIT_MINUTES:g} minutes (state {state}); "
                    "the bake was undone"
                ) from None

    def _undo_bake(self, name: str, instance_id: str, failure: BaseException) -> None:
        """After a failed bake (its AMI already undone by image_of): the build instance, and the
        security group if unused. Tidying never hides why the bake failed; an instance that
        cannot go is named with it."""
        if instance_id:
            try:
                self._terminate(name, instance_id)
            except VmgenError as left:
                raise ResourceLeftBehind(f"{str(failure) or type(failure).__name__}; {left}") from None
        self._remove_shared_quietly()

    def _base(self) -> str:
        return self.image or DEFAULT_BASE

    def _baked_amis(self, base: str | None) -> list[ImageTypeDef]:
        filters: list[Any] = [
            {"Name": f"tag:{BAKED_LABEL}", "Values": ["1"]},
            {"Name": f"tag:{LABEL}", "Values": ["1"]},
            {"Name": "state", "Values": ["available"]},
        ]
        if base:
            filters.append({"Name": f"tag:{BASE_LABEL}", "Values": [label_value(base)]})
        with api_errors("list AMIs"):
            images = self.ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
        found = [i for i in images if ImageStamp.from_labels(_tags(i)) is not None]
        return sorted(found, key=lambda i: i.get("CreationDate", ""), reverse=True)

    def _baked(self, image: ImageTypeDef) -> BakedImage:
        tags = _tags(image)
        stamp = ImageStamp.from_labels(tags)
        assert stamp is not None, "listed for its stamps"
        return BakedImage(
            ref=image["ImageId"],
            name=image.get("Name") or image["ImageId"],
            created_at=datetime.fromisoformat(image["CreationDate"].replace("Z", "+00:00")).astimezone(UTC),
            stamp=stamp,
            base=tags.get(BASE_LABEL, ""),
            owner=tags.get(OWNER_LABEL, ""),
            owner_id=tags.get(OWNER_ID_LABEL, ""),
            agent_version=tags.get(AGENT_VERSION_LABEL, ""),
        )

    def _ami(self, ami: str) -> ImageTypeDef | None:
        try:
            found = self.ec2.describe_images(ImageIds=[ami])["Images"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") not in IMAGE_GONE_CODES:
                raise
            return None
        return found[0] if found else None

    def stop_note(self) -> str:
        return (
            f"AWS does not bill a stopped instance, but its {ROOT_GB} GB gp3 volume still costs "
            f"about {ROOT_GB * GP3_GB_MONTH:.2f} USD a month; `vmgen destroy` ends that"
        )

    def image_cost_note(self) -> str:
        return (
            f"AWS bills an AMI's EBS snapshots per GB a month (about {SNAPSHOT_GB_MONTH} USD in {PRICE_REGION}; "
            "`vmgen image list` shows them, `vmgen image rm` deletes them)"
        )

    def price_hourly(self, spec: WorkspaceSpec) -> float | None:
        return price_hourly(instance_type(spec.size))

    def sizes(self, location: str | None = None) -> list[Size]:
        presets = {instance_type(preset): preset for preset in SIZE_PRESETS}
        return [
            Size(
                location or self.region,
                t.name,
                presets.get(t.name, ""),
                t.cores,
                t.memory_gb,
                ROOT_GB,
                t.price_hourly,
                round(t.price_hourly * HOURS_A_MONTH, 2),
            )
            for t in sorted(TYPES, key=lambda t: (t.cores, t.memory_gb, t.name))
        ]

    # --- internals ------------------------------------------------------------------------

    def _instances(self, filters: list[Any]) -> list[InstanceTypeDef]:
        filters = [*filters, {"Name": "instance-state-name", "Values": LIVE_STATES}]
        pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def _instance(self, name: str) -> InstanceTypeDef | None:
        found = self._instances([{"Name": f"tag:{WS_LABEL}", "Values": [name]}])
        return found[0] if found else None

    def _by_id(self, instance_id: str) -> InstanceTypeDef:
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def _require(self, name: str) -> InstanceTypeDef:
        with api_errors("read instances"):
            found = self._instance(name)
        if found is None:
            raise WorkspaceNotFound(f"no workspace named {name!r} on aws")
        return found

    def _wait(self, waiter: Any, instance_id: str, minutes: float = 10) -> None:
        attempts = max(1, int(minutes * 60 / self.poll_interval))
        self.ec2.get_waiter(waiter).wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": attempts}
        )

    def _network(self) -> tuple[str, str]:
        """(subnet, VPC): the named subnet, else a default subnet of the default VPC."""
        if self.subnet:
            try:
                found = self.ec2.describe_subnets(SubnetIds=[self.subnet])["Subnets"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidSubnetID.NotFound":
                    raise
                raise UsageError(f"no subnet {self.subnet} in {self.region} (aws_subnet)") from None
        else:
            found = self.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
            if not found:
                raise UsageError(
                    f"{self.region} has no default VPC: name a subnet with a route to the internet (aws_subnet)"
                )
        subnet = min(found, key=lambda s: s["AvailabilityZone"])
        return subnet["SubnetId"], subnet["VpcId"]

    def _image(self) -> str:
        """The configured AMI, an SSM parameter naming one, or Canonical's current Ubuntu 24.04."""
        if self.image.startswith("ami-"):
            return self.image
        parameter = self.image if self.image.startswith("/") else UBUNTU_PARAMETER
        try:
            return self.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                raise UsageError(f"AWS has no image parameter {parameter} in {self.region}") from None
            raise

    def _root_device(self, image: str) -> str:
        try:
            images = self.ec2.describe_images(ImageIds=[image])["Images"]
        except ClientError as exc:
            if not exc.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
                raise
            images = []
        if not images:
            raise UsageError(f"AWS has no image {image} in {self.region}")
        return images[0].get("RootDeviceName") or "/dev/sda1"

    def _key_pair(self, public_key: str) -> str:
        name = key_pair_name(public_key)
        try:
            self.ec2.describe_key_pairs(KeyNames=[name])
            return name
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidKeyPair.NotFound":
                raise
        try:
            self.ec2.import_key_pair(
                KeyName=name,
                PublicKeyMaterial=public_key.encode(),
                TagSpecifications=[tagged("key-pair", {LABEL: "1"})],
            )
        except ClientError as exc:  # another launch imported it first
            if exc.response.get("Error", {}).get("Code") != "InvalidKeyPair.Duplicate":
                raise
        return name

    def _security_group(self, vpc: str) -> str:
        existing = self.ec2.describe_security_groups(
            Filters=[
                {"Name": "group-name", "Values": [SECURITY_GROUP]},
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": f"tag:{LABEL}", "Values": ["1"]},
            ]
        )["SecurityGroups"]
        if existing:
            return existing[0]["GroupId"]
        try:
            group = self.ec2.create_security_group(
                GroupName=SECURITY_GROUP,
                Description="vmgen workspaces: SSH, HTTP and HTTPS",
                VpcId=vpc,
                TagSpecifications=[tagged("security-group", {LABEL: "1"})],
            )["GroupId"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidGroup.Duplicate":
                raise
            # Not vmgen's (it has no vmgen tag): neither taken over nor touched.
            raise UsageError(
                f"{vpc} already has a security group named {SECURITY_GROUP!r} that vmgen did not make; "
                f"rename it, or tag it {LABEL}=1 for vmgen to use it"
            ) from None
        self.ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": f"vmgen {port}"}],
                    "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": f"vmgen {port}"}],
                }
                for port in (22, 80, 443)
            ],
        )
        return group

    def _terminate(self, name: str, instance_id: str) -> None:
        """Terminate and wait until it is; an instance that stays is billed, so failing is an
        error that says so."""
        try:
            with api_errors(f"terminate the instance of {name}"):
                try:
                    self.ec2.terminate_instances(InstanceIds=[instance_id])
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound":
                        raise
                    return
                self._wait("instance_terminated", instance_id)
        except UsageError:
            raise
        except VmgenError as exc:
            raise ResourceLeftBehind(
                f"{exc}; the instance {instance_id} ({name}) may still exist and be billed: run "
                f"`vmgen destroy {name}` again or terminate it in the AWS console"
            ) from None

    def _terminate_half_made(self, name: str, instance_id: str, failure: BaseException) -> None:
        try:
            self._terminate(name, instance_id)
        except ResourceLeftBehind as left:
            raise ResourceLeftBehind(f"{str(failure) or type(failure).__name__}; {left}") from None
        self._remove_shared_quietly()

    def _remove_shared_when_unused(self, waits: tuple[float, ...]) -> str:
        if self._instances([{"Name": f"tag:{LABEL}", "Values": ["1"]}]):
            return ""
        groups = self.ec2.describe_security_groups(Filters=[{"Name": f"tag:{LABEL}", "Values": ["1"]}])
        notes = [
            f"AWS still counts the security group {group['GroupId']} as in use; the next `vmgen destroy` "
            "removes it (security groups cost nothing)"
            for group in groups["SecurityGroups"]
            if not self._delete_group(group["GroupId"], waits)
        ]
        for key in self.ec2.describe_key_pairs(Filters=[{"Name": f"tag:{LABEL}", "Values": ["1"]}])["KeyPairs"]:
            self.ec2.delete_key_pair(KeyName=key["KeyName"])
        return "; ".join(notes)

    def _delete_group(self, group: str, waits: tuple[float, ...]) -> bool:
        for wait in (*waits, None):
            try:
                self.ec2.delete_security_group(GroupId=group)
                return True
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "InvalidGroup.NotFound":
                    return True
                if code != "DependencyViolation":
                    raise
            if wait is not None:
                time.sleep(wait)
        return False

    def _remove_shared_quietly(self) -> None:
        """After a failed create: tidying must not hide why it failed; what stays is reused by
        the next launch and removed by the next destroy."""
        try:
            with api_errors("clean up after a failed create"):
                self._remove_shared_when_unused(waits=())
        except VmgenError:
            pass

    def _describe(self, instance: InstanceTypeDef) -> Workspace:
        found = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        address = instance.get("PublicIpAddress", "")
        status = STATUS.get(instance["State"]["Name"], WorkspaceStatus.UNKNOWN)
        return Workspace(
            name=found.get(WS_LABEL, instance["InstanceId"]),
            provider=self.name,
            status=status,
            created_at=instance["LaunchTime"].astimezone(UTC),
            ssh=SSHEndpoint(host=address) if address and status == WorkspaceStatus.RUNNING else None,
            server_type=instance["InstanceType"],
            address=address,
            price_hourly=price_hourly(instance["InstanceType"]),
            owner=found.get(OWNER_LABEL, ""),
            owner_id=found.get(OWNER_ID_LABEL, ""),
        )


def _tags(resource: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _snapshots_of(image: ImageTypeDef) -> list[str]:
    """The EBS snapshots an AMI is made of (its block device mappings)."""
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def _gone_is_done(remove: Callable[[], object]) -> None:
    try:
        remove()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") not in IMAGE_GONE_CODES:
            raise
