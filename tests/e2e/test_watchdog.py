"""The idle watchdog end to end: on the simulated Hetzner cloud an idle VM warns and deletes
itself through the provider API, while a VM whose agent waits on a slow model stays; on the
docker provider an idle workspace powers off and comes back with `vmgen start`. Both VMs notify
a fake ntfy on a token-protected topic and a fake Telegram Bot API (root's sendMessage, with the
bot token and chat id from its secrets): ready, the warning with its countdown, the finished turn,
each once."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.anthropic_api import Rule, Script
from tests.fakes.hetzner import FakeHetzner
from tests.fakes.ntfy import FakeNtfy
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN, FakeTelegram, TelegramUser
from tests.polling import eventually

from .conftest import make_repo
from .webhook import Webhook

IDLE_MINUTES = 0.5  # seconds-scale: the policy is the same at any scale (its table tests it)
SLOW_MODEL_SECONDS = 3 * IDLE_MINUTES * 60 + 60  # longer than 3x the idle timeout
NTFY_TOPIC, NTFY_TOKEN = "vmgen-e2e", "tk_test-token"
PHONE = TelegramUser(5151, "Sam", "sam")


@pytest.fixture(scope="module")
def watched(cli, vm_image):
    fake = FakeHetzner(image=vm_image).start()
    webhook = Webhook()
    ntfy = FakeNtfy(protected={NTFY_TOPIC: {NTFY_TOKEN}}, host="0.0.0.0", public_host="host.docker.internal").start()
    telegram = FakeTelegram(host="0.0.0.0", public_host="host.docker.internal").start()
    telegram.open_chat(PHONE)  # as `vmgen telegram setup` left it: the user sent /start
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
            "VMGEN_NOTIFY": f"ntfy:{ntfy.endpoint}/{NTFY_TOPIC}, telegram:{telegram.root_url}",
            "NTFY_TOKEN": NTFY_TOKEN,
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "VMGEN_TELEGRAM_CHAT_ID": str(PHONE.id),
            "VMGEN_TELEGRAM_USER_ID": str(PHONE.id),
        }
    )
    yield fake, webhook, ntfy, telegram
    telegram.stop()
    ntfy.stop()
    webhook.server.shutdown()
    fake.stop()


def server_names(fake: FakeHetzner) -> set[str]:
    return {server.name for server in fake.state.servers.values()}


def test_idle_vm_warns_and_deletes_itself_while_a_working_one_stays(cli, model, watched, tmp_path, docker_client):
    fake, webhook, ntfy, telegram = watched
    model.script = Script(rules=[Rule(trigger="LONG TASK", text="Finally done.", delay=SLOW_MODEL_SECONDS)])
    # Launched at once, as from two terminals (the first launches share the key and firewall).
    with ThreadPoolExecutor(2) as pool:
        launches = [
            pool.submit(cli, "launch", str(make_repo(tmp_path, name)), "--idle-minutes", str(IDLE_MINUTES))
            for name in ("idle-ws", "busy-ws")
        ]
        for launch in launches:
            launch.result()
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

    # The phone heard the idle one's warning, with its countdown, once; the busy one's finished
    # turn, once (its Stop hook, through root's notifier), when the slow model answers.
    def said(workspace: str, title: str) -> list[dict]:
        return [m for m in ntfy.messages(NTFY_TOPIC) if m.get("title") == f"{workspace}: {title}"]

    eventually(
        lambda: bool(said("busy-ws", "agent finished")), timeout=SLOW_MODEL_SECONDS + 60, what="busy-ws's finished turn"
    )
    (warned,) = said("idle-ws", "idle warning")
    assert "will be deleted in" in warned["message"] and "vmgen keepalive idle-ws --for 1h" in warned["message"]
    assert said("busy-ws", "idle warning") == [] and len(said("busy-ws", "agent finished")) == 1
    assert len(said("busy-ws", "ready")) == 1 and len(said("idle-ws", "ready")) == 1  # provisioning's end
    assert all(p.headers.get("authorization") == f"Bearer {NTFY_TOKEN}" for p in ntfy.published)
    assert not any(NTFY_TOKEN in str(m) for m in ntfy.messages(NTFY_TOPIC))

    # The same on Telegram, sent by root with the bot's token and the recorded chat id; the warning
    # with its Keep alive 1 h button (which `vmgen telegram run` answers: tests/unit/telegram).
    def texts(workspace: str, title: str) -> list[dict]:
        return [m for m in telegram.sent(PHONE.id) if m["text"].startswith(f"{workspace}: {title}\n")]

    eventually(lambda: bool(texts("busy-ws", "agent finished")), timeout=60, what="busy-ws's finished turn on Telegram")
    (warned_tg,) = texts("idle-ws", "idle warning")
    assert "will be deleted in" in warned_tg["text"]
    assert [b["text"] for b in warned_tg["reply_markup"]["inline_keyboard"][0]] == ["Keep alive 1 h"]
    assert len(texts("busy-ws", "ready")) == 1 and len(texts("idle-ws", "ready")) == 1
    assert len(texts("busy-ws", "agent finished")) == 1 and texts("busy-ws", "idle warning") == []
    assert not any(TELEGRAM_TOKEN in str(m) for m in telegram.sent(PHONE.id))


def test_the_agent_user_cannot_reach_the_secrets(cli, watched):
    fake, _, _, _ = watched
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
    output = result.output
    assert isinstance(output, bytes)  # one piece: exec_run was not asked to stream
    assert result.exit_code == 0 and output.decode().strip() == str(server.id)
    cli("destroy", name, "--yes")
