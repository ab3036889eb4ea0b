"""Baked images for the docker provider: provision a simulated VM with the install steps alone,
clean it the way Packer cleans a cloud VM, and commit it as an image labelled with its stamps."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from ...contract.names import VM
from ...errors import BakeFailed, BootFailed
from ...selfwheel import VmgenWheel
from ..builder.install import BAKE_CLEANUP, InstallPlan
from ..builder.render import render_bake_user_data
from ..readiness import FOLLOW_SCRIPT, follow_boot
from ..stamps import AGENT_VERSION_LABEL, BakedImage, installed_version
from .base import owner_labels
from .docker_engine import baked_image, boot_with_seed, systemd_run_options

BAKED_REPOSITORY = "vmgen-baked"
BAKE_LABEL = "vmgen-bake"

Progress = Callable[[str], None]


class Engine(Protocol):
    """What a bake needs of the docker provider: its engine and its base image."""

    client: docker.DockerClient
    image: str

    def base_label(self) -> str: ...


def bake(
    provider: Engine,
    plan: InstallPlan,
    wheel: VmgenWheel,
    progress: Progress,
    timeout: float = 1800,
    labels: dict[str, str] | None = None,
    repository: str = BAKED_REPOSITORY,
    owner: dict[str, str] | None = None,
) -> BakedImage:
    """Bake and commit. `wheel` is the vmgen the plan names (put in place as root's file before
    boot). `labels` are added to (or override) the stamp's labels: the test suite marks its own
    images so that no launch of a user's ever picks them. `owner`: the owner labels (default:
    this user's, see owner.py)."""
    if wheel.sha256 != plan.vmgen.wheel_sha256:
        raise BakeFailed("the vmgen wheel to bake is not the one the install plan names")
    base = provider.base_label()
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
            files={str(VM.incoming / wheel.relative_path): wheel.content},
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
        installed = {}
        if plan.agent_version_command:
            version = installed_version(_exec(container, f"{plan.agent_version_command} 2>&1", check=False))
            installed = {AGENT_VERSION_LABEL: version} if version else {}
        progress("cleaning up (cloud-init clean, host keys)")
        _exec(container, " && ".join(BAKE_CLEANUP))
        container.stop(timeout=30)
        image_labels = (
            plan.stamp.labels(base) | installed | (owner_labels() if owner is None else owner) | (labels or {})
        )
        # Each bake its own tag: a tag shared by bakes of one plan moved to the newest, and docker
        # deletes an untagged parent with its child (an image derived from it).
        tag = f"{plan.stamp.agent}-{plan.stamp.vmgen}-{plan.stamp.packages}-{name.removeprefix('vmgen-bake-')}"
        progress(f"committing {repository}:{tag}")
        image = container.commit(repository=repository, tag=tag, conf={"Labels": image_labels})
    finally:
        container.remove(force=True, v=True)
    return baked_image(image, plan.stamp)


def _remove(provider: Engine, name: str) -> None:
    with contextlib.suppress(NotFound):
        provider.client.containers.get(name).remove(force=True, v=True)


def _follow(container: Container, progress: Progress, timeout: float) -> None:
    """Report each install step as it starts, the way a launch follows cloud-init; fail with the
    log's tail if cloud-init fails or the bake script did not get to its end."""
    try:
        phases = follow_boot(
            lambda: _exec_lines(container, FOLLOW_SCRIPT), timeout, progress, lambda: _log_tail(container)
        )
    except BootFailed as exc:
        raise BakeFailed(f"the install steps failed: {exc}") from None
    if not phases or phases[-1].name != "baked":
        raise BakeFailed("cloud-init finished but the bake script did not: " + _log_tail(container))


@contextmanager
def _exec_lines(container: Container, script: str) -> Iterator[Iterable[bytes]]:
    """The output of a script run in the container, line by line, as it comes."""
    output = container.exec_run(["bash", "-c", script], stream=True).output
    assert not isinstance(output, bytes), "streamed: a generator of chunks"

    def lines() -> Iterator[bytes]:
        pending = b""
        for chunk in output:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending

    try:
        yield lines()
    finally:
        close = getattr(output, "close", None)  # docker's stream is a generator: close ends it
        if close is not None:
            close()


def _log_tail(container: Container) -> str:
    return _exec(container, "tail -n 15 /var/log/cloud-init-output.log", check=False).strip()


def _exec(container: Container, command: str, check: bool = True) -> str:
    result = container.exec_run(["bash", "-c", command])
    assert isinstance(result.output, bytes), "not streamed: the whole output at once"
    output = result.output.decode(errors="replace")
    if check and result.exit_code != 0:
        raise BakeFailed(f"`{command}` failed in the bake container: {output.strip()[-500:]}")
    return output
