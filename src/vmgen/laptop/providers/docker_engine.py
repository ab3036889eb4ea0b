"""The local Docker engine as a place for simulated VMs: names, the NoCloud seed, booting a
container with systemd as PID 1, and baked images as vmgen reads them. Shared by the docker
provider and its bake."""

from __future__ import annotations

import io
import tarfile
import time
from datetime import UTC, datetime
from typing import Any

import docker
from docker.models import containers as sdk_containers
from docker.models.containers import Container
from docker.models.images import Image

from ...backup.manifest import workspace_prefix
from ...contract.names import VM
from ...errors import (
    VmgenError,
)
from ..spec import RestoreSource, WorkspaceSpec
from ..stamps import AGENT_VERSION_LABEL, BASE_LABEL, BakedImage, ImageStamp
from .base import (
    OWNER_ID_LABEL,
    OWNER_LABEL,
)

SEED_DIR = "var/lib/cloud/seed/nocloud"  # where cloud-init's NoCloud datasource looks
# Built by vmgen itself from the Dockerfile it ships, when missing.
SHIPPED_IMAGE = "vmgen-ubuntu:24.04"


# Each create marks what it makes with a token of its own, and removes only what carries it.
LAUNCH_LABEL = "vmgen-launch"


def container_name(workspace: str) -> str:
    return f"vmgen-{workspace}"


def volume_name(workspace: str) -> str:
    return f"vmgen-{workspace}-home"


# An option of systemd_run_options that Docker's SDK does not know: the Docker CLI's
# `--security-opt systempaths=unconfined`, which is no security option to the engine but empty
# MaskedPaths and ReadonlyPaths in the container's host config.
UNMASKED_SYSTEM_PATHS = "unmasked_system_paths"


def systemd_run_options(cgroup_version: str, nested_containers: bool = False) -> dict[str, Any]:
    """Options that let systemd run as PID 1 without --privileged.

    systemd needs a writable view of its cgroup. Docker's default cgroup namespace is "host" on
    cgroup v1/hybrid hosts but "private" (with a read-only cgroup2 mount) on cgroup v2 hosts
    such as Docker Desktop, so the namespace is set explicitly and the hierarchy bind-mounted
    writable. On v1 the named `systemd` hierarchy comes along with that bind mount.
    """
    options: dict[str, Any] = {
        "cgroupns": "host",
        # SYS_PTRACE: root on a real VM may read any process's /proc/<pid>/fd (the watchdog
        # counts the agent's connections to its model API); a container's root may not without it.
        "cap_add": ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
        "tmpfs": {"/run": "rw,exec,mode=755", "/run/lock": "rw,mode=1777", "/tmp": "rw,exec,mode=1777"},
        "stop_signal": "SIGRTMIN+3",
    }
    security = ["apparmor=unconfined"] if cgroup_version == "2" else []
    if nested_containers:
        # A workspace with a dev container: the agent's rootless Podman inside this simulated VM
        # needs what a real VM has (docs/devcontainers.md, measured): a tun device for its
        # network (slirp4netns), a whole /proc to mount a fresh one for a new PID namespace
        # (Docker masks paths of it), and the system calls Docker's default seccomp profile
        # refuses (pivot_root in slirp4netns). They loosen the engine's container around the
        # simulated VM, not what the agent gets on it: the agent stays an unprivileged user.
        security += ["seccomp=unconfined"]
        options["devices"] = ["/dev/net/tun:/dev/net/tun:rwm"]
        options[UNMASKED_SYSTEM_PATHS] = True  # the CLI's systempaths=unconfined (boot_with_seed)
    if security:
        options["security_opt"] = security
    return options


def seed_archive(user_data: str, meta_data: str, files: dict[str, bytes] | None = None) -> bytes:
    """The NoCloud seed as a tar for put_archive: root-owned, readable by root only. `files`
    (absolute paths) come along, root-owned too: what a bake puts in place (the vmgen wheel)."""
    seed = {f"/{SEED_DIR}/user-data": user_data.encode(), f"/{SEED_DIR}/meta-data": meta_data.encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_root_files(tar, seed, 0o600)
        _add_root_files(tar, files or {}, 0o644)
    return buffer.getvalue()


def root_files_archive(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """Files at absolute paths as a tar for put_archive, owned by root; each file's own folder is
    root-only (0700), the folders above it 0755."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_root_files(tar, files, mode)
    return buffer.getvalue()


def _add_root_files(tar: tarfile.TarFile, files: dict[str, bytes], mode: int) -> None:
    now = time.time()
    added: set[str] = set()
    for path, data in files.items():
        parts = path.lstrip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            name = "/".join(parts[:depth])
            if name in added:
                continue
            added.add(name)
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755 if depth < len(parts) else 0o700, now
            tar.addfile(folder)
        entry = tarfile.TarInfo(path.lstrip("/"))
        entry.size, entry.mode, entry.mtime = len(data), mode, now
        tar.addfile(entry, io.BytesIO(data))


def boot_with_seed(
    client: docker.DockerClient,
    user_data: str,
    meta_data: str,
    *,
    image: str,
    files: dict[str, bytes] | None = None,
    **options: Any,
) -> Container:
    """Create a simulated VM, put its seed in, start it. A container that fails on the way is
    left for the caller's cleanup (it finds it by name)."""
    if options.pop(UNMASKED_SYSTEM_PATHS, False):
        # The SDK's own translation of the options, then the two host config keys it lacks.
        arguments = sdk_containers._create_container_args(  # type: ignore[attr-defined]
            {**options, "image": image, "command": ["/sbin/init"], "version": client.api.api_version}
        )
        arguments["host_config"].update({"MaskedPaths": [], "ReadonlyPaths": []})
        container = client.containers.get(client.api.create_container(**arguments)["Id"])
    else:
        container = client.containers.create(image, command=["/sbin/init"], **options)
    if not container.put_archive("/", seed_archive(user_data, meta_data, files)):
        raise VmgenError("docker could not copy the cloud-init seed into the workspace")
    container.start()
    return container


def _docker_time(text: str) -> float | None:
    """Docker's RFC 3339 times (nanoseconds, Z) as epoch seconds; None for its "zero" time."""
    if not text or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return None


def unreachable_engine(docker_host: str) -> str:
    """Why no engine answered: the one DOCKER_HOST names, or the local one."""
    if docker_host:
        return (
            f"cannot reach the Docker engine at DOCKER_HOST={docker_host}: is it running and reachable? "
            "(unset DOCKER_HOST to use the local engine)"
        )
    return (
        "cannot reach the Docker engine: is dockerd running? "
        "(start it with `sudo systemctl start docker` or `sudo dockerd &`)"
    )


def backup_mounts(spec: WorkspaceSpec) -> dict[str, dict[str, str]]:
    """A local store as a workspace sees it: its own folder of the store (ws/<name>), and no other
    workspace's (their manifests name files, sizes and times). A workspace restored from another
    one's backups (`restore --as`) also sees that one's folder, read-only: its restore reads it."""
    assert spec.local_backup_dir is not None
    mounts = {}
    names = [(spec.name, "rw")]
    if isinstance(spec.source, RestoreSource) and spec.source.workspace != spec.name:
        names.append((spec.source.workspace, "ro"))
    for name, mode in names:
        folder = workspace_prefix(name)
        # Made here, as this user: a folder docker made for a bind mount would be root's.
        (spec.local_backup_dir / folder).mkdir(parents=True, exist_ok=True)
        mounts[str(spec.local_backup_dir / folder)] = {"bind": str(VM.local_backups / folder), "mode": mode}
    return mounts


def image_id(image: Image) -> str:
    # docker's stubs allow any model an id of None; an image the engine described has one.
    assert image.id is not None
    return image.id


def baked_image(image: Image, stamp: ImageStamp | None = None) -> BakedImage:
    """`stamp`: what was just baked (its labels may have been overridden); else read from the
    labels of an image found by its baked label."""
    labels = image.labels or {}
    stamp = stamp or ImageStamp.from_labels(labels)
    assert stamp is not None, "filtered on the baked label"
    created = datetime.fromisoformat(image.attrs["Created"][:26].rstrip("Z") + "+00:00").astimezone(UTC)
    name = image.tags[0] if image.tags else image.short_id
    return BakedImage(
        ref=image_id(image),
        name=name,
        created_at=created,
        stamp=stamp,
        base=labels.get(BASE_LABEL, ""),
        owner=labels.get(OWNER_LABEL, ""),
        owner_id=labels.get(OWNER_ID_LABEL, ""),
        agent_version=labels.get(AGENT_VERSION_LABEL, ""),
    )
