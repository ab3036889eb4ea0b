"""The Hetzner provider against the simulated cloud in memory (boot=False): which snapshot a launch
boots, and what a user meets when the real API refuses, fails or is still busy."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import hcl2
import pytest
from click.testing import CliRunner
from hcloud.actions import Action, ActionTimeoutException
from hcloud.images import Image
from hcloud.server_types import ServerType
from packaging.requirements import Requirement
from packaging.version import Version

from tests.fakes.hetzner import FakeHetzner
from vmgen import __version__
from vmgen.cli import main
from vmgen.errors import ProviderActionFailed, ResourceLeftBehind
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder.install import plan_for
from vmgen.laptop.launch import with_baked_image
from vmgen.laptop.owner import owned, owner_labels
from vmgen.laptop.providers.hetzner import HetznerProvider, api_errors
from vmgen.laptop.spec import GitSource, VmgenInstall, WorkspaceSpec
from vmgen.laptop.stamps import label_value

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlq tester@laptop"
VMGEN = VmgenInstall(version=__version__, find_links="http://wheels.example:8080/")
AGENT_VERSION = "2.1.332"
STAMP_LABELS = plan_for(AGENTS["claude"], AGENT_VERSION, VMGEN).stamp.labels("ubuntu-24.04")
USER_DATA = "#cloud-config\n"


@pytest.fixture
def cloud(home):  # home: the owner id labels carry lives in the (test's own) vmgen state folder
    with FakeHetzner(boot=False) as fake:
        yield fake


def provider_on(cloud: FakeHetzner) -> HetznerProvider:
    return HetznerProvider(token=cloud.token, location="fsn1", endpoint=cloud.api_endpoint, poll_interval=0.05)


@pytest.fixture
def provider(cloud) -> HetznerProvider:
    return provider_on(cloud)


def spec(name: str = "ws", size: str = "medium", image: str = "") -> WorkspaceSpec:
    return WorkspaceSpec(
        name=name,
        source=GitSource("https://example.com/app"),
        agent=AGENTS["claude"],
        vmgen=VMGEN,
        ssh_keys=(PUBKEY,),
        agent_version=AGENT_VERSION,
        size=size,
        region="fsn1",
        image=image,
    )


def bake_on(cloud: FakeHetzner, server_type: str, created: str, owner: bool = True) -> int:
    """A snapshot this user baked on a server of `server_type`, dated `created` (`owner`: with
    the owner labels vmgen records); returns its id."""
    client = cloud.client()
    made = client.servers.create(
        f"bake-{server_type}", server_type=ServerType(name=server_type), image=Image(name="ubuntu-24.04")
    )
    made.action.wait_until_finished()
    labels = STAMP_LABELS | (owner_labels(label_value) if owner else {})
    snap = made.server.create_image(description=f"baked on {server_type}", labels=labels)
    snap.action.wait_until_finished()
    client.servers.delete(made.server).wait_until_finished()
    with cloud.state.lock:
        cloud.state.images[snap.image.id].created = created
    return snap.image.id


def left_on(cloud: FakeHetzner) -> dict[str, int]:
    with cloud.state.lock:
        return {kind: len(getattr(cloud.state, kind)) for kind in ("servers", "firewalls", "ssh_keys")}


NOTHING = {"servers": 0, "firewalls": 0, "ssh_keys": 0}


# --- 1. a snapshot cannot boot a smaller disk ------------------------------------------------------


def test_a_launch_boots_the_newest_snapshot_whose_disk_fits_its_size(cloud, provider):
    on_small = bake_on(cloud, "cx23", "2026-01-01T00:00:00+00:00")  # 40 GB
    on_medium = bake_on(cloud, "cx33", "2026-02-01T00:00:00+00:00")  # 80 GB, newer
    assert with_baked_image(spec(size="medium"), provider, print).image == str(on_medium)
    small = with_baked_image(spec(size="small"), provider, print)
    assert small.image == str(on_small)
    made = provider.create(small, USER_DATA)
    assert (made.server_type, made.status) == ("cx23", "running")


def test_two_first_launches_at_once_share_the_key_and_the_firewall(cloud):
    """Two terminals launch at once: the second looked for vmgen's key and firewall before the
    first made them, and its own create then meets Hetzner's uniqueness_error."""
    first, second = provider_on(cloud), provider_on(cloud)
    missed: set[str] = set()

    def missing_once(kind: str, real):
        def lookup(*args, **kwargs):
            if kind not in missed:
                missed.add(kind)
                return None if kind == "key" else []
            return real(*args, **kwargs)

        return lookup

    second.client.ssh_keys.get_by_fingerprint = missing_once("key", second.client.ssh_keys.get_by_fingerprint)  # type: ignore[method-assign]
    second.client.firewalls.get_all = missing_once("firewall", second.client.firewalls.get_all)  # type: ignore[method-assign]
    first.create(spec("a"), USER_DATA)
    assert second.create(spec("b"), USER_DATA).status == "running"
    assert missed == {"key", "firewall"} and left_on(cloud) == {"servers": 2, "firewalls": 1, "ssh_keys": 1}


def test_a_launch_without_a_snapshot_that_fits_starts_from_the_stock_image(cloud, provider):
    bake_on(cloud, "cx33", "2026-02-01T00:00:00+00:00")
    small = with_baked_image(spec(size="small"), provider, print)
    assert small.image == ""
    assert provider.create(small, USER_DATA).server_type == "cx23"


def run_vmgen(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # PATH holds the interpreter's folder only: no Packer, so `image build` stops after the template.
    environment = {
        "PATH": os.path.dirname(sys.executable),
        "HOME": str(home),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "vmgen", *args],
        env=environment,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_image_build_bakes_on_the_smallest_disk_so_every_size_can_boot_the_snapshot(home, cloud):
    result = run_vmgen(
        home,
        "image",
        "build",
        "--provider",
        "hetzner",
        "--packer",
        HCLOUD_TOKEN=cloud.token,
        VMGEN_HCLOUD_ENDPOINT=cloud.api_endpoint,
        VMGEN_REGION="fsn1",
        VMGEN_SIZE="large",
    )
    assert "packer is not installed" in result.stderr, result.stderr
    template = hcl2.loads((home / ".local/state/vmgen/packer/vmgen.pkr.hcl").read_text())
    source = template["source"][0]['"hcloud"']['"vmgen"']
    assert source["server_type"].strip('"') == "cx23"


# --- 2. the hcloud floor -------------------------------------------------------------------------

# What vmgen reads from hcloud, and the release that added it (hcloud-python's CHANGELOG.md).
HCLOUD_FEATURES = {
    "ServerType.locations (per-location deprecation)": "2.7.0",  # "per location server types"
    "Server.location": "2.13.0",  # "deprecate datacenter in primary ips and servers"
    "ServerTypeLocation.available": "2.18.0",  # "move available and recommended to server_type"
}


def test_the_declared_hcloud_floor_has_everything_vmgen_reads():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    hcloud = next(r for r in map(Requirement, pyproject["project"]["dependencies"]) if r.name == "hcloud")
    floor = min(Version(s.version) for s in hcloud.specifier if s.operator == ">=")
    missing = {feature: added for feature, added in HCLOUD_FEATURES.items() if Version(added) > floor}
    assert not missing, f"hcloud>={floor} lacks {missing}"


# --- 3. placement failures and failed actions ----------------------------------------------------


def test_no_room_for_the_server_is_one_clear_line_and_leaves_nothing(cloud, provider):
    cloud.fail_next("resource_unavailable", 412, method="POST", path="/servers", message="error during placement")
    with pytest.raises(ProviderActionFailed) as info:
        provider.create(spec(), USER_DATA)
    message = str(info.value)
    assert "no room to create a cx33 server in fsn1" in message and "--region" in message and "\n" not in message
    assert left_on(cloud) == NOTHING


def test_a_failed_create_action_says_why_rather_than_server_not_found(cloud, provider):
    cloud.fail_action("create_server", "placement_error", "error during placement")
    with pytest.raises(ProviderActionFailed) as info:
        provider.create(spec(), USER_DATA)
    message = str(info.value)
    assert "error during placement" in message and "not found" not in message
    assert left_on(cloud) == NOTHING


def test_an_action_that_never_finishes_is_one_clear_line():
    with pytest.raises(ProviderActionFailed, match="did not finish"), api_errors("create the server"):
        raise ActionTimeoutException(Action(id=7, command="create_server", status="running"))


# --- 4. a server still starting, a firewall still in use -----------------------------------------


def answered(cloud: FakeHetzner, method: str, status: int) -> bool:
    return any(r.method == method and r.status == status for r in cloud.requests)


def test_a_destroy_right_after_create_waits_for_the_start_and_removes_everything():
    with FakeHetzner(boot=False, start_action_seconds=3, firewall_release_seconds=0.5) as cloud:
        provider = provider_on(cloud)
        assert provider.create(spec(), USER_DATA).status == "starting"
        assert not provider.delete("ws")  # nothing left for later
        assert left_on(cloud) == NOTHING
        assert answered(cloud, "DELETE", 423) and answered(cloud, "DELETE", 422)  # locked, then in use: retried


def test_a_server_that_cannot_be_deleted_is_reported_as_still_billed(cloud, provider):
    provider.create(spec(), USER_DATA)
    cloud.fail_next("server_error", 500, method="DELETE", path="/servers", times=10)
    with pytest.raises(ResourceLeftBehind, match="'ws' still exists and is billed"):
        provider.delete("ws")
    assert left_on(cloud)["servers"] == 1


def test_destroy_leaves_a_firewall_still_in_use_for_later_instead_of_failing(home, monkeypatch):
    with FakeHetzner(boot=False, firewall_release_seconds=600) as cloud:
        provider_on(cloud).create(spec(), USER_DATA)
        monkeypatch.setattr(HetznerProvider, "FIREWALL_IN_USE_WAITS", (0.01, 0.01))
        env = {
            "VMGEN_PROVIDER": "hetzner",
            "HCLOUD_TOKEN": cloud.token,
            "VMGEN_HCLOUD_ENDPOINT": cloud.api_endpoint,
            "VMGEN_REGION": "fsn1",
        }
        result = CliRunner().invoke(main, ["destroy", "ws", "--yes"], env=env)
        assert result.exit_code == 0, result.output
        assert "destroyed ws" in result.stderr and "will be removed later" in result.stderr
        assert left_on(cloud) == {"servers": 0, "firewalls": 1, "ssh_keys": 0}


# --- 5. the API as it is today -------------------------------------------------------------------


def test_sizes_and_servers_are_read_from_the_current_fields_without_deprecation_warnings(provider):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # hcloud warns on every read of a field the API phases out
        offers = {o.name: o for o in provider.offers("fsn1")}
        made = provider.create(spec(), USER_DATA)
        listed = provider.workspaces()
    assert offers["cx22"].deprecated and not offers["cx23"].deprecated  # per-location deprecation
    assert made.price_hourly == listed[0].price_hourly and made.price_hourly > 0  # the server's location


# --- owners and removing snapshots (vmgen list / image list / image rm on a shared project) ------


def test_servers_carry_their_owner_and_a_snapshot_can_be_removed(cloud, provider):
    made = provider.create(spec(), USER_DATA)
    assert owned(made.owner, made.owner_id, label_value) and owned(
        provider.workspaces()[0].owner, provider.workspaces()[0].owner_id
    )
    snapshot = bake_on(cloud, "cx23", "2026-01-01T00:00:00+00:00", owner=False)
    (baked,) = provider.baked_images()
    assert baked.ref == str(snapshot) and baked.owner == ""  # baked before owners were recorded
    assert provider.newest_baked() is None  # whose it is cannot be told: it boots only when named
    provider.remove_baked(baked)
    assert provider.baked_images() == [] and provider.leftovers() == []


def test_another_users_snapshot_is_not_launched_from(cloud, provider):
    snapshot = bake_on(cloud, "cx33", "2026-02-01T00:00:00+00:00")
    with cloud.state.lock:  # another user of this very user@host (everyone root on a shared machine)
        cloud.state.images[snapshot].labels["vmgen-owner-id"] = "0123456789abcdef"
    assert provider.newest_baked() is None
    assert with_baked_image(spec(), provider, print).image == ""


def test_a_disk_kept_without_a_backup_is_listed_and_made_a_server_again(cloud, provider, tmp_path, monkeypatch):
    """The VM's idle action snapshots its server (labelled) when no backup could be made; the
    laptop lists that snapshot and makes the same server from it, then deletes it."""
    from vmgen.contract.documents import WatchSettings
    from vmgen.contract.names import VmPaths
    from vmgen.errors import UsageError
    from vmgen.vmside.providers import hetzner as on_the_vm

    made = provider.create(spec("ws", size="large"), USER_DATA)
    server = next(s for s in cloud.state.servers.values() if s.name == "ws")
    paths = VmPaths(etc=tmp_path)
    paths.secrets.write_text(f"HCLOUD_TOKEN={cloud.token}\n")
    monkeypatch.setattr(on_the_vm, "metadata", lambda settings, key: str(server.id))
    settings = WatchSettings(name="ws", provider="hetzner", api_endpoint=cloud.api_endpoint)
    snapshot = on_the_vm.PROVIDER.snapshot(settings, paths, wait=30)
    on_the_vm.PROVIDER.delete(settings, paths)
    assert provider.get("ws") is None

    (kept,) = provider.kept_disks()
    assert (kept.name, kept.snapshot) == ("ws", snapshot) and owned(kept.owner, kept.owner_id) is True
    assert provider.kept_disks("other") == []
    with pytest.raises(UsageError, match=f"snapshot {snapshot} is not one kept of other"):
        provider.restore_kept("other", snapshot, PUBKEY, USER_DATA)
    again = provider.restore_kept("ws", snapshot, PUBKEY, "#cloud-config\nusers: []\n")
    assert again.server_type == made.server_type  # the same type, in the same location
    booted = next(s for s in cloud.state.servers.values() if s.name == "ws")
    assert booted.image.id == int(snapshot) and booted.user_data == "#cloud-config\nusers: []\n"
    provider.remove_kept(snapshot)
    assert provider.kept_disks() == []
