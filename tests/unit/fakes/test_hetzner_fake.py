"""The simulated Hetzner Cloud, driven only through the real `hcloud` client.

Most tests use an in-memory fake (`boot=False`). One test boots real simulated VMs (two
containers in total: a server and a server from its snapshot) and needs the Docker engine and
the project's image (the test script provides both); it is marked e2e.
"""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import requests
from hcloud import APIException, Client
from hcloud.actions import ActionFailedException
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server

from tests.fakes.hetzner import FakeHetzner
from tests.fakes.hetzner.vms import DockerVms
from tests.polling import eventually

VM_IMAGE = "vmgen-debian12:latest"
USER_DATA = "#cloud-config\nruncmd:\n  - [touch, /root/booted]\n"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlq tester@laptop"
PUBKEY_FP = "0a:a5:7e:4d:92:2c:1f:c6:b6:1f:6b:8d:7f:1f:9b:91"  # ssh-keygen -l -E md5


@pytest.fixture
def cloud():
    with FakeHetzner(boot=False) as fake:
        yield fake


@pytest.fixture
def client(cloud) -> Client:
    return cloud.client()


@pytest.fixture
def no_retry_sleep(monkeypatch):
    """hcloud retries rate_limit_exceeded 5 times with 1..60 s backoff: keep the logic, skip the wait."""
    monkeypatch.setattr("hcloud._client.time.sleep", lambda _s: None)


def create(client: Client, name: str, server_type: str = "cx23", location: str | None = "fsn1", **kw):
    return client.servers.create(
        name,
        server_type=ServerType(name=server_type),
        image=Image(name="debian-12"),
        location=Location(name=location) if location else None,
        **kw,
    )


def api_error(call) -> APIException:
    with pytest.raises(APIException) as info:
        call()
    return info.value


# --- catalog -------------------------------------------------------------------------------------


def test_server_types_have_prices_per_location_and_deprecation(client):
    types = {t.name: t for t in client.server_types.get_all()}
    assert {"cx22", "cx23", "cx33", "cx43", "cx53"} <= set(types)
    cx23 = types["cx23"]
    assert (cx23.cores, cx23.memory, cx23.architecture) == (2, 4.0, "x86")
    fsn1 = next(p for p in cx23.prices if p["location"] == "fsn1")
    assert fsn1["price_monthly"] == {"net": "2.9900000000", "gross": "3.5581000000000000"}
    assert isinstance(fsn1["price_hourly"]["gross"], str)
    assert [(loc.location.name, loc.available, loc.deprecation) for loc in cx23.locations] == [
        ("fsn1", True, None),
        ("nbg1", True, None),
        ("hel1", True, None),
    ]
    assert all(loc.deprecation is not None for loc in types["cx22"].locations)
    assert types["cx22"].data_model._deprecation.unavailable_after.year == 2026
    assert "hel1" not in [loc.location.name for loc in types["cx53"].locations]
    assert client.server_types.get_by_name("cx43").cores == 8


def test_locations_and_system_images(client):
    assert [loc.name for loc in client.locations.get_all()] == ["fsn1", "nbg1", "hel1"]
    assert client.locations.get_by_name("hel1").country == "FI"
    names = {i.name for i in client.images.get_all(type=["system"])}
    assert {"ubuntu-24.04", "debian-12"} <= names
    debian = client.images.get_by_name_and_architecture("debian-12", "x86")
    assert (debian.type, debian.os_flavor, debian.status) == ("system", "debian", "available")


def test_pagination_meta(client):
    for i in range(5):
        client.ssh_keys.create(f"k{i}", public_key=PUBKEY.replace("IGVm", f"IGV{i}"))
    keys, meta = client.ssh_keys.get_list(page=2, per_page=2)
    assert len(keys) == 2
    p = meta.pagination
    assert (p.page, p.per_page, p.previous_page, p.next_page, p.last_page, p.total_entries) == (2, 2, 1, 3, 3, 5)
    assert len(client.ssh_keys.get_all()) == 5


# --- ssh keys and firewalls ------------------------------------------------------------------------


def test_ssh_key_found_by_fingerprint_and_unique(client):
    key = client.ssh_keys.create("laptop", public_key=PUBKEY, labels={"vmgen": "1"})
    assert key.fingerprint == PUBKEY_FP
    assert client.ssh_keys.get_by_fingerprint(PUBKEY_FP).id == key.id
    assert client.ssh_keys.get_by_name("laptop").id == key.id
    assert [k.id for k in client.ssh_keys.get_all(label_selector="vmgen")] == [key.id]
    assert api_error(lambda: client.ssh_keys.create("laptop", public_key=PUBKEY)).code == "uniqueness_error"
    assert api_error(lambda: client.ssh_keys.create("other", public_key=PUBKEY)).code == "uniqueness_error"
    assert api_error(lambda: client.ssh_keys.create("bad", public_key="nope")).code == "invalid_input"
    client.ssh_keys.delete(key)
    assert client.ssh_keys.get_by_fingerprint(PUBKEY_FP) is None


def test_firewall_with_labels_listed_by_selector(client):
    rules = [
        FirewallRule("in", "tcp", ["0.0.0.0/0", "::/0"], port="22", description="ssh"),
        FirewallRule("in", "icmp", ["0.0.0.0/0"]),
    ]
    fw = client.firewalls.create("ws-a", rules=rules, labels={"vmgen": "1", "workspace": "a"}).firewall
    client.firewalls.create("other", labels={"team": "x"})
    found = client.firewalls.get_all(label_selector="vmgen=1,workspace in (a,b)")
    assert [f.id for f in found] == [fw.id]
    assert client.firewalls.get_all(label_selector="!vmgen")[0].name == "other"
    got = client.firewalls.get_by_name("ws-a")
    assert [(r.direction, r.protocol, r.port) for r in got.rules] == [("in", "tcp", "22"), ("in", "icmp", None)]
    assert got.labels == {"vmgen": "1", "workspace": "a"}


def test_firewall_in_use_cannot_be_deleted(client):
    fw = client.firewalls.create("fw").firewall
    server = create(client, "web", firewalls=[fw]).server
    assert [f.firewall.id for f in client.servers.get_by_id(server.id).public_net.firewalls] == [fw.id]
    err = api_error(lambda: client.firewalls.delete(fw))
    assert (err.code, err.message) == ("resource_in_use", f"firewall with ID {fw.id} is still in use")
    for action in client.firewalls.remove_from_resources(fw, [FirewallResource("server", server=server)]):
        action.wait_until_finished()
    selector = FirewallResource("label_selector", label_selector=FirewallResourceLabelSelector("vmgen"))
    client.firewalls.apply_to_resources(fw, [selector])
    assert api_error(lambda: client.firewalls.delete(fw)).code == "resource_in_use"
    client.firewalls.remove_from_resources(fw, [selector])
    assert client.firewalls.delete(fw) is True
    assert client.firewalls.get_by_name("fw") is None


# --- errors --------------------------------------------------------------------------------------


def test_wrong_token_is_unauthorized(cloud):
    err = api_error(cloud.client(token="wrong").servers.get_all)
    assert (err.code, err.message) == ("unauthorized", "unable to authenticate")


def test_readonly_token_reads_but_cannot_write(cloud):
    ro = cloud.client(token=cloud.readonly_token)
    assert ro.servers.get_all() == []
    assert api_error(lambda: ro.ssh_keys.create("k", public_key=PUBKEY)).code == "token_readonly"
    cloud.readonly_error_code = "forbidden"  # knob, for code that expects the generic code
    assert api_error(lambda: ro.ssh_keys.create("k", public_key=PUBKEY)).code == "forbidden"


def test_rate_limit_is_retried_by_hcloud_then_surfaces(cloud, client, no_retry_sleep):
    cloud.rate_limit_next(times=2, path="/servers")
    assert client.servers.get_all() == []  # hcloud retried twice, third call went through
    cloud.rate_limit_next(times=6)  # more than hcloud's 5 retries
    err = api_error(client.locations.get_all)
    assert err.code == "rate_limit_exceeded"
    assert [r.status for r in cloud.requests[-6:]] == [429] * 6


def test_rate_limit_headers(cloud):
    url, auth = f"{cloud.api_endpoint}/locations", {"Authorization": f"Bearer {cloud.token}"}
    ok = requests.get(url, headers=auth, timeout=5)
    assert ok.headers["RateLimit-Limit"] == "3600" and int(ok.headers["RateLimit-Remaining"]) > 3500
    cloud.rate_limit_next()
    limited = requests.get(url, headers=auth, timeout=5)
    assert limited.status_code == 429 and limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Reset"]) > time.time()
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_server_create_errors(cloud, client):
    create(client, "taken").action.wait_until_finished()
    assert api_error(lambda: create(client, "taken")).code == "uniqueness_error"
    assert api_error(lambda: create(client, "bad_name!")).code == "invalid_input"
    err = api_error(lambda: create(client, "old", server_type="cx22"))
    assert (err.code, err.message) == ("invalid_input", "unsupported location for server type")
    err = api_error(lambda: create(client, "big", server_type="cx53", location="hel1"))
    assert (err.code, err.message) == ("invalid_input", "unsupported location for server type")
    assert api_error(lambda: create(client, "x", location="ash")).code == "invalid_input"
    cloud.set_availability("cx33", "nbg1", False)
    err = api_error(lambda: create(client, "sold-out", "cx33", "nbg1"))
    assert (err.code, err.message, cloud.requests[-1].status) == ("resource_unavailable", "error during placement", 412)
    cloud.max_servers = 1
    err = api_error(lambda: create(client, "second"))
    assert (err.code, err.details) == ("resource_limit_exceeded", {"limits": [{"name": "server_limit"}]})
    cloud.max_servers = None
    cloud.fail_next("resource_limit_exceeded", 403, method="POST", path="/servers")
    assert api_error(lambda: create(client, "third")).code == "resource_limit_exceeded"
    assert api_error(lambda: client.servers.get_by_id(1)).code == "not_found"


def test_a_snapshot_boots_only_types_with_at_least_its_disk(cloud, client):
    made = create(client, "source", server_type="cx33")
    made.action.wait_until_finished()
    snap = made.server.create_image(description="from cx33")
    snap.action.wait_until_finished()
    assert client.images.get_by_id(snap.image.id).disk_size == 80
    err = api_error(
        lambda: client.servers.create("small", server_type=ServerType(name="cx23"), image=Image(id=snap.image.id))
    )
    assert (err.code, err.message) == ("invalid_input", "image disk is bigger than server type disk")
    assert cloud.requests[-1].status == 422
    bigger = client.servers.create("bigger", server_type=ServerType(name="cx43"), image=Image(id=snap.image.id))
    bigger.action.wait_until_finished()
    assert client.servers.get_by_id(bigger.server.id).server_type.name == "cx43"


def test_failed_create_action(cloud, client):
    cloud.fail_action("create_server", "placement_error", "no capacity")
    response = create(client, "unlucky")
    with pytest.raises(ActionFailedException) as info:
        response.action.wait_until_finished()
    # The API's action error is {code, message}; hcloud's ActionError TypedDict also requires a
    # `details` key, so compare it as the plain dict it is.
    error = info.value.action.error
    assert error is not None and dict(error) == {"code": "placement_error", "message": "no capacity"}
    assert client.servers.get_by_name("unlucky") is None


def test_a_server_is_locked_while_its_start_action_runs():
    with FakeHetzner(boot=False, start_action_seconds=2) as cloud:
        client = cloud.client()
        response = create(client, "busy")
        response.action.wait_until_finished()
        assert client.servers.get_by_id(response.server.id).status == "starting"
        err = api_error(lambda: client.servers.delete(response.server))
        assert (err.code, err.message) == ("locked", "cannot perform operation because resource is locked")
        assert cloud.requests[-1].status == 423
        (start,) = response.next_actions
        start.wait_until_finished()
        assert client.servers.get_by_id(response.server.id).status == "running"
        client.servers.delete(response.server).wait_until_finished()
        assert client.servers.get_all() == []


def test_a_firewall_stays_in_use_for_a_moment_after_its_last_server_is_deleted():
    with FakeHetzner(boot=False, firewall_release_seconds=1) as cloud:
        client = cloud.client()
        fw = client.firewalls.create("fw").firewall
        response = create(client, "web", firewalls=[fw])
        response.action.wait_until_finished()
        client.servers.delete(response.server).wait_until_finished()
        err = api_error(lambda: client.firewalls.delete(fw))
        assert (err.code, err.message) == ("resource_in_use", f"firewall with ID {fw.id} is still in use")
        assert cloud.requests[-1].status == 422

        def deleted() -> bool:
            try:
                return client.firewalls.delete(fw)
            except APIException as exc:
                assert exc.code == "resource_in_use"
                return False

        eventually(deleted, timeout=30, what="the firewall to be released", interval=0.2)
        assert client.firewalls.get_all() == []


def test_server_without_docker_lifecycle(client):
    key = client.ssh_keys.create("k", public_key=PUBKEY)
    response = create(client, "paper", labels={"vmgen": "1", "ws": "paper"}, ssh_keys=[key])
    assert response.root_password is None and response.server.status == "initializing"
    assert [a.command for a in response.next_actions] == ["start_server"]
    response.action.wait_until_finished()
    server = client.servers.get_by_id(response.server.id)
    assert (server.status, server.location.name, server.server_type.name) == ("running", "fsn1", "cx23")
    assert [s.name for s in client.servers.get_all(label_selector="ws=paper")] == ["paper"]
    assert client.servers.get_all(label_selector="ws=other") == []
    server.shutdown().wait_until_finished()
    assert client.servers.get_by_id(server.id).status == "off"
    commands = [a.command for a in client.servers.get_actions(server)]
    assert commands == ["create_server", "start_server", "shutdown_server"]
    assert all(a.status == "success" for a in client.servers.get_actions(server))
    server.delete().wait_until_finished()
    assert client.servers.get_all() == []


def test_the_api_as_it_is_today(cloud, client):
    """No datacenters (2026-07-01 changelog), no firewall_already_removed (2025-08-04 changelog)."""
    response = create(client, "today")
    response.action.wait_until_finished()
    auth = {"Authorization": f"Bearer {cloud.token}"}
    raw = requests.get(f"{cloud.api_endpoint}/servers/{response.server.id}", headers=auth, timeout=5).json()
    assert "datacenter" not in raw["server"] and raw["server"]["location"]["name"] == "fsn1"
    gone = requests.get(f"{cloud.api_endpoint}/datacenters", headers=auth, timeout=5)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "deprecated_api_endpoint"
    assert "changelog" in gone.json()["error"]["details"]["announcement"]
    old_style = requests.post(
        f"{cloud.api_endpoint}/servers",
        headers=auth,
        timeout=5,
        json={"name": "old-style", "server_type": "cx23", "image": "debian-12", "datacenter": "fsn1-dc14"},
    )
    assert old_style.status_code == 422 and old_style.json()["error"]["code"] == "invalid_input"
    fw = client.firewalls.create("never-applied").firewall
    for action in client.firewalls.remove_from_resources(fw, [FirewallResource("server", server=response.server)]):
        action.wait_until_finished()  # once firewall_already_removed, now simply done
    missing = FirewallResource("server", server=Server(id=1))
    assert (
        api_error(lambda: client.firewalls.remove_from_resources(fw, [missing])).code == "firewall_resource_not_found"
    )


def test_metadata_needs_a_known_caller(cloud):
    assert requests.get(f"{cloud.url}/hetzner/v1/metadata/instance-id", timeout=5).status_code == 404


# --- real boot -----------------------------------------------------------------------------------


def _docker():
    import docker

    # The test script starts dockerd and builds the image: without them the setup is broken.
    engine = docker.from_env()
    engine.ping()
    engine.images.get(VM_IMAGE)
    return engine


def _container_of(cloud: FakeHetzner, name: str) -> str:
    server = cloud.server(name)
    assert server is not None and server.container is not None, f"{name} was not booted"
    return server.container


def _exec(container: str, *cmd: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, timeout=timeout)


def _port_open(ip: str, port: int, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


@pytest.mark.e2e
def test_servers_boot_for_real(tmp_path):
    engine = _docker()
    cloud = FakeHetzner(image=VM_IMAGE).start()
    try:
        _exercise_real_servers(cloud, engine)
    finally:
        vms, network = cloud.vms, cloud.network_name
        cloud.stop()
    assert isinstance(vms, DockerVms)  # FakeHetzner boots for real unless told boot=False
    assert engine.containers.list(all=True, filters={"label": f"vmgen-fake-hetzner.instance={vms.instance}"}) == []
    assert engine.networks.list(names=[network]) == []


def _exercise_real_servers(cloud: FakeHetzner, engine) -> None:
    client = cloud.client()
    from_gateway = Client(token=cloud.token, api_endpoint=cloud.api_endpoint_for_vms)  # host and VMs alike
    falkenstein = from_gateway.locations.get_by_name("fsn1")
    assert falkenstein is not None and falkenstein.city == "Falkenstein"
    key = client.ssh_keys.create("laptop", public_key=PUBKEY)
    fw = client.firewalls.create("ws", labels={"vmgen": "1"}).firewall
    response = create(client, "ws-real", labels={"vmgen": "1"}, user_data=USER_DATA, ssh_keys=[key], firewalls=[fw])
    ip = response.server.public_net.ipv4.ip
    response.action.wait_until_finished()
    server = client.servers.get_by_id(response.server.id)
    assert (server.status, server.public_net.ipv4.ip) == ("running", ip)
    container = _container_of(cloud, "ws-real")
    assert engine.containers.get(container).status == "running"

    # cloud-init really ran the user_data; sshd answers on the public IP from the host
    assert _exec(container, "cloud-init", "status", "--wait").stdout.strip().endswith("done")
    assert _exec(container, "test", "-f", "/root/booted").returncode == 0
    assert "ssh-ed25519" in _exec(container, "cat", "/var/lib/cloud/seed/nocloud/meta-data").stdout
    assert _port_open(ip, 22)

    # metadata service, for the calling VM
    def meta(path: str) -> str:
        base = cloud.metadata_url.removesuffix("/metadata")
        return _exec(container, "curl", "-s", "-m", "5", f"{base}/{path}").stdout

    assert meta("metadata/instance-id") == str(server.id)
    assert (meta("metadata/hostname"), meta("metadata/public-ipv4")) == ("ws-real", ip)
    assert meta("userdata") == USER_DATA
    assert "instance-id: " in meta("metadata")

    assert [s.name for s in client.servers.get_all(label_selector="vmgen=1")] == ["ws-real"]
    assert api_error(lambda: client.firewalls.delete(fw)).code == "resource_in_use"

    server.power_off().wait_until_finished()
    assert client.servers.get_by_id(server.id).status == "off"
    assert engine.containers.get(container).status == "exited"
    server.power_on().wait_until_finished()
    assert client.servers.get_by_id(server.id).status == "running"
    assert engine.containers.get(container).status == "running"

    # snapshot, then a second server from it carries the first one's files
    snap = server.create_image(description="baked", labels={"vmgen-image": "1"})
    snap.action.wait_until_finished()
    found = client.images.get_all(label_selector="vmgen-image=1", type=["snapshot"])
    assert [(i.id, i.status, i.created_from.id) for i in found] == [(snap.image.id, "available", server.id)]
    clone = client.servers.create(
        "ws-clone", server_type=ServerType(name="cx33"), image=Image(id=snap.image.id), ssh_keys=[key]
    )
    clone.action.wait_until_finished()
    clone_container = _container_of(cloud, "ws-clone")
    assert _exec(clone_container, "cloud-init", "status", "--wait").returncode == 0
    assert _exec(clone_container, "test", "-f", "/root/booted").returncode == 0
    assert _exec(clone_container, "hostname").stdout.strip() == "ws-clone"

    # a VM that powers itself off shows as off
    _exec(clone_container, "systemctl", "poweroff")
    assert _wait_for(lambda: client.servers.get_by_name("ws-clone").status == "off")

    # self-delete from inside the VM: metadata for the id, the API through the gateway
    self_delete = (
        f"curl -s -X DELETE -H 'Authorization: Bearer {cloud.token}' "
        f"{cloud.api_endpoint_for_vms}/servers/$(curl -s {cloud.metadata_url}/instance-id)"
    )
    assert '"command": "delete_server"' in _exec(container, "sh", "-c", self_delete).stdout
    assert _wait_for(lambda: engine.containers.list(all=True, filters={"name": container}) == [])
    assert client.servers.get_by_name("ws-real") is None
    assert client.firewalls.delete(fw) is True
    # ws-clone is left (exited): stop() must remove it


def _wait_for(check, timeout: float = 60) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def test_server_type_prices_have_the_apis_shape(client) -> None:
    """As hcloud-python's fixture (tests/unit/server_types/conftest.py) records them: per location,
    hourly and monthly, net with 10 decimal places and gross with 16, gross = net + 19 % VAT."""
    import re
    from decimal import Decimal

    cx33 = client.server_types.get_by_name("cx33")
    assert cx33 is not None and {p["location"] for p in cx33.prices} == {"fsn1", "nbg1", "hel1"}
    for price in cx33.prices:
        for kind in ("price_hourly", "price_monthly"):
            net, gross = price[kind]["net"], price[kind]["gross"]
            assert re.fullmatch(r"\d+\.\d{10}", net) and re.fullmatch(r"\d+\.\d{16}", gross)
            assert Decimal(gross) == Decimal(net) * Decimal("1.19")
