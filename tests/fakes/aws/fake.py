"""moto's server in this process (so the controller can read and steer its EC2 backend), with EC2's
credential check and injected errors in front, an IMDSv2 service, and the controller that makes
moto's running instances simulated VMs. See the package docstring for where moto and EC2 differ."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

import boto3
import requests
from moto import settings as moto_settings
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends, elastic_network_interfaces as moto_enis
from moto.ec2.models.amis import AmiBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.ssm.models import Parameter, ssm_backends
from werkzeug.serving import make_server

from tests.conftest import RUN_LABEL, RUN_VARIABLE
from tests.fakes.hetzner.vms import DockerVms, NoVms

ACCESS_KEY = "test-key"
SECRET_KEY = "test-secret"
UBUNTU_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
CANONICAL = "099720109477"


@dataclass
class Fault:
    """An EC2 error answered instead of the next `times` calls of `action` (e.g. RunInstances)."""

    action: str
    code: str
    message: str
    status: int = 400
    times: int = 1


def ec2_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


class _Gate:
    """WSGI middleware before moto: EC2's credential check and injected faults."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.faults: list[Fault] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if authorization and f"Credential={ACCESS_KEY}/" not in authorization:
            message = "AWS was not able to validate the provided access credentials"
            return self._answer(start_response, 401, "AuthFailure", message)
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        with self.lock:
            fault = next((f for f in self.faults if f.action == action and f.times > 0), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            return self._answer(start_response, fault.status, fault.code, fault.message)
        return self.app(environ, start_response)

    @staticmethod
    def _answer(start_response: Callable[..., Any], status: int, code: str, message: str) -> Iterable[bytes]:
        start_response(f"{status} Error", [("Content-Type", "text/xml")])
        return [ec2_error(code, message)]


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeAws:
    """EC2 + SSM on moto; with `boot`, a simulated VM per running instance (Docker)."""

    def __init__(self, boot: bool = False, image: str | None = None, region: str = "us-east-1") -> None:
        self.region = region
        self.image = image
        self.vms: DockerVms | NoVms = DockerVms() if boot else NoVms()
        self.boot = boot
        self.tokens: set[str] = set()
        self.containers: dict[str, str] = {}  # instance id -> container
        self.stopped: set[str] = set()  # instances whose VM the controller stopped because EC2 did
        self.images: dict[str, str] = {}  # AMI id -> the docker image its instances boot
        # While set, a new AMI stays `pending` (EC2 still copying the disk): a bake's wait for it.
        self.hold_images = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._patches: contextlib.ExitStack = contextlib.ExitStack()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.vms.setup()
        host = self.vms.gateway or "127.0.0.1"
        self._patch_moto()
        self.gate = _Gate(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, 0, self.gate, threaded=True, request_handler=_QuietHandler)
        self.endpoint = f"http://{host}:{self._server.server_port}"
        self._spawn(self._server.serve_forever)
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()
        self.ami = self._seed_ubuntu()
        if self.boot:
            self._imds = ThreadingHTTPServer((host, 0), ImdsHandler)
            self._imds.fake = self  # type: ignore[attr-defined]
            self.metadata_url = f"http://{host}:{self._imds.server_port}/latest"
            self._spawn(self._imds.serve_forever)
        self._spawn(self._control)  # AMIs become available without VMs too
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        if self.boot:
            self._imds.shutdown()
        for thread in self._threads:
            thread.join(timeout=30)
        with contextlib.suppress(Exception):
            requests.post(f"{self.endpoint}/moto-api/reset", timeout=10)
        self._patches.close()
        for ref in self.images.values():
            self._remove_image(ref)
        self.vms.close()

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name=f"fake-aws-{target.__name__}")
        thread.start()
        self._threads.append(thread)

    def _patch_moto(self) -> None:
        patch = self._patches.enter_context
        patch(_attribute(moto_settings, "EC2_ENABLE_INSTANCE_TYPE_VALIDATION", True))
        if self.boot:  # the address EC2 reports is the simulated VM's
            patch(_attribute(moto_enis, "random_public_ip", self.vms.allocate_ip))
        made_available = AmiBackend.create_image

        def create_image_pending(backend: Any, *args: Any, **kwargs: Any) -> Any:
            ami = made_available(backend, *args, **kwargs)
            ami.state = "pending"  # EC2's new AMI; the controller makes it available
            return ami

        patch(_attribute(AmiBackend, "create_image", create_image_pending))

    def _seed_ubuntu(self) -> str:
        """Canonical's parameter, naming one of moto's own Canonical AMIs (moto has no 24.04)."""
        ec2 = self.ec2_backend
        ami = min(i.id for i in ec2.amis.values() if i.owner_id == CANONICAL)
        ssm = ssm_backends[DEFAULT_ACCOUNT_ID][self.region]
        ssm._parameters[UBUNTU_PARAMETER].append(
            Parameter(  # type: ignore[abstract]
                account_id=DEFAULT_ACCOUNT_ID,
                name=UBUNTU_PARAMETER,
                value=ami,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(UTC),
                version=1,
                data_type="aws:ec2:image",
            )
        )
        return ami

    # -- for tests ------------------------------------------------------------------------------

    @property
    def ec2_backend(self) -> Any:
        return ec2_backends[DEFAULT_ACCOUNT_ID][self.region]

    def fail(self, action: str, code: str, message: str, status: int = 400, times: int = 1) -> None:
        with self.gate.lock:
            self.gate.faults.append(Fault(action, code, message, status, times))

    def client(self, service: str = "ec2") -> Any:
        """One client per service for the fake's life: making one reads and builds boto3's model
        of the service (about 0.1 s of CPU for EC2's), and boto3's clients are thread-safe."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint,
                    region_name=self.region,
                    aws_access_key_id=ACCESS_KEY,
                    aws_secret_access_key=SECRET_KEY,
                )
            return self._clients[service]

    def vmgen_resources(self) -> dict[str, int]:
        """How many of each thing tagged vmgen=1 is not gone: what a user would find or be billed for."""
        ec2, tagged = self.client(), [{"Name": "tag:vmgen", "Values": ["1"]}]
        instances = [
            i
            for r in ec2.describe_instances(Filters=tagged)["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ]
        found = {
            "instances": len(instances),
            "security groups": len(ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]),
            "key pairs": len(ec2.describe_key_pairs(Filters=tagged)["KeyPairs"]),
            "volumes": len(ec2.describe_volumes(Filters=tagged)["Volumes"]),
            # AMIs and snapshots of this account, tagged or not: what the account is billed for.
            "images": len(ec2.describe_images(Owners=["self"])["Images"]),
            "snapshots": len(self.own_snapshots()),
        }
        return {what: count for what, count in found.items() if count}

    def own_snapshots(self) -> list[dict[str, Any]]:
        """This account's snapshots (moto ignores DescribeSnapshots' OwnerIds: see the docstring).
        Its owner-id filter keeps moto's ~1,300 bundled ones out of the answer (a second of CPU
        to list and parse each time); the check below stays for a moto that ignored it too."""
        owner = [{"Name": "owner-id", "Values": [DEFAULT_ACCOUNT_ID]}]
        found = self.client().describe_snapshots(OwnerIds=["self"], Filters=owner)["Snapshots"]
        return [s for s in found if s["OwnerId"] == DEFAULT_ACCOUNT_ID]

    def environment(self) -> dict[str, str]:
        """What a `vmgen` process needs to reach this cloud through boto3's own chain."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
        }

    # -- the controller -------------------------------------------------------------------------

    def _control(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._reconcile()
            except Exception as exc:  # noqa: BLE001 - a fake's loop must outlive one bad turn
                print(f"fake aws controller: {exc!r}")

    def _reconcile(self) -> None:
        self._reconcile_images()
        if self.boot:
            self._reconcile_instances()

    def _reconcile_images(self) -> None:
        """A pending AMI becomes available once its instance's disk is copied: with VMs, the
        instance's container (stopped first, as EC2 reboots an instance it images unless told
        not to) committed to the docker image that instances of the AMI boot. A deregistered
        AMI's docker image goes."""
        amis = self.ec2_backend.amis
        for ami in list(amis.values()):
            if ami.state != "pending" or self.hold_images:
                continue
            container = self.containers.get(ami.instance_id or "")
            if container is not None:
                if self.vms.is_running(container):
                    self.vms.stop(container, hard=False)
                self.images[ami.id] = self._commit(container, ami.id)
            ami.state = "available"
        for ami_id in [a for a in self.images if a not in amis]:
            self._remove_image(self.images.pop(ami_id))

    def _commit(self, container: str, ami_id: str) -> str:
        assert isinstance(self.vms, DockerVms)
        repository, tag = "vmgen-awsfake-ami", f"{ami_id}-{self.vms.instance}"
        labels = {**self.vms.labels, RUN_LABEL: os.environ.get(RUN_VARIABLE, "")}
        self.vms.docker.containers.get(container).commit(repository=repository, tag=tag, conf={"Labels": labels})
        return f"{repository}:{tag}"

    def _remove_image(self, ref: str) -> None:
        if isinstance(self.vms, DockerVms):
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                self.vms.docker.images.remove(ref, force=True)

    def _reconcile_instances(self) -> None:
        for instance in list(self.ec2_backend.all_instances()):
            state, container = instance.state, self.containers.get(instance.id)
            if state == "running" and container is None:
                self.containers[instance.id] = self._boot(instance)
            elif state == "running" and container is not None and self.vms.is_running(container) is False:
                if instance.id in self.stopped:  # StartInstances after StopInstances: the VM boots again
                    self.stopped.discard(instance.id)
                    self._boot_again(instance, container)
                # The OS powered itself off: EC2 applies the instance's shutdown behaviour.
                elif instance.instance_initiated_shutdown_behavior == "terminate":
                    self.ec2_backend.terminate_instances([instance.id])
                else:
                    self.ec2_backend.stop_instances([instance.id])
            elif state == "running" and container is not None and self.vms.is_running(container) is None:
                self.containers.pop(instance.id)
            elif state == "stopped" and container is not None and self.vms.is_running(container):
                self.stopped.add(instance.id)
                self.vms.stop(container, hard=False)
            elif state == "terminated" and container is not None:
                self.vms.remove(container)
                self.containers.pop(instance.id)

    def _boot_again(self, instance: Any, container: str) -> None:
        """A started instance's VM boots with its disk, at the public address EC2 gave it anew
        (moto draws one on StartInstances, as EC2 does without an Elastic IP)."""
        assert isinstance(self.vms, DockerVms) and self.vms.network_name
        network = self.vms.docker.networks.get(self.vms.network_name)
        attrs = self.vms.docker.containers.get(container).attrs
        held = attrs["NetworkSettings"]["Networks"][self.vms.network_name]["IPAddress"]
        if instance.public_ip and instance.public_ip != held:
            network.disconnect(container)
            network.connect(container, ipv4_address=instance.public_ip)
            self.vms.release_ip(held)
        self.vms.start(container)

    def _boot(self, instance: Any) -> str:
        user_data = base64.b64decode(instance.user_data.as_bytes()) if instance.user_data else b""
        meta_data = f"instance-id: {instance.id}\nlocal-hostname: {instance.id}\n"
        number = int(instance.id.removeprefix("i-")[:12], 16) % 10**9
        assert self.image, "boot=True needs the simulated VM's image"
        name = next((t["value"] for t in instance.get_tags() if t["key"] == "Name"), instance.id)
        image = self.images.get(instance.image_id, self.image)  # a baked AMI boots its committed disk
        made = self.vms.create(number, name, instance.public_ip, user_data, meta_data, image, start=True)
        assert made is not None
        return made

    def instance_for(self, address: str) -> Any | None:
        return next((i for i in self.ec2_backend.all_instances() if i.public_ip == address), None)


class ImdsHandler(BaseHTTPRequestHandler):
    """IMDSv2 for the instance whose address calls."""

    fake: FakeAws

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(400, "")
        token = secrets.token_urlsafe(32)
        self.server.fake.tokens.add(token)  # type: ignore[attr-defined]
        self._send(200, token)

    def do_GET(self) -> None:
        fake: FakeAws = self.server.fake  # type: ignore[attr-defined]
        if self.headers.get("X-aws-ec2-metadata-token") not in fake.tokens:
            return self._send(401, "")
        instance = fake.instance_for(self.client_address[0])
        key = self.path.removeprefix("/latest/meta-data/")
        values = {"instance-id": instance.id, "public-ipv4": instance.public_ip} if instance else {}
        if key not in values:
            return self._send(404, "")
        self._send(200, values[key])

    def _send(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _attribute(owner: Any, name: str, value: Any) -> Iterator[None]:
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)
