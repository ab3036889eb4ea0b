"""Containers a test runs for a moment. Removed with their anonymous volumes: an image that
declares a VOLUME (a baked image does, from its bake's bind mounts) gives each container one,
which `remove()` alone leaves behind, unlabeled (docker-py's `run(remove=True)` is such a remove)."""

from __future__ import annotations

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
