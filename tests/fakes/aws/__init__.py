"""Simulated AWS for tests: moto's server answers the EC2 and SSM APIs (boto3 talks to it over
HTTP), and a small controller boots a simulated VM (systemd + real cloud-init on the local Docker
engine, the instance's UserData as its NoCloud seed) for each instance moto reports running.

    with FakeAws() as cloud:                     # boot=True: needs Docker and the VM image
        provider = AwsProvider(endpoint=cloud.endpoint, ...)

Where moto (5.x, read at getmoto/moto 0af643a) differs from EC2 on a path vmgen uses, and what the
fake does about it:

- Credentials: moto accepts any (moto/core/responses.py checks signatures only with IAM auth
  enabled). The fake answers a request signed with another access key than `ACCESS_KEY` as EC2
  does: 401 `AuthFailure` "AWS was not able to validate the provided access credentials" (the
  EC2 API reference, "Error codes", client errors), in EC2's error XML ("Error responses":
  `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`).
- Quotas: moto never refuses RunInstances for a limit. `FakeAws.fail()` answers the next calls of
  an action with an EC2 error; `InstanceLimitExceeded` and its message are from the EC2 API
  reference's client error codes.
- Instance types: moto accepts any name unless MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION is set
  (moto/ec2/models/instances.py, `add_instances`); the fake turns that validation on, so an
  unknown type is `InvalidInstanceType` as on EC2.
- State: moto's instances are `running` at once (no `pending`), stop at once and terminate at
  once (moto/ec2/models/instances.py `start`, `stop`, `terminate`); EC2 passes through pending,
  stopping and shutting-down. The provider waits with boto3's waiters, which pass either way.
  The controller powers a stopped instance's VM off, and boots that VM again (its disk kept) when
  the instance is started, at the new public address moto draws then (`NetworkInterface.start`,
  as EC2 gives a stopped and started instance a new public IPv4 without an Elastic IP): only a VM
  that powered off while EC2 did not stop its instance is an OS power-off (below).
- Public addresses: moto draws a random public IPv4 (moto/ec2/utils.py `random_public_ip`). With
  VMs, the fake draws it from its Docker network instead, so the address EC2 reports is the one
  the simulated VM answers on.
- Instance-initiated shutdown: moto records InstanceInitiatedShutdownBehavior but nothing in it
  powers off. The controller does: a VM whose container stops while moto says `running` is
  terminated (behaviour `terminate`) or stopped (`stop`), as EC2 does after an OS power-off.
- DeleteKeyPair: moto deletes by KeyName only and answers success to a KeyPairId it ignores
  (moto/ec2/responses/key_pairs.py); EC2 takes either. The provider deletes by name.
- An instance launched with NetworkInterfaces[].Groups lists no SecurityGroups of its own in moto;
  EC2 lists the primary interface's. Tests read the interface's groups.
- The SSM public parameter for Canonical's Ubuntu AMIs is not in moto's bundled parameters
  (moto/ssm/resources holds Amazon Linux and ECS ones), and PutParameter refuses names under
  `/aws` as SSM does; the fake seeds it into moto's backend with one of moto's own Canonical AMIs.
- IMDSv2: moto serves no metadata service. The controller serves one on the fake's network (token
  PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds, then GET
  /latest/meta-data/<key> with X-aws-ec2-metadata-token; 401 without a valid token, as IMDSv2
  with HttpTokens=required answers), for the instance whose address calls. The hop limit is
  recorded by moto (MetadataOptions) but not enforced by the fake.
- CreateImage: moto registers the AMI `available` at once (moto/ec2/models/amis.py, `Ami`'s
  `state="available"`, `AmiBackend.create_image`); EC2 answers with the AMI `pending` until its
  snapshots are complete, then `available` (or `failed`) (EC2 API reference, `Image.State`;
  boto3's `image_available` waiter polls DescribeImages for it). The fake makes a new AMI
  `pending`; the controller makes it `available` after copying the disk, unless `hold_images`
  (a bake's timed-out wait). moto's AMI has no disk: with VMs, the controller commits the
  source instance's container (stopped first: without NoReboot EC2 shuts the instance down for
  the image, moto does not) to a docker image, labelled with the test run's label, and an
  instance launched from that AMI boots it; a deregistered AMI's image goes, and all at exit.
- CreateImage's snapshots: moto makes one 15 GB `standard` snapshot per AMI whatever the
  instance's volumes (`Ami.__init__`, `block_device_mappings`), EC2 one per EBS volume of the
  instance; both name them in the AMI's BlockDeviceMappings, where the provider reads them. moto
  refuses TagSpecifications of ResourceType `snapshot` (NotImplementedError, a 500), which EC2
  takes; the provider tags the snapshots with CreateTags once the AMI is available.
- DeregisterImage: as on EC2 without DeleteAssociatedSnapshots (its default, EC2 API reference
  "DeregisterImage"), moto leaves the AMI's snapshots, and DeleteSnapshot refuses one a
  registered AMI uses with `InvalidSnapshot.InUse` (moto/ec2/models/elastic_block_store.py,
  `delete_snapshot`; EC2 does too): the provider deregisters, then deletes the snapshots.
- DescribeSnapshots ignores OwnerIds (moto/ec2/responses/elastic_block_store.py reads only
  SnapshotId and filters) and lists the snapshots of moto's bundled public AMIs too; EC2 lists
  only the owners asked for. The provider never lists snapshots; `own_snapshots()` asks with the
  owner-id filter (which moto applies) and checks the account id again, for the tests.
"""

from .fake import ACCESS_KEY, SECRET_KEY, UBUNTU_PARAMETER, FakeAws, Fault

__all__ = ["ACCESS_KEY", "SECRET_KEY", "UBUNTU_PARAMETER", "FakeAws", "Fault"]
