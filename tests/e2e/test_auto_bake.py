"""auto_bake end to end, on docker (where the user turns it on) and on the simulated Hetzner
cloud (where it is on by default): a launch with no image for its install plan bakes one in the
background, from a fresh build VM of the base image (not from the workspace), `vmgen image list`
shows it, and the next launch with the same plan boots it and skips every install step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.hetzner import FakeHetzner
from tests.polling import wait_until
from vmgen.laptop.stamps import BAKED_LABEL, BASE_LABEL, label_value

from .conftest import RUN, make_repo, unique

FIRST, SECOND = unique("first-ws"), unique("second-ws")
CLOUD_FIRST, CLOUD_SECOND = unique("first-cloud"), unique("second-cloud")
INSTALL_STEPS = {"packages", "node", "agent", "vmgen"}


@pytest.fixture(scope="module")
def vm_image(docker_client, stock_image: str):
    """The run's stock image under an id of this module's own: no other test's bake has it as
    its base, so what is baked from it here is the background bake's and nothing else's."""
    container = docker_client.containers.create(stock_image, command=["true"])
    try:
        image = container.commit(repository="vmgen-test-autobake", tag=RUN, changes=["LABEL vmgen-test-autobake=1"])
    finally:
        container.remove(force=True, v=True)
    yield image.id
    for baked in docker_client.images.list(filters={"label": f"{BASE_LABEL}={label_value(image.id)}"}):
        docker_client.images.remove(baked.id, force=True)
    docker_client.images.remove(image.id, force=True)


def baked_from(docker_client, base: str) -> list:
    return docker_client.images.list(filters={"label": [f"{BAKED_LABEL}=1", f"{BASE_LABEL}={label_value(base)}"]})


def skipped_steps(cli, name: str) -> set[str]:
    log = cli.ssh(name, "cat /var/log/vmgen/phases.log")
    return {line.split()[2] for line in log.splitlines() if line.startswith("vmgen-skip ")}


def test_a_cold_launch_bakes_for_the_next_one(cli, docker_client, vm_image, tmp_path) -> None:
    cli.env["VMGEN_AUTO_BAKE"] = "yes"  # docker's default is no: an image costs local disk
    first = cli("launch", str(make_repo(tmp_path, FIRST)), "--json")
    assert json.loads(first.stdout)["image"] == "" and skipped_steps(cli, FIRST) == set()
    assert "auto_bake: baking this install plan on a separate build VM" in first.stderr
    log = first.stderr.split("log: ", 1)[1].split(" ", 1)[0]
    # The background bake's last line says how it ended (the image appears a moment before its tag).
    ended = wait_until(
        lambda: Path(log).read_text(), lambda text: "launches use it" in text or "error:" in text, timeout=900, every=2
    )
    found = baked_from(docker_client, vm_image)
    assert len(found) == 1, f"no image from the background bake; its log:\n{ended}"
    (baked,) = found
    assert "vmgen-ws" not in json.dumps(baked.labels)
    listing = cli("image", "list").stdout
    assert baked.tags[0] in listing and "use" in listing

    second = cli("launch", str(make_repo(tmp_path, SECOND)), "--json")
    assert json.loads(second.stdout)["image"] == baked.id
    assert skipped_steps(cli, SECOND) == INSTALL_STEPS
    assert "auto_bake" not in second.stderr  # an image with the plan: nothing more to bake
    cli("destroy", FIRST, "--yes")
    cli("destroy", SECOND, "--yes")


def test_on_a_cloud_a_cold_launch_bakes_a_snapshot_by_default(cli, installed_image, tmp_path) -> None:
    """Cold here means no snapshot of the plan yet. The simulated cloud's stock image already
    carries the run's installs (their cold path is the docker test's above): what is tested is
    the cloud's default, its build server and snapshot, not two more installs."""
    with FakeHetzner(image=installed_image) as fake:
        env = dict(
            cli.env,
            VMGEN_PROVIDER="hetzner",
            HCLOUD_TOKEN=fake.token,
            VMGEN_HCLOUD_ENDPOINT=fake.api_endpoint_for_vms,
            VMGEN_HCLOUD_METADATA_URL=fake.metadata_url,
        )
        del env["VMGEN_AUTO_BAKE"]  # the default
        cloud = type(cli)(env=env, home=cli.home)
        first = cloud("launch", str(make_repo(tmp_path, CLOUD_FIRST)), "--json")
        assert json.loads(first.stdout)["image"] == ""  # the cloud's stock image: no snapshot
        assert "auto_bake: baking" in first.stderr
        assert "Hetzner bills snapshots 0.0142 EUR per GB a month" in first.stderr  # from the price list
        log = first.stderr.split("log: ", 1)[1].split(" ", 1)[0]
        found = wait_until(lambda: fake.client().images.get_all(type=["snapshot"]), bool, timeout=900, every=3)
        assert len(found) == 1, f"no snapshot from the background bake; its log:\n{Path(log).read_text()}"
        # Its build server is not the workspace, and it is gone once the snapshot is taken.
        assert wait_until(
            lambda: sorted(s.name for s in fake.state.servers.values()),
            lambda names: names == [CLOUD_FIRST],
            timeout=120,
            every=1,
        ) == [CLOUD_FIRST]
        assert "vmgen bake" in cloud("image", "list").stdout

        second = cloud("launch", str(make_repo(tmp_path, CLOUD_SECOND)), "--json")
        assert json.loads(second.stdout)["image"] == str(found[0].id)
        assert skipped_steps(cloud, CLOUD_SECOND) == INSTALL_STEPS
        cloud("destroy", CLOUD_FIRST, "--yes")
        cloud("destroy", CLOUD_SECOND, "--yes")
