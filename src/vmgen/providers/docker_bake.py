"""Baked images for the docker provider: provision a simulated VM with the install steps alone,
clean it the way Packer cleans a cloud VM, and commit it as an image labelled with its stamps."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from docker.errors import APIError, NotFound
from docker.models.containers import Container
from docker.models.images import Image

from ..builder.install import BAKE_CLEANUP, InstallPlan
from ..builder.render import render_bake_user_data
from ..contract.names import VM
from ..errors import VmgenError
from ..stamps import BAKED_LABEL, BASE_LABEL, BakedImage, ImageStamp, label_value
from .docker import DockerProvider, boot_with_seed, systemd_run_options

BAKED_REPOSITORY = "vmgen-baked"
BAKE_LABEL = "vmgen-bake"

Progress = Callable[[str], None]


class BakeFailed(VmgenError):
    """The install steps failed while baking; nothing was committed."""


def base_label(provider: DockerProvider) -> str:
    provider.ensure_image()
    return label_value(_image_id(provider.client.images.get(provider.image)))


def _image_id(image: Image) -> str:
    # docker's stubs allow any model an id of None; an image the engine described has one.
    assert image.id is not None
    return image.id


def bake(provider: DockerProvider, plan: InstallPlan, progress: Progress, timeout: float = 1800) -> BakedImage:
    base = base_label(provider)
    volumes = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
    if plan.vmgen.local_wheels is not None:
        volumes[str(plan.vmgen.local_wheels)] = {"bind": str(VM.wheels), "mode": "ro"}
    name = f"vmgen-bake-{secrets.token_hex(4)}"
    try:
        container = boot_with_seed(
            provider.client,
            render_bake_user_data(plan),
            f"instance-id: {name}\n",
            image=provider.image,
            name=name,
            labels={BAKE_LABEL: "1"},
            volumes=volumes,
            extra_hosts={"host.docker.internal": "host-gateway"},
            **systemd_run_options(str(provider.client.info().get("CgroupVersion", "1"))),
        )
    except APIError as exc:
        _remove(provider, name)
        raise BakeFailed(f"docker could not start the bake container: {exc.explanation}") from None
    try:
        _follow(container, progress, timeout)
        progress("cleaning up (cloud-init clean, host keys)")
        _exec(container, " && ".join(BAKE_CLEANUP))
        container.stop(timeout=30)
        labels = plan.stamp.labels(base)
        tag = f"{plan.stamp.agent}-{plan.stamp.vmgen}-{plan.stamp.packages}"
        progress(f"committing {BAKED_REPOSITORY}:{tag}")
        image = container.commit(repository=BAKED_REPOSITORY, tag=tag, conf={"Labels": labels})
    finally:
        container.remove(force=True)
    return _baked(image)


def _remove(provider: DockerProvider, name: str) -> None:
    with contextlib.suppress(NotFound):
        provider.client.containers.get(name).remove(force=True)


def baked_images(provider: DockerProvider, base: str | None = None) -> list[BakedImage]:
    """Newest first; only those baked from `base` when given."""
    filters = [f"{BAKED_LABEL}=1"] + ([f"{BASE_LABEL}={base}"] if base else [])
    found = [_baked(image) for image in provider.client.images.list(filters={"label": filters})]
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def newest_baked(provider: DockerProvider) -> BakedImage | None:
    found = baked_images(provider, base_label(provider))
    return found[0] if found else None


def _baked(image: Image) -> BakedImage:
    labels = image.labels or {}
    stamp = ImageStamp.from_labels(labels)
    assert stamp is not None, "filtered on the baked label"
    created = datetime.fromisoformat(image.attrs["Created"][:26].rstrip("Z") + "+00:00").astimezone(UTC)
    name = image.tags[0] if image.tags else image.short_id
    return BakedImage(ref=_image_id(image), name=name, created_at=created, stamp=stamp, base=labels.get(BASE_LABEL, ""))


def _follow(container: Container, progress: Progress, timeout: float) -> None:
    """Report each install step as it starts; fail with the log's tail if cloud-init fails."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        phases = _exec(container, "cat /var/log/vmgen/phases.log 2>/dev/null", check=False).splitlines()
        for line in phases[seen:]:
            kind, _, name = line.split(" ", 3)[:3]
            progress(
                f"{name}: {'already there' if kind == 'vmgen-skip' else 'installing'}"
                if name != "baked"
                else "install steps done"
            )
        seen = len(phases)
        status = _exec(container, "cloud-init status 2>/dev/null || true", check=False)
        if "status: error" in status:
            raise BakeFailed("the install steps failed: " + _log_tail(container))
        if "status: done" in status:
            # Read again: the script may have finished between the two reads above.
            if _exec(container, "cat /var/log/vmgen/phases.log", check=False).rstrip().endswith(" baked"):
                return
            raise BakeFailed("cloud-init finished but the bake script did not: " + _log_tail(container))
        try:
            container.reload()
        except NotFound:
            raise BakeFailed("the bake container disappeared") from None
        if container.status != "running":
            raise BakeFailed(f"the bake container stopped ({container.status})")
        time.sleep(1)  # cloud-init inside the container offers no event to wait on
    raise BakeFailed(f"baking did not finish within {timeout:.0f}s: " + _log_tail(container))


def _log_tail(container: Container) -> str:
    return _exec(container, "tail -n 15 /var/log/cloud-init-output.log", check=False).strip()


def _exec(container: Container, command: str, check: bool = True) -> str:
    result = container.exec_run(["bash", "-c", command])
    assert isinstance(result.output, bytes), "not streamed: the whole output at once"
    output = result.output.decode(errors="replace")
    if check and result.exit_code != 0:
        raise BakeFailed(f"`{command}` failed in the bake container: {output.strip()[-500:]}")
    return output
