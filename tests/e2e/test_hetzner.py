"""The Hetzner provider end to end on the simulated Hetzner cloud: the real hcloud client talks
to the fake API, whose servers boot as simulated VMs running the rendered cloud-init."""

from __future__ import annotations

import secrets
import shutil

import pytest

from tests.fakes.hetzner import FakeHetzner

from .conftest import ROOT, Cli, make_repo


@pytest.fixture(scope="module")
def hetzner(vm_image, cli):
    fake = FakeHetzner(image=vm_image).start()
    cli.env.update(
        {
            "VMGEN_PROVIDER": "hetzner",
            "HCLOUD_TOKEN": "test-token",
            "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
            "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
            "VMGEN_REGION": "fsn1",
        }
    )
    yield fake
    fake.stop()


def vmgen_resources(fake: FakeHetzner) -> dict[str, int]:
    state = fake.state
    return {
        kind: sum(1 for item in getattr(state, kind).values() if item.labels.get("vmgen") == "1")
        for kind in ("servers", "firewalls", "ssh_keys")
    }


def row_of(listing: str, name: str) -> str:
    return next(line for line in listing.splitlines() if line.split()[:1] == [name])


def test_sizes_lists_types_and_prices_from_the_api(cli, hetzner) -> None:
    result = cli("sizes", "--location", "fsn1")
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert {"cx23", "cx33", "cx43"} <= set(rows)
    assert "cx22" not in rows  # deprecated
    assert "medium" in rows["cx33"]


def test_launch_list_ssh_and_destroy_two_workspaces(cli, hetzner, tmp_path) -> None:
    first, second = make_repo(tmp_path, "app-one"), make_repo(tmp_path, "app-two")
    cli("launch", str(first))
    assert "claude" in cli.ssh("app-one", "tmux list-sessions -F '#{session_name}'")
    row = row_of(cli("list").stdout, "app-one")
    assert "hetzner" in row and "running" in row and "cx33" in row
    price, currency = row.split()[-2:]  # PER HOUR: "0.0095 EUR"
    assert float(price) > 0 and currency == "EUR"

    cli("launch", str(second), "--type", "cx23")
    assert "cx23" in row_of(cli("list").stdout, "app-two")
    assert vmgen_resources(hetzner) == {"servers": 2, "firewalls": 1, "ssh_keys": 1}  # shared

    stopped = cli("stop", "app-two")
    assert "still bills" in stopped.stderr
    assert "stopped" in row_of(cli("list").stdout, "app-two")
    cli("start", "app-two")
    assert "claude" in cli.ssh("app-two", "tmux list-sessions -F '#{session_name}'")

    cli("destroy", "app-one", "--yes")
    assert vmgen_resources(hetzner) == {"servers": 1, "firewalls": 1, "ssh_keys": 1}
    cli("destroy", "app-two", "--yes")
    assert vmgen_resources(hetzner) == {"servers": 0, "firewalls": 0, "ssh_keys": 0}
    assert not hetzner.state.servers


def expect_error(cli, args, message, code=1):
    result = cli(*args, check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(" ")]
    assert len([line for line in lines if line.startswith("error:")]) == 1
    return result


def test_errors_are_clear_and_leave_nothing_behind(cli, hetzner, tmp_path) -> None:
    repo = str(make_repo(tmp_path, "errs"))
    env = dict(cli.env)
    try:
        cli.env["HCLOUD_TOKEN"] = "wrong-token"
        expect_error(cli, ["launch", repo], "Hetzner rejected the API token", code=2)
        cli.env["HCLOUD_TOKEN"] = hetzner.readonly_token
        expect_error(cli, ["launch", repo], "read-only", code=2)
    finally:
        cli.env.clear()
        cli.env.update(env)

    hetzner.max_servers = 0
    try:
        expect_error(cli, ["launch", repo], "project limit reached")
    finally:
        hetzner.max_servers = None

    result = expect_error(
        cli,
        ["launch", repo, "--type", "cx53", "--region", "hel1"],
        "server type 'cx53' is not available in hel1",
        code=2,
    )
    assert "cx23, cx33, cx43" in result.stderr
    expect_error(cli, ["launch", repo, "--type", "cx22"], "is deprecated", code=2)

    hetzner.rate_limit_next(times=2)
    cli("sizes", "--location", "fsn1")  # backs off as the headers say, then succeeds

    assert vmgen_resources(hetzner) == {"servers": 0, "firewalls": 0, "ssh_keys": 0}


def test_name_used_by_another_server(cli, hetzner, tmp_path) -> None:
    client = hetzner.client()
    from hcloud.images import Image
    from hcloud.server_types import ServerType

    other = client.servers.create(name="taken", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"))
    try:
        expect_error(
            cli, ["launch", str(make_repo(tmp_path, "taken"))], "already has a resource with that name", code=2
        )
        assert "taken" in [s.name for s in client.servers.get_all()]  # not ours: untouched
    finally:
        other.action.wait_until_finished()  # a server is locked (423) while its create action runs
        other.server.delete()
    assert vmgen_resources(hetzner) == {"servers": 0, "firewalls": 0, "ssh_keys": 0}


def test_cloud_init_failure_deletes_server_firewall_and_key(cli, hetzner, tmp_path) -> None:
    repo = make_repo(tmp_path, "broken")
    expect_error(cli, ["launch", str(repo), "--agent-version", "0.0.0-does-not-exist"], "cloud-init status: error")
    assert vmgen_resources(hetzner) == {"servers": 0, "firewalls": 0, "ssh_keys": 0}


def test_the_vm_runs_the_very_build_of_the_cli_that_launched_it(cli, hetzner, tmp_path) -> None:
    # A build only this CLI has: a copy of the source with one module more. No wheel server, no
    # package index for vmgen: the CLI sends its own wheel over SSH, as a user's laptop does.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "vmgen", src / "vmgen", ignore=shutil.ignore_patterns("__pycache__"))
    token = secrets.token_hex(4)
    (src / "vmgen" / f"marker_{token}.py").write_text(f"TOKEN = {token!r}\n")
    built = Cli(env={**cli.env, "PYTHONPATH": str(src)}, home=cli.home)
    assert "VMGEN_VMGEN_FIND_LINKS" not in built.env and "VMGEN_VMGEN_INDEX_URL" not in built.env
    version = built("--version").stdout
    assert version != cli("--version").stdout  # another build than the suite's own
    built("launch", str(make_repo(tmp_path, "marked")))
    try:
        assert built.ssh("marked", "vmgen --version") == version
        check = f"/opt/vmgen/bin/python -c 'from vmgen.marker_{token} import TOKEN; print(TOKEN)'"
        assert built.ssh("marked", check).strip() == token
    finally:
        built("destroy", "marked", "--yes", check=False)
