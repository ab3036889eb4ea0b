"""Baked images end to end: `vmgen image build` on the docker provider and a snapshot made
through the simulated Hetzner API's create_image, then launches on each that skip what is baked
in (proved by the stamps and the skip markers in the phase log), reach the same ready state and
pass the same check as a cold launch: the real agent, driven by the scripted model, writes a
file. A version mismatch redoes that step alone."""

from __future__ import annotations

import json

import docker
import pytest

from tests.conftest import RUN_LABEL
from tests.containers import output_of, remove
from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.fakes.hetzner import FakeHetzner
from tests.polling import eventually
from vmgen import __version__
from vmgen.laptop.stamps import BAKED_LABEL, BASE_LABEL, STAMP_LABEL_PREFIX, label_value

from .conftest import AGENT_VERSION, RUN, make_repo, this_vmgen, unique

BAKED_WS, COLD_WS, MIXED_WS = unique("baked-ws"), unique("cold-ws"), unique("mixed-ws")

INSTALL_STEPS = {"packages": "packages", "node": "node", "agent": "agent-install", "vmgen": "vmgen-install"}


def skipped_steps(cli, name: str) -> set[str]:
    log = cli.ssh(name, "cat /var/log/vmgen/phases.log")
    return {line.split()[2] for line in log.splitlines() if line.startswith("vmgen-skip ")}


def agent_writes_a_file(cli, model, name: str) -> None:
    model.script = Script(
        rules=[
            Rule(
                trigger="HELLO.md",
                tool=ToolUse(
                    "Write",
                    {"file_path": f"/home/agent/work/{name}/HELLO.md", "content": "hello from the scripted model\n"},
                ),
                after_tool_text="I created HELLO.md.",
            )
        ]
    )
    cli("send", name, "please add a HELLO.md")
    model.wait_for("please add a HELLO.md", timeout=60)
    eventually(
        lambda: cli.ssh(name, f"cat work/{name}/HELLO.md", check=False) == "hello from the scripted model\n",
        timeout=60,
        what="HELLO.md written by the agent",
    )


@pytest.fixture(scope="module")
def vm_image(stock_image: str) -> str:
    """This module bakes, and launches cold, from the run's own stock image."""
    return stock_image


@pytest.fixture(scope="module")
def baked(cli, docker_client, stock_image):
    """The image `vmgen image build` bakes from this run's stock image (so it is this run's, and
    nobody else's launch picks it); removed afterwards, and only it."""
    cli("image", "build", "--provider", "docker")
    ours = {"label": [f"{BAKED_LABEL}=1", f"{BASE_LABEL}={label_value(docker_client.images.get(stock_image).id)}"]}
    (image,) = docker_client.images.list(filters=ours)
    yield image
    docker_client.images.remove(image.id, force=True)


def test_image_list_shows_what_was_baked(cli, baked):
    listing = cli("image", "list").stdout
    assert baked.tags[0] in listing and f"claude-{AGENT_VERSION}" in listing and __version__ in listing
    assert "use" in listing  # the launch below takes it


def test_a_second_bake_of_the_same_plan_leaves_the_first_as_it_was(cli, docker_client, baked, installed_image):
    # The same tag for both moved it to the second, and deleting anything made from the untagged
    # first one then deleted the first one too. The second bake starts from the run's installed
    # image: the same plan, its steps checked and skipped instead of installed a second time.
    type(cli)(env=dict(cli.env, VMGEN_DOCKER_IMAGE=installed_image), home=cli.home)(
        "image", "build", "--provider", "docker"
    )
    ours = {"label": [f"{BAKED_LABEL}=1", f"{BASE_LABEL}={label_value(docker_client.images.get(installed_image).id)}"]}
    (second,) = docker_client.images.list(filters=ours)
    try:
        assert docker_client.images.get(baked.id).tags == baked.tags and second.tags != baked.tags
        listing = cli("image", "list").stdout
        assert baked.tags[0] in listing and second.tags[0] in listing
    finally:
        docker_client.images.remove(second.id, force=True)


def test_a_baked_docker_launch_skips_the_installs_and_works(cli, model, baked, tmp_path):
    result = json.loads(cli("launch", str(make_repo(tmp_path, BAKED_WS)), "--json").stdout)
    assert result["image"] == baked.id
    assert skipped_steps(cli, BAKED_WS) == set(INSTALL_STEPS)
    agent_writes_a_file(cli, model, BAKED_WS)
    cli("destroy", BAKED_WS, "--yes")


def test_a_cold_launch_ignores_the_baked_image(cli, baked, tmp_path):
    result = json.loads(cli("launch", str(make_repo(tmp_path, COLD_WS)), "--cold", "--json").stdout)
    assert result["image"] == "" and skipped_steps(cli, COLD_WS) == set()
    cli("destroy", COLD_WS, "--yes")


def test_a_vmgen_version_mismatch_reinstalls_vmgen_alone(cli, model, baked, docker_client, tmp_path):
    # An image baked by an older vmgen: the same image with an older vmgen stamp.
    old = docker_client.containers.run(baked.id, ["sh", "-c", "echo 0.0.1 > /etc/vmgen/stamps/vmgen"], detach=True)
    old.wait()
    labels = {**baked.labels, f"{STAMP_LABEL_PREFIX}vmgen": "0.0.1", RUN_LABEL: RUN}
    older = old.commit(repository="vmgen-baked", tag=f"older-vmgen-{RUN}", conf={"Labels": labels})
    remove(old)
    try:
        result = json.loads(cli("launch", str(make_repo(tmp_path, MIXED_WS)), "--json").stdout)
        assert result["image"] == older.id  # the newest baked image
        assert skipped_steps(cli, MIXED_WS) == {"packages", "node", "agent"}
        assert cli.ssh(MIXED_WS, "cat /etc/vmgen/stamps/vmgen").strip() == label_value(this_vmgen().build)
        assert "vmgen-install" in {p["name"] for p in result["phases"]}
        agent_writes_a_file(cli, model, MIXED_WS)
    finally:
        cli("destroy", MIXED_WS, "--yes", check=False)  # its container uses the older image
        docker_client.images.remove(older.id, force=True)  # before its parent, the baked image


@pytest.fixture(scope="module")
def snapshot(cli, installed_image):
    """A snapshot `vmgen image build` bakes through the simulated Hetzner API: a build server
    boots with the bake user-data, vmgen provisions it over SSH as root, powers it off and takes
    the snapshot with the stamps as labels; the build server is gone afterwards. The simulated
    cloud's stock image carries the run's installs (the docker bake above does them cold): the
    build server's steps are checked and skipped, the snapshot is what is tested."""
    fake = FakeHetzner(image=installed_image).start()
    cli.env.update(
        {
            "VMGEN_PROVIDER": "hetzner",
            "HCLOUD_TOKEN": "test-token",
            "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
            "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
        }
    )
    made = cli("image", "build", "--provider", "hetzner")
    assert "EUR per GB a month" in made.stderr  # what keeping it costs, from the price list
    assert not fake.state.servers  # the build server went
    (image,) = fake.client().images.get_all(type=["snapshot"])
    # The bake's access went before the snapshot: no key of the bake, no host key, no instance.
    inside = output_of(
        docker.from_env(),
        str(fake.state.images[image.id].docker_image),
        ["sh", "-c", "ls -A /root/.ssh /etc/ssh/ssh_host_* /var/lib/cloud/instance /var/lib/vmgen/incoming 2>&1; true"],
    )
    assert b"authorized_keys" not in inside and b"ssh_host_ed25519_key" not in inside and b".whl" not in inside
    assert inside.count(b"No such file or directory") >= 3, inside
    yield image
    fake.stop()


def test_a_launch_on_hetzner_uses_the_baked_snapshot(cli, model, snapshot, tmp_path):
    assert "vmgen bake" in cli("image", "list").stdout
    result = json.loads(cli("launch", str(make_repo(tmp_path, "snap-ws")), "--json").stdout)
    assert result["image"] == str(snapshot.id)
    assert skipped_steps(cli, "snap-ws") == set(INSTALL_STEPS)
    agent_writes_a_file(cli, model, "snap-ws")
    cli("destroy", "snap-ws", "--yes")


def test_without_packer_image_build_writes_the_template_and_says_how(cli, snapshot):
    result = cli("image", "build", "--provider", "hetzner", "--packer", check=False)
    assert result.returncode == 1 and "packer is not installed" in result.stderr
    assert "Traceback" not in result.stderr and "test-token" not in result.stderr
    assert (cli.home / ".local/state/vmgen/packer/vmgen.pkr.hcl").is_file()
