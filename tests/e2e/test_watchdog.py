"""The idle watchdog end to end: on the simulated Hetzner cloud an idle VM warns and deletes
itself through the provider API, while a VM whose agent waits on a slow model stays; on the
docker provider an idle workspace powers off and comes back with `vmgen start`."""

from __future__ import annotations

import json
import time

import pytest

from tests.fakes.anthropic_api import Rule, Script
from tests.fakes.hetzner import FakeHetzner
from tests.polling import eventually

from .conftest import make_repo
from .webhook import Webhook

IDLE_MINUTES = 0.5  # seconds-scale: the policy is the same at any scale (its table tests it)
SLOW_MODEL_SECONDS = 3 * IDLE_MINUTES * 60 + 60  # longer than 3x the idle timeout


@pytest.fixture(scope="module")
def watched(cli, vm_image):
    fake = FakeHetzner(image=vm_image).start()
    webhook = Webhook()
    cli.env.update(
        {
            "VMGEN_PROVIDER": "hetzner",
            "HCLOUD_TOKEN": "test-token",
            "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
            "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
            "VMGEN_IDLE_ACTION": "delete",
            "VMGEN_IDLE_WARN_MINUTES": "0.25",
            "VMGEN_IDLE_INTERVAL_SECONDS": "2",
            "VMGEN_IDLE_WEBHOOK_URL": webhook.url,
        }
    )
    yield fake, webhook
    webhook.server.shutdown()
    fake.stop()


def server_names(fake: FakeHetzner) -> set[str]:
    return {server.name for server in fake.state.servers.values()}


def test_idle_vm_warns_and_deletes_itself_while_a_working_one_stays(cli, model, watched, tmp_path, docker_client):
    fake, webhook = watched
    model.script = Script(rules=[Rule(trigger="LONG TASK", text="Finally done.", delay=SLOW_MODEL_SECONDS)])
    cli("launch", str(make_repo(tmp_path, "idle-ws")), "--idle-minutes", str(IDLE_MINUTES))
    cli("launch", str(make_repo(tmp_path, "busy-ws")), "--idle-minutes", str(IDLE_MINUTES))
    cli("send", "busy-ws", "LONG TASK: take your time")
    model.wait_for("LONG TASK", timeout=60)
    turn_started = time.monotonic()

    warning = webhook.wait_for("idle-ws", timeout=IDLE_MINUTES * 60 + 60)
    assert "will be deleted in" in warning["text"] and "vmgen keepalive idle-ws --for 1h" in warning["text"]
    assert warning["workspace"] == "idle-ws"
    eventually(
        lambda: "idle-ws" not in server_names(fake),
        timeout=IDLE_MINUTES * 60 + 90,
        what="the idle VM to delete itself",
        interval=3,
    )
    # The simulated cloud removes a deleted server's VM in the background, as Hetzner does.
    eventually(
        lambda: not docker_client.containers.list(all=True, filters={"name": "idle-ws"}),
        timeout=60,
        what="the deleted server's VM to go",
    )

    # The busy one: its agent waits on the slow model with ~0% CPU the whole time.
    remaining = 3 * IDLE_MINUTES * 60 - (time.monotonic() - turn_started)
    time.sleep(max(0.0, remaining))  # the claim is that nothing happens during this period
    assert "busy-ws" in server_names(fake)
    assert not any("busy-ws" in m["text"] for m in webhook.messages)
    status = json.loads(cli("status", "busy-ws", "--json").stdout)
    assert status["agent"]["state"] == "working"
    assert status["verdict"]["busy"] is True


def test_the_agent_user_cannot_reach_the_secrets(cli, watched):
    fake, _ = watched
    name = "busy-ws"
    denied = cli("ssh", name, "--", "cat /etc/vmgen/provider.env", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert cli("ssh", name, "--", "sudo -n true", check=False).returncode != 0
    for url in ("http://169.254.169.254/hetzner/v1/metadata/instance-id", f"{fake.metadata_url}/instance-id"):
        blocked = cli("ssh", name, "--", f"curl -sS -m 5 {url}", check=False)
        assert blocked.returncode != 0, url
    # Root (the watchdog) still can: the rule is an owner match, not a blanket block.
    server = fake.server(name)
    import docker

    container = docker.from_env().containers.get(server.container)
    result = container.exec_run(["curl", "-sS", "-m", "5", f"{fake.metadata_url}/instance-id"])
    assert result.exit_code == 0 and result.output.decode().strip() == str(server.id)
    cli("destroy", name, "--yes")
