"""Workspaces as simulated VMs on the local Docker engine: systemd as PID 1 and real cloud-init.

The container boots from a NoCloud seed (user-data + meta-data) exactly as a cloud VM would; a
named volume keeps /home across stop/start; SSH is published on 127.0.0.1 only.

The seed holds secrets (the host key, tokens, the store's keys). It is copied into the created
container as root-only files before it starts, never bind-mounted: a bind mount keeps the
laptop user's uid, and inside the container that uid may be anyone's.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from ...contract import codec
from ...contract.documents import WATCHDOG_TRIGGER, BackupResult, clean_text
from ...contract.enums import WorkspaceStatus
from ...contract.names import VM
from ...errors import (
    DocumentError,
    LeftoversExist,
    ProviderUnavailable,
    UsageError,
    VmgenError,
    WorkspaceExists,
    WorkspaceNotFound,
)
from ..interrupts import interrupts_deferred
from ..spec import SIZE_PRESETS, WorkspaceSpec
from ..stamps import BAKED_LABEL, BASE_LABEL, BakedImage, label_value
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
    StopReason,
    Workspace,
    owned,
    owner_labels,
)
from .docker_engine import (
    LAUNCH_LABEL,
    SHIPPED_IMAGE,
    _docker_time,
    backup_mounts,
    baked_image,
    boot_with_seed,
    container_name,
    image_id,
    systemd_run_options,
    unreachable_engine,
    volume_name,
)

if TYPE_CHECKING:
    from ...selfwheel import VmgenWheel
    from ..builder.install import InstallPlan
    from ..config import Settings

# A container's state in vmgen's words (Docker's "paused" and "dead" are states vmgen never
# makes: unknown).
DOCKER_STATUS = {
    "running": WorkspaceStatus.RUNNING,
    "exited": WorkspaceStatus.STOPPED,
    "created": WorkspaceStatus.STARTING,
    "restarting": WorkspaceStatus.STARTING,
    "removing": WorkspaceStatus.DELETING,
}


class DockerProvider:
    name = "docker"
    user_data_limit = 1024 * 1024
    public = False
    # A local wheel directory (vmgen_find_links) and a local backup store are bind-mounted.
    shares_local_folders = True
    stop_bills = False
    snapshots = False  # the disk is the workspace's volume, kept while it is stopped
    auto_bakes = False
    metadata_address = ""
    price_source = "a container on this machine: nothing billed"
    currency = ""
    bake_methods: tuple[str, ...] = ()
    secret_variables: tuple[str, ...] = ()
    host_setting = ""  # it runs on this machine's engine, no server of the user's
    # Where a workspace's SSH port is published on the engine's host, and the address it is
    # reached at from here: this machine's loopback (an engine elsewhere publishes on its own
    # addresses and is reached at its own name: ssh.py).
    publish_on = "127.0.0.1"
    reached_at = "127.0.0.1"

    def __init__(self, image: str, client: docker.DockerClient | None = None) -> None:
        self.image = image
        try:
            self.client = client or docker.from_env()
            self.client.ping()
        except DockerException:
            raise ProviderUnavailable(unreachable_engine(os.environ.get("DOCKER_HOST", ""))) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerProvider:
        return cls(image=settings.docker_image)

    @classmethod
    def configured_image(cls, settings: Settings) -> str:
        return ""  # the settings' image names a cloud image; docker workspaces use docker_image

    def bake(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], options: BakeOptions
    ) -> BakedImage | None:
        if options.method:
            raise UsageError(f"docker bakes with its own engine only, not with {options.method}")
        from .docker_bake import bake

        progress("baking a docker image")
        return bake(self, plan, wheel, progress)

    def price_hourly(self, spec: WorkspaceSpec) -> float | None:
        return 0.0

    def sizes(self, location: str | None = None) -> list[Size]:
        """The presets, each what this machine has (a container is not sized), at no price."""
        info = self.client.info()
        cores, memory_gb = int(info.get("NCPU", 0)), round(int(info.get("MemTotal", 0)) / 2**30, 1)
        return [Size("local", preset, preset, cores, memory_gb, 0, 0.0, 0.0) for preset in SIZE_PRESETS]

    def check(self, spec: WorkspaceSpec) -> None:
        # A container takes what the machine has; the presets are accepted, a server type is not.
        if spec.size not in SIZE_PRESETS:
            raise UsageError(
                f"docker workspaces have no size or type {spec.size!r}: use --size {'|'.join(SIZE_PRESETS)} "
                "(a container uses what this machine has), or --provider hetzner for server types"
            )

    def create(self, spec: WorkspaceSpec, user_data: str) -> Workspace:
        if self._container(spec.name) is not None:
            raise WorkspaceExists(f"a workspace named {spec.name!r} already exists")
        if self.leftovers(spec.name):
            # Its home would be reused: files owned by someone else's uid, and an SSH that never answers.
            raise LeftoversExist(
                f"the volume {volume_name(spec.name)} of an earlier workspace named {spec.name!r} still exists; "
                f"remove it with `vmgen destroy {spec.name}`"
            )
        self.ensure_image()
        # This call's own mark: another launch of the name (another user's, on a shared engine)
        # may make its volume or container between the checks above and the calls below, and
        # what carries another mark is never removed here.
        made_by = secrets.token_hex(8)
        labels = {LABEL: "1", WS_LABEL: spec.name, LAUNCH_LABEL: made_by, **owner_labels()}
        volumes = {
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            volume_name(spec.name): {"bind": "/home", "mode": "rw"},
        }
        if spec.vmgen.local_wheels is not None:
            volumes[str(spec.vmgen.local_wheels)] = {"bind": str(VM.wheels), "mode": "ro"}
        if spec.local_backup_dir is not None:
            volumes |= backup_mounts(spec)
        cgroup_version = str(self.client.info().get("CgroupVersion", "1"))
        meta_data = f"instance-id: vmgen-{spec.name}-{secrets.token_hex(4)}\nlocal-hostname: {spec.name}\n"
        try:
            # Made here, with labels, rather than implicitly by the container: a volume whose
            # container is gone is then still known as this workspace's (`vmgen list` shows it).
            # Docker answers a create of an existing volume with that volume: its mark says whose.
            volume = self.client.volumes.create(volume_name(spec.name), labels=labels)
            if (volume.attrs.get("Labels") or {}).get(LAUNCH_LABEL) != made_by:
                raise WorkspaceExists(self._name_held(spec.name))
            container = boot_with_seed(
                self.client,
                user_data,
                meta_data,
                image=spec.image or self.image,
                name=container_name(spec.name),
                hostname=spec.name,
                labels=labels,
                volumes=volumes,
                ports={"22/tcp": (self.publish_on, None)},
                extra_hosts={"host.docker.internal": "host-gateway"},
                **systemd_run_options(cgroup_version, nested_containers=spec.devcontainer is not None),
            )
            container.reload()  # run/start/stop return objects whose ports and state are stale
        except BaseException as exc:
            # What this call made (its mark on it), an interrupt too; never another launch's.
            with interrupts_deferred("removing the half-made workspace"):
                self._remove_made(spec.name, made_by)
            if isinstance(exc, APIError) and exc.status_code == 409:
                raise WorkspaceExists(self._name_held(spec.name)) from None
            if isinstance(exc, APIError):
                raise VmgenError(f"docker could not start the workspace: {exc.explanation}") from None
            raise
        return self._describe(container)

    def _name_held(self, name: str) -> str:
        """Why NAME's container or volume could not be made: another launch of NAME (what holds
        the name carries vmgen's label), or something vmgen did not make under that name."""
        held = [
            f"{kind} {made}"
            for kind, made, collection in (
                ("container", container_name(name), self.client.containers),
                ("volume", volume_name(name), self.client.volumes),
            )
            if not _vmgens(collection, made)
        ]
        if not held:
            return f"a workspace named {name!r} is being made by another launch"
        return (
            f"the {' and the '.join(held)} on this Docker engine, which vmgen did not make, hold the name "
            f"{name!r}: launch with another --name, or remove {'them' if len(held) > 1 else 'it'}"
        )

    def _remove_made(self, name: str, made_by: str) -> None:
        """The container and volume of NAME that carry this mark, and nothing else."""
        for container in self.client.containers.list(
            all=True, filters={"label": [f"{WS_LABEL}={name}", f"{LAUNCH_LABEL}={made_by}"]}
        ):
            container.remove(force=True, v=True)
        with contextlib.suppress(NotFound):
            volume = self.client.volumes.get(volume_name(name))
            if (volume.attrs.get("Labels") or {}).get(LAUNCH_LABEL) == made_by:
                volume.remove(force=True)

    def ensure_image(self) -> None:
        """The simulated-VM image exists, or is built from the shipped Dockerfile (ubuntu:24.04)."""
        try:
            self.client.images.get(self.image)
            return
        except ImageNotFound:
            if self.image != SHIPPED_IMAGE:
                raise VmgenError(
                    f"docker image {self.image!r} not found: build it (e.g. "
                    f"images/debian12-test/build.sh) or set docker_image"
                ) from None
        dockerfile = resources.files("vmgen.images").joinpath("ubuntu2404.Dockerfile").read_bytes()
        try:
            self.client.images.build(fileobj=io.BytesIO(dockerfile), tag=self.image, rm=True)
        except (APIError, BuildError) as exc:
            raise VmgenError(
                f"could not build the simulated-VM image {self.image} from ubuntu:24.04 ({exc}); "
                "without access to a registry, build the Debian image with images/debian12-test/build.sh "
                "and set docker_image to its tag"
            ) from None

    def base_label(self) -> str:
        """The base image as a baked image's label records it (its id)."""
        self.ensure_image()
        return label_value(image_id(self.client.images.get(self.image)))

    def baked_images(self, base: str | None = None) -> list[BakedImage]:
        """Newest first; only those baked from `base` when given."""
        filters = [f"{BAKED_LABEL}=1"] + ([f"{BASE_LABEL}={base}"] if base else [])
        found = [baked_image(image) for image in self.client.images.list(filters={"label": filters})]
        return sorted(found, key=lambda b: b.created_at, reverse=True)

    def newest_baked(self, spec: WorkspaceSpec | None = None) -> BakedImage | None:
        # Any container boots any image: the spec does not narrow the choice. Only this user's
        # own: an image of another user's on a shared engine (or one whose baker cannot be told,
        # from before owner ids) boots only when named (--image).
        found = [b for b in self.baked_images(self.base_label()) if owned(b.owner, b.owner_id)]
        return found[0] if found else None

    def remove_baked(self, image: BakedImage) -> None:
        users = self.client.containers.list(all=True, filters={"ancestor": image.ref})
        workspaces = sorted(str(c.labels[WS_LABEL]) for c in users if c.labels.get(WS_LABEL))
        others = sorted(str(c.name) for c in users if not c.labels.get(WS_LABEL))
        if workspaces:
            commands = " and ".join(f"`vmgen destroy {name}`" for name in workspaces)
            raise VmgenError(
                f"{image.name} is used by workspace {', '.join(workspaces)}; "
                f"{commands} first (it deletes the workspace)"
            )
        if others:
            raise VmgenError(f"{image.name} is used by the container {', '.join(others)} (not a vmgen workspace)")
        try:
            self.client.images.remove(image.ref, force=True)  # force: all of its tags at once
        except NotFound:
            pass
        except APIError as exc:
            raise VmgenError(f"docker could not remove {image.name}: {exc.explanation}") from None

    def get(self, name: str) -> Workspace | None:
        container = self._container(name)
        return self._describe(container) if container else None

    def workspaces(self) -> list[Workspace]:
        # On a shared engine another user's container may go between docker's list and its look
        # at each one: that one is not listed, rather than the whole list failing.
        containers = self.client.containers.list(all=True, filters={"label": f"{LABEL}=1"}, ignore_removed=True)
        return sorted((self._describe(c) for c in containers), key=lambda w: w.name)

    def leftovers(self, name: str | None = None) -> list[Leftover]:
        if name is not None:
            # By its name, labelled or not (volumes made before vmgen labelled them): a new
            # workspace of that name would mount it.
            try:
                volume = self.client.volumes.get(volume_name(name))
            except NotFound:
                return []
            if self._container(name) is not None:
                return []
            labels = volume.attrs.get("Labels") or {}
            owner, made_by = labels.get(OWNER_LABEL, ""), labels.get(OWNER_ID_LABEL, "")
            return [Leftover(name, f"volume {volume_name(name)}", owner, made_by)]
        with_container = {w.name for w in self.workspaces()}
        found = []
        for volume in self.client.volumes.list(filters={"label": f"{LABEL}=1"}):
            labels = volume.attrs.get("Labels") or {}
            workspace = labels.get(WS_LABEL, "")
            if workspace and workspace not in with_container:
                found.append(
                    Leftover(
                        workspace, f"volume {volume.name}", labels.get(OWNER_LABEL, ""), labels.get(OWNER_ID_LABEL, "")
                    )
                )
        return sorted(found, key=lambda leftover: leftover.name)

    def start(self, name: str) -> Workspace:
        container = self._require(name)
        container.start()
        container.reload()  # run/start/stop return objects whose ports and state are stale
        return self._describe(container)

    def stop(self, name: str) -> Workspace:
        container = self._require(name)
        container.stop(timeout=30)
        container.reload()  # run/start/stop return objects whose ports and state are stale
        return self._describe(container)

    def delete(self, name: str) -> None:
        container = self._container(name)
        if container is not None:
            container.remove(force=True, v=True)
        with contextlib.suppress(NotFound):
            self.client.volumes.get(volume_name(name)).remove(force=True)

    def kept_disks(self, name: str | None = None) -> list[KeptDisk]:
        return []  # a workspace that had no backup is powered off: its volume and container stay

    def restore_kept(self, name: str, snapshot: str, ssh_public_key: str, user_data: str) -> Workspace:
        raise UsageError(f"docker keeps a workspace's disk in its volume: `vmgen start {name}` brings it back")

    def remove_kept(self, snapshot: str) -> None:
        raise UsageError("docker keeps no snapshots: a workspace's disk is its volume")

    def self_delete_spec(self) -> SelfDelete:
        # A container cannot delete itself; the watchdog powers it off (the disk stays).
        return SelfDelete(provider=self.name)

    def stop_note(self) -> str:
        return "the container is stopped; its disk and /home are kept"

    def image_cost_note(self) -> str:
        return "a docker image on this machine's disk (about 2 GB; `vmgen image prune` removes old ones)"

    def _container(self, name: str) -> Container | None:
        found = self.client.containers.list(all=True, filters={"label": f"{WS_LABEL}={name}"}, ignore_removed=True)
        return found[0] if found else None

    def _require(self, name: str) -> Container:
        container = self._container(name)
        if container is None:
            raise WorkspaceNotFound(f"no workspace named {name!r} on the {self.name} provider")
        return container

    def _describe(self, container: Container) -> Workspace:
        """From the container's attributes as fetched; after a change, reload it first."""
        attrs = container.attrs
        created = datetime.fromisoformat(attrs["Created"][:26].rstrip("Z") + "+00:00")
        ssh = None
        bindings = (attrs["NetworkSettings"].get("Ports") or {}).get("22/tcp") or []
        if container.status == "running" and bindings:
            ssh = SSHEndpoint(host=self.reached_at, port=int(bindings[0]["HostPort"]))
        status = DOCKER_STATUS.get(container.status, WorkspaceStatus.UNKNOWN)
        name = container.labels.get(WS_LABEL, container.name)
        assert name is not None, "a listed container has a name"
        return Workspace(
            name=name,
            provider=self.name,
            status=status,
            created_at=created.astimezone(UTC),
            ssh=ssh,
            server_type="container",
            address=self.reached_at,
            price_hourly=0.0,  # a container on this machine: nothing billed
            owner=container.labels.get(OWNER_LABEL, ""),
            owner_id=container.labels.get(OWNER_ID_LABEL, ""),
            stopped_by=self._stop_reason(container) if status == WorkspaceStatus.STOPPED else None,
        )

    def _stop_reason(self, container: Container) -> StopReason | None:
        """The idle watchdog's doing, when root's record of the last backup says so: a backup it
        made (or tried) since the container last started. A container keeps its disk when it
        stops, so the record is there to read; `vmgen stop` makes no backup."""
        try:
            stream, _ = container.get_archive(str(VM.backup_result))
            packed = b"".join(stream)
        except (NotFound, APIError):
            return None
        try:
            with tarfile.open(fileobj=io.BytesIO(packed[: 1 << 20])) as tar:
                member = tar.next()
                read = tar.extractfile(member) if member is not None and member.isfile() else None
                raw = read.read(64 * 1024) if read is not None else b""
            result = codec.loads(BackupResult, raw, "the last backup's result", strict=False)
        except (tarfile.TarError, DocumentError):
            return None
        started = _docker_time(container.attrs.get("State", {}).get("StartedAt", ""))
        if result.trigger != WATCHDOG_TRIGGER or started is None or result.finished_at < started:
            return None
        return StopReason(
            at=result.finished_at,
            backup_id=result.backup_id if result.ok else "",
            backup_error="" if result.ok else clean_text(result.error, 300),
        )


def _vmgens(collection: Any, name: str) -> bool:
    """Whether the container or volume of that name is vmgen's (or there is none)."""
    try:
        found = collection.get(name)
    except NotFound:
        return True
    return LABEL in (found.attrs.get("Labels") or found.attrs.get("Config", {}).get("Labels") or {})
