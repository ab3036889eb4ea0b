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
"""

from .fake import ACCESS_KEY, SECRET_KEY, UBUNTU_PARAMETER, FakeAws, Fault

__all__ = ["ACCESS_KEY", "SECRET_KEY", "UBUNTU_PARAMETER", "FakeAws", "Fault"]
