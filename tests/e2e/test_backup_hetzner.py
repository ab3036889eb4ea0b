"""Backups on the simulated Hetzner cloud with a real S3 server (moto) standing in for R2: an idle
workspace backs itself up, verifies the backup and deletes itself through the API; `vmgen
restore` brings it back on a new server with the agent's file and conversation."""

from __future__ import annotations

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.fakes.hetzner import FakeHetzner
from tests.fakes.moto_server import CREDENTIALS, moto_server, s3_client
from tests.polling import eventually

from .conftest import make_repo

NAME = "roamer"
NOTE = "the key is under the mat\n"
BUCKET = "vmgen-backups"
IDLE_MINUTES = 0.5


@pytest.fixture(scope="module")
def cloud(cli, vm_image, tmp_path_factory):
    fake = FakeHetzner(image=vm_image).start()
    # Bound to the fake cloud's gateway: the laptop (this process) and the VMs reach the same URL.
    with moto_server(tmp_path_factory.mktemp("r2") / "moto.log", host=fake.gateway or "127.0.0.1") as port:
        endpoint = f"http://{fake.gateway}:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        cli.env.update(
            {
                "VMGEN_PROVIDER": "hetzner",
                "HCLOUD_TOKEN": "test-token",
                "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
                "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
                "VMGEN_R2_BUCKET": BUCKET,
                "VMGEN_R2_ENDPOINT": endpoint,
                "VMGEN_R2_ACCESS_KEY_ID": CREDENTIALS["access_key_id"],
                "VMGEN_R2_SECRET_ACCESS_KEY": CREDENTIALS["secret_access_key"],
                "VMGEN_IDLE_WARN_MINUTES": "0.25",
                "VMGEN_IDLE_INTERVAL_SECONDS": "2",
            }
        )
        yield fake, endpoint
    fake.stop()


def test_idle_workspace_backs_up_deletes_itself_and_comes_back(cli, model, cloud, tmp_path) -> None:
    fake, endpoint = cloud
    model.script = Script(
        rules=[
            Rule(
                trigger="NOTE.md",
                tool=ToolUse("Write", {"file_path": f"/home/agent/work/{NAME}/NOTE.md", "content": NOTE}),
                after_tool_text="Saved NOTE.md.",
            )
        ]
    )
    cli("launch", str(make_repo(tmp_path, NAME)), "--idle-minutes", str(IDLE_MINUTES))
    # The store's keys are root's: the agent (and anything it runs) cannot read them.
    denied = cli("ssh", NAME, "--", "cat /etc/vmgen/backup.toml", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    cli("send", NAME, "please write NOTE.md")
    eventually(
        lambda: cli.ssh(NAME, f"cat work/{NAME}/NOTE.md", check=False) == NOTE, timeout=60, what="the agent's file"
    )

    # Idle: the watchdog backs up to R2, verifies, then deletes the server through the API.
    eventually(
        lambda: NAME not in {s.name for s in fake.state.servers.values()},
        timeout=IDLE_MINUTES * 60 + 180,
        what="the idle workspace to back up and delete itself",
        interval=3,
    )
    stored = s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"ws/{NAME}/")["Contents"]
    manifests = [o["Key"] for o in stored if o["Key"].endswith(".json")]
    assert len(manifests) == 1 and any(o["Key"].endswith(".tar.zst.age") for o in stored)
    backup_id = manifests[0].rsplit("/", 1)[1].removesuffix(".json")
    assert backup_id in cli("backups", NAME).stdout
    listed = cli("list")
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == [NAME])
    assert "gone" in row and "vmgen restore NAME" in listed.stderr  # not a "leftover" to destroy

    cli.env["VMGEN_IDLE_MINUTES"] = "30"  # the restored one must stay up while it is checked
    restored = cli("restore", NAME)
    assert f"restored {NAME} from {backup_id} on hetzner" in restored.stderr
    assert NAME in {s.name for s in fake.state.servers.values()}
    assert cli.ssh(NAME, f"cat work/{NAME}/NOTE.md") == NOTE
    pid = cli.ssh(NAME, "pgrep -u agent -o -f '^claude '").strip()
    assert "claude --resume " in cli.ssh(NAME, f"ps -o args= -p {pid}")  # its own conversation, by id
    eventually(
        lambda: "NOTE.md" in cli.ssh(NAME, "tmux capture-pane -p -S -200 -t claude"),
        timeout=60,
        what="the earlier conversation on screen after the restore",
    )
    cli("destroy", NAME, "--yes")
    assert not fake.state.servers
