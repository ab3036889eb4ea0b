"""The docker provider against the real engine, without booting anything: a create that loses a
race for its name removes nothing of the winner's (two users launching one name on a shared
engine)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import docker
import pytest
from docker.models.containers import Container

from vmgen.agents import AGENTS
from vmgen.errors import WorkspaceExists
from vmgen.providers.docker import DockerProvider, container_name, volume_name
from vmgen.spec import GitSource, VmgenInstall, WorkspaceSpec

IMAGE = os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0Kj t@l"


@pytest.fixture
def engine() -> docker.DockerClient:
    client = docker.from_env()
    client.ping()
    return client


@pytest.fixture
def name(engine: docker.DockerClient) -> Iterator[str]:
    """A workspace name of this test's own; whatever carries it goes at the end."""
    made = f"t25-{secrets.token_hex(3)}"
    yield made
    for container in engine.containers.list(all=True, filters={"label": f"vmgen-ws={made}"}):
        container.remove(force=True)
    for volume in engine.volumes.list(filters={"name": volume_name(made)}):
        volume.remove(force=True)


def spec(name: str) -> WorkspaceSpec:
    return WorkspaceSpec(name=name, source=GitSource("https://example.com/app"), agent=AGENTS["claude"],
                         vmgen=VmgenInstall(version="0.1.0"), ssh_keys=(KEY,))


def others_workspace(engine: docker.DockerClient, name: str, command: str = "true") -> Container:
    """Another user's workspace of NAME, as their vmgen made it (its volume, then its container)."""
    labels = {"vmgen": "1", "vmgen-ws": name, "vmgen-owner": "someone@elsewhere", "vmgen-launch": "theirs"}
    engine.volumes.create(volume_name(name), labels=labels)
    return engine.containers.create(IMAGE, command=["sh", "-c", command], name=container_name(name), labels=labels,
                                    volumes={volume_name(name): {"bind": "/home", "mode": "rw"}})


@pytest.mark.parametrize("theirs_first", ["volume", "container"])
def test_a_create_that_loses_the_race_for_its_name_removes_nothing_of_the_winners(engine, name, home,
                                                                                   monkeypatch, theirs_first) -> None:
    provider = DockerProvider(IMAGE, engine)
    if theirs_first == "volume":
        # Their volume is made between our checks and our create: docker hands ours back as theirs.
        engine.volumes.create(volume_name(name), labels={"vmgen": "1", "vmgen-ws": name, "vmgen-launch": "theirs"})
    else:
        others_workspace(engine, name)
        engine.volumes.get(volume_name(name)).reload()
    # Our checks ran before theirs made anything.
    monkeypatch.setattr(provider, "_container", lambda _name: None)
    monkeypatch.setattr(provider, "leftovers", lambda _name=None: [])
    with pytest.raises(WorkspaceExists, match="being made by another launch"):
        provider.create(spec(name), "#cloud-config\n")
    assert engine.volumes.get(volume_name(name)).attrs["Labels"]["vmgen-launch"] == "theirs"
    if theirs_first == "container":
        assert engine.containers.get(container_name(name)).labels["vmgen-launch"] == "theirs"
