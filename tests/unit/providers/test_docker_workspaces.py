"""The docker provider against the real engine, without booting anything: a create that loses a
race for its name removes nothing of the winner's (two users launching one name on a shared
engine); a baked image in use names the workspace and the command that frees it; a container its
idle watchdog stopped says so, and which backup it made (root's record on its disk)."""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import docker
import pytest
from docker.models.containers import Container

from vmgen.errors import VmgenError, WorkspaceExists
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.providers.docker import DockerProvider
from vmgen.laptop.providers.docker_engine import container_name, volume_name
from vmgen.laptop.spec import GitSource, VmgenInstall, WorkspaceSpec
from vmgen.laptop.stamps import BakedImage, ImageStamp

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
        container.remove(force=True, v=True)
    for volume in engine.volumes.list(filters={"name": volume_name(made)}):
        volume.remove(force=True)


def spec(name: str) -> WorkspaceSpec:
    return WorkspaceSpec(
        name=name,
        source=GitSource("https://example.com/app"),
        agent=AGENTS["claude"],
        vmgen=VmgenInstall(version="0.1.0"),
        ssh_keys=(KEY,),
    )


def others_workspace(engine: docker.DockerClient, name: str, command: str = "true") -> Container:
    """Another user's workspace of NAME, as their vmgen made it (its volume, then its container)."""
    labels = {"vmgen": "1", "vmgen-ws": name, "vmgen-owner": "someone@elsewhere", "vmgen-launch": "theirs"}
    engine.volumes.create(volume_name(name), labels=labels)
    return engine.containers.create(
        IMAGE,
        command=["sh", "-c", command],
        name=container_name(name),
        labels=labels,
        volumes={volume_name(name): {"bind": "/home", "mode": "rw"}},
    )


@pytest.mark.parametrize("theirs_first", ["volume", "container"])
def test_a_create_that_loses_the_race_for_its_name_removes_nothing_of_the_winners(
    engine, name, home, monkeypatch, theirs_first
) -> None:
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


def test_an_image_in_use_names_the_workspace_and_the_command_that_frees_it(engine, name) -> None:
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    engine.api.import_image_from_data(empty.getvalue(), repository=f"vmgen-test-{name}", tag="baked")
    image = engine.images.get(f"vmgen-test-{name}:baked")
    try:
        engine.containers.create(
            image.id, command=["true"], name=container_name(name), labels={"vmgen": "1", "vmgen-ws": name}
        )
        baked = BakedImage(
            ref=str(image.id),
            name=f"vmgen-test-{name}:baked",
            created_at=datetime.now(UTC),
            stamp=ImageStamp("p", "a", "v"),
            base="",
        )
        with pytest.raises(VmgenError) as refused:
            DockerProvider(IMAGE, engine).remove_baked(baked)
        said = str(refused.value)
        assert f"is used by workspace {name}; `vmgen destroy {name}` first" in said
        assert container_name(name) not in said  # the container's name is no workspace's
        assert engine.images.get(image.id)
    finally:
        for container in engine.containers.list(all=True, filters={"label": f"vmgen-ws={name}"}):
            container.remove(force=True, v=True)
        engine.images.remove(image.id, force=True)


def put_backup_result(container, result: dict) -> None:
    data = json.dumps(result).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("var/lib/vmgen")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        entry = tarfile.TarInfo("var/lib/vmgen/backup-result.json")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    assert container.put_archive("/", buffer.getvalue())


@pytest.mark.parametrize(
    "trigger, ok, since_start, said",
    [
        ("idlewatch", True, True, "backup"),
        ("idlewatch", False, True, "failed"),
        ("laptop", True, True, None),  # `vmgen backup` then `vmgen stop`: not the watchdog's doing
        ("idlewatch", True, False, None),  # a backup of an earlier boot says nothing of this stop
    ],
)
def test_a_container_its_idle_watchdog_stopped_says_so_and_which_backup_it_made(
    engine, name, trigger, ok, since_start, said
) -> None:
    container = others_workspace(engine, name)
    finished = time.time() + (3600 if since_start else -3600)
    put_backup_result(
        container,
        {
            "ok": ok,
            "backup_id": "20261207T120000Z-ab12" if ok else "",
            "error": "" if ok else "store unreachable",
            "trigger": trigger,
            "finished_at": finished,
        },
    )
    container.start()
    container.wait(timeout=60)
    found = DockerProvider(IMAGE, engine).get(name)
    assert found is not None and found.status == "stopped"
    if said is None:
        assert found.stopped_by is None
    elif said == "backup":
        assert found.stopped_by is not None and found.stopped_by.backup_id == "20261207T120000Z-ab12"
    else:
        assert found.stopped_by is not None and found.stopped_by.backup_error == "store unreachable"


def test_a_container_is_listed_at_no_price(engine, name) -> None:
    """`vmgen list` shows every workspace's price per hour from its provider: 0 on this machine."""
    others_workspace(engine, name)
    found = DockerProvider(IMAGE, engine).get(name)
    assert found is not None and found.price_hourly == 0.0


def test_a_deleted_workspace_leaves_no_anonymous_volume(engine, name) -> None:
    # An image that declares a VOLUME (a baked one does: its bake's bind mounts) gives each of its
    # containers an unnamed volume, which a remove without v leaves behind, unlabeled, forever.
    labels = {"vmgen": "1", "vmgen-ws": name}
    container = engine.containers.create(
        IMAGE, command=["true"], name=container_name(name), labels=labels, volumes=["/scratch"]
    )
    (anonymous,) = [mount["Name"] for mount in container.attrs["Mounts"] if mount["Type"] == "volume"]
    DockerProvider(IMAGE, engine).delete(name)
    with pytest.raises(docker.errors.NotFound):
        engine.volumes.get(anonymous)
