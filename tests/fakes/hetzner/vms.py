"""Simulated VMs: one systemd + cloud-init container per server, on a bridge network the fake owns.

Each container gets a fixed IP on that network (so the create response already carries the
server's IPv4, as the real API does), a NoCloud seed with the request's user_data, and labels
that let `cleanup_orphans()` find what a crashed run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import docker

if TYPE_CHECKING:
    from docker.models.networks import Network

LABEL = "vmgen-fake-hetzner"
LABEL_INSTANCE = f"{LABEL}.instance"
LABEL_PID = f"{LABEL}.pid"
LABEL_SERVER = f"{LABEL}.server-id"
SEED_PREFIX = "hzfake-seed-"  # + pid + "-" + random, under the temp dir


class VmBackend(Protocol):
    gateway: str | None
    network_name: str | None

    def setup(self) -> None: ...
    def close(self) -> None: ...
    def allocate_ip(self) -> str: ...
    def release_ip(self, ip: str) -> None: ...
    def create(
        self, server_id: int, name: str, ip: str, user_data: str, meta_data: str, image: str, start: bool
    ) -> str | None: ...
    def start(self, container: str) -> None: ...
    def stop(self, container: str, hard: bool) -> None: ...
    def restart(self, container: str, hard: bool) -> None: ...
    def remove(self, container: str) -> None: ...
    def is_running(self, container: str) -> bool | None: ...
    def commit(self, container: str, image_id: int) -> str | None: ...
    def remove_image(self, ref: str) -> None: ...


class _IpPool:
    def __init__(self, subnet: str, first_host: int = 2):
        self._hosts = list(ipaddress.ip_network(subnet).hosts())[first_host - 1 :]
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            for host in self._hosts:
                if str(host) not in self._used:
                    self._used.add(str(host))
                    return str(host)
        raise RuntimeError("simulated cloud ran out of IPv4 addresses")

    def give_back(self, ip: str) -> None:
        with self._lock:
            self._used.discard(ip)


class NoVms:
    """boot=False: servers are records only (TEST-NET-3 addresses), no Docker needed."""

    gateway: str | None = None
    network_name: str | None = None

    def __init__(self) -> None:
        self._pool = _IpPool("203.0.113.0/24", first_host=10)

    def setup(self) -> None: ...
    def close(self) -> None: ...
    def allocate_ip(self) -> str:
        return self._pool.take()

    def release_ip(self, ip: str) -> None:
        self._pool.give_back(ip)

    def create(self, *args, **kwargs) -> str | None:
        return None

    def start(self, container: str) -> None: ...
    def stop(self, container: str, hard: bool) -> None: ...
    def restart(self, container: str, hard: bool) -> None: ...
    def remove(self, container: str) -> None: ...
    def is_running(self, container: str) -> bool | None:
        return None

    def commit(self, container: str, image_id: int) -> str | None:
        return None

    def remove_image(self, ref: str) -> None: ...


class DockerVms:
    def __init__(
        self,
        docker_client=None,
        network_name: str | None = None,
        subnet: str | None = None,
        stop_timeout: int = 20,
    ):
        import docker  # imported here so that boot=False needs no Docker SDK

        self.docker = docker_client or docker.from_env()
        self.instance = uuid.uuid4().hex[:10]
        self.network_name = network_name or f"vmgen-hzfake-{self.instance}"
        self.gateway: str | None = None
        self._subnet = subnet
        self._pool: _IpPool | None = None
        self._network: Network | None = None
        self._seed_root = Path(tempfile.mkdtemp(prefix=f"{SEED_PREFIX}{os.getpid()}-"))
        self._stop_timeout = stop_timeout
        self._snapshots: set[str] = set()

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL: "1", LABEL_INSTANCE: self.instance, LABEL_PID: str(os.getpid())}

    # -- network ------------------------------------------------------------------------------

    def setup(self) -> None:
        candidates = [self._subnet] if self._subnet else _candidate_subnets()
        last_error: Exception | None = None
        for subnet in candidates:
            try:
                self._network = self._create_network(subnet)
            except docker.errors.APIError as exc:  # "Pool overlaps with other one"
                last_error = exc
                continue
            self.gateway = str(next(ipaddress.ip_network(subnet).hosts()))
            self._pool = _IpPool(subnet)
            return
        raise RuntimeError(f"could not create the fake's docker network: {last_error}")

    def _create_network(self, subnet: str) -> Network:
        from docker.types import IPAMConfig, IPAMPool

        gateway = str(next(ipaddress.ip_network(subnet).hosts()))
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)])
        return self.docker.networks.create(
            self.network_name, driver="bridge", ipam=ipam, labels=self.labels, check_duplicate=True
        )

    def allocate_ip(self) -> str:
        assert self._pool, "setup() first"
        return self._pool.take()

    def release_ip(self, ip: str) -> None:
        if self._pool:
            self._pool.give_back(ip)

    # -- containers ---------------------------------------------------------------------------

    def _write_seed(self, server_id: int, user_data: str | bytes, meta_data: str) -> Path:
        seed = self._seed_root / str(server_id)
        seed.mkdir(parents=True, exist_ok=True)
        # A real VM gets its user-data from the metadata service, which only root may reach, and
        # cloud-init keeps it root-only: so do these files (they hold the host key and tokens).
        # bytes: user-data as a cloud sent it, e.g. gzipped (cloud-init uncompresses it).
        for name, text in (("user-data", user_data), ("meta-data", meta_data)):
            (seed / name).write_bytes(text.encode() if isinstance(text, str) else text)
            (seed / name).chmod(0o600)
        seed.chmod(0o700)
        return seed

    def create(
        self, server_id: int, name: str, ip: str, user_data: str | bytes, meta_data: str, image: str, start: bool
    ) -> str:
        seed = self._write_seed(server_id, user_data, meta_data)
        container = f"hz-{server_id}-{name}"
        created = self.docker.containers.create(
            image,
            ["/sbin/init"],
            name=container,
            hostname=name,
            cap_add=["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
            cgroupns="host",
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                str(seed): {"bind": "/var/lib/cloud/seed/nocloud", "mode": "ro"},
            },
            tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
            stop_signal="SIGRTMIN+3",
            extra_hosts={"host.docker.internal": "host-gateway"},
            network=self.network_name,
            networking_config={self.network_name: self.docker.api.create_endpoint_config(ipv4_address=ip)},
            labels={**self.labels, LABEL_SERVER: str(server_id)},
        )
        if start:
            created.start()
        return container

    def _get(self, container: str):
        return self.docker.containers.get(container)

    def start(self, container: str) -> None:
        self._get(container).start()

    def stop(self, container: str, hard: bool) -> None:
        c = self._get(container)
        if hard:
            c.kill()
        else:
            c.stop(timeout=self._stop_timeout)
        c.wait(condition="not-running", timeout=self._stop_timeout + 10)

    def restart(self, container: str, hard: bool) -> None:
        if hard:
            self._get(container).kill()
            self._get(container).start()
        else:
            self._get(container).restart(timeout=self._stop_timeout)

    def remove(self, container: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self._get(container).remove(force=True, v=True)

    def is_running(self, container: str) -> bool | None:
        import docker.errors

        try:
            c = self._get(container)
        except docker.errors.NotFound:
            return None
        return c.status in ("running", "restarting")

    def commit(self, container: str, image_id: int) -> str:
        repo, tag = "vmgen-hzfake-snapshot", f"{image_id}-{self.instance}"
        self._get(container).commit(repository=repo, tag=tag, conf={"Labels": self.labels})
        self._snapshots.add(f"{repo}:{tag}")
        return f"{repo}:{tag}"

    def remove_image(self, ref: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.docker.images.remove(ref, force=True)
        self._snapshots.discard(ref)

    # -- cleanup ------------------------------------------------------------------------------

    def close(self) -> None:
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"}):
            c.remove(force=True, v=True)
        for ref in list(self._snapshots):
            self.remove_image(ref)
        if self._network is not None:
            self._network.remove()
            self._network = None
        shutil.rmtree(self._seed_root, ignore_errors=True)


def _candidate_subnets() -> list[str]:
    seconds = random.sample(range(16, 255), 40)
    return [f"172.30.{b}.0/24" for b in seconds[:20]] + [f"10.213.{b}.0/24" for b in seconds[20:]]


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def cleanup_orphans(docker_client=None) -> int:
    """Remove containers/networks/snapshot images of fakes whose process is gone. Returns count."""
    import docker

    client = docker_client or docker.from_env()
    removed = 0
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        if not _pid_alive(c.labels.get(LABEL_PID, "")):
            c.remove(force=True, v=True)
            removed += 1
    for image in client.images.list(filters={"label": f"{LABEL}=1"}):
        if not _pid_alive(image.labels.get(LABEL_PID, "")):
            for tag in image.tags:
                client.images.remove(tag, force=True)
            removed += 1
    for net in client.networks.list(filters={"label": f"{LABEL}=1"}):
        if not _pid_alive((net.attrs.get("Labels") or {}).get(LABEL_PID, "")):
            net.remove()
            removed += 1
    for seed in Path(tempfile.gettempdir()).glob(f"{SEED_PREFIX}*-*"):
        if not _pid_alive(seed.name.removeprefix(SEED_PREFIX).split("-")[0]):
            shutil.rmtree(seed, ignore_errors=True)
    return removed
