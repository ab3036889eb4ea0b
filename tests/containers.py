"""Containers a test runs for a moment. Removed with their anonymous volumes: an image that
declares a VOLUME (a baked image does, from its bake's bind mounts) gives each container one,
which `remove()` alone leaves behind, unlabeled (docker-py's `run(remove=True)` is such a remove)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from docker import DockerClient
from docker.models.containers import Container


def output_of(client: DockerClient, image: str, command: list[str], **options: Any) -> bytes:
    """What `command` prints in a new container of `image`; the container and its volumes go."""
    container = client.containers.run(image, command, detach=True, **options)
    try:
        container.wait()
        return bytes(container.logs())
    finally:
        remove(container)


def remove(container: Container) -> None:
    container.remove(force=True, v=True)


def workspace_things(client: DockerClient, names: tuple[str, ...]) -> dict[str, int]:
    """The containers and volumes of the workspaces `names` on the engine (those with a count):
    a user's own workspaces on the same engine are never counted."""
    from vmgen.contract.names import WS_LABEL

    found = {
        "containers": sum(
            len(client.containers.list(all=True, filters={"label": f"{WS_LABEL}={name}"})) for name in names
        ),
        "volumes": sum(len(client.volumes.list(filters={"label": f"{WS_LABEL}={name}"})) for name in names),
    }
    return {kind: count for kind, count in found.items() if count}


@contextmanager
def container_named(client: DockerClient, image: str, name: str) -> Iterator[None]:
    """A container of another tool's under the name workspace NAME's container would take; it
    must still be there when the test is done with it."""
    other = client.containers.create(image, command=["true"], name=f"vmgen-{name}")
    try:
        yield
        other.reload()  # raises NotFound if vmgen had removed it
    finally:
        remove(other)
