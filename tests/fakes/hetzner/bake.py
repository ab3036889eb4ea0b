"""Bake a snapshot on the simulated cloud the way vmgen's Packer template does on Hetzner: boot a
server with the bake script, wait for it, clean it (cloud-init, host keys), create_image with the
stamps as labels, delete the server. Packer itself cannot run here (no plugin registry)."""

from __future__ import annotations

from typing import Any

import docker
from hcloud.images import Image

from vmgen.builder.install import BAKE_CLEANUP
from vmgen.providers.docker import root_files_archive

from .fake import FakeHetzner


def bake_snapshot(fake: FakeHetzner, user_data: str, labels: dict[str, str], description: str = "vmgen bake",
                  base: str = "ubuntu-24.04", server_type: str = "cx23", files: dict[str, bytes] | None = None) -> Any:
    """Returns the hcloud image of the new snapshot. `files` are uploaded as root's first, as
    Packer's file provisioner does (the vmgen wheel the bake script installs)."""
    client = fake.client()
    created = client.servers.create(name="vmgen-bake", server_type=client.server_types.get_by_name(server_type),
                                     image=Image(name=base), user_data=user_data)
    created.action.wait_until_finished()
    try:
        container = docker.from_env().containers.get(fake.server("vmgen-bake").container)
        if files:
            assert container.put_archive("/", root_files_archive(files))
        # Packer's first provisioner: cloud-init (which runs the bake script here) has finished.
        waited = container.exec_run(["cloud-init", "status", "--wait"])
        log = container.exec_run(["cat", "/var/log/vmgen/phases.log"]).output.decode()
        if waited.exit_code != 0 or not log.rstrip().endswith(" baked"):
            tail = container.exec_run(["tail", "-n", "20", "/var/log/cloud-init-output.log"]).output.decode()
            raise RuntimeError(f"baking failed:\n{tail}")
        assert container.exec_run(["bash", "-c", " && ".join(BAKE_CLEANUP)]).exit_code == 0
        made = created.server.create_image(type="snapshot", description=description, labels=labels)
        made.action.wait_until_finished()
        return client.images.get_by_id(made.image.id)
    finally:
        client.servers.delete(created.server).wait_until_finished()
