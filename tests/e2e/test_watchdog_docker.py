"""The watchdog on the docker provider: an idle workspace backs up and powers itself off (a
container cannot delete itself); `vmgen list` shows its warning beforehand to a user who is not
attached, and afterwards that the watchdog stopped it, after which backup, and the ways back,
which a refused `vmgen restore` names too; `vmgen start` brings it back with a fresh countdown."""

from __future__ import annotations

import json
import time

from tests.polling import eventually
from vmgen.contract.names import VM

from .conftest import make_repo, unique

SLEEPY = unique("sleepy")


def test_idle_workspace_powers_off_and_starts_again(cli, tmp_path, docker_client):
    cli("launch", str(make_repo(tmp_path, SLEEPY)), "--idle-minutes", "0.5", "--idle-interval", "2",
        "--idle-warn", "0.3")
    container = docker_client.containers.get(f"vmgen-{SLEEPY}")

    # Nobody is attached: once the watchdog warns (its state, read by root, no SSH session that
    # could count as a person), `vmgen list` says so.
    def warned() -> bool:
        found = container.exec_run(["cat", str(VM.watchdog_state)])
        return found.exit_code == 0 and json.loads(found.output)["verdict"]["next_action"] == "warn"

    eventually(warned, timeout=120, what="the watchdog's warning", interval=0.5)
    listed = cli("list").stderr
    warning = next(line for line in listed.splitlines() if line.startswith(f"{SLEEPY}: idle;"))
    assert "in " in warning and f"vmgen keepalive {SLEEPY} --for 1h" in warning, listed

    def exited() -> bool:
        container.reload()
        return container.status == "exited"

    eventually(exited, timeout=180, what="the idle workspace to power off", interval=2)
    listed = cli("list")
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == [SLEEPY])
    assert "stopped (idle)" in row
    note = next(line for line in listed.stderr.splitlines() if line.startswith(f"{SLEEPY}: "))
    backup_id = note.split("after backup ")[1].split(";")[0]
    assert "stopped by its idle watchdog" in note and backup_id in cli("backups", SLEEPY).stdout
    assert f"`vmgen start {SLEEPY}`" in note and f"`vmgen destroy {SLEEPY}` then `vmgen restore {SLEEPY}`" in note
    refused = cli("restore", SLEEPY, check=False, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"`vmgen start {SLEEPY}`" in refused.stderr
    assert f"`vmgen destroy {SLEEPY}` then `vmgen restore {SLEEPY}`" in refused.stderr

    started = time.time()
    cli("start", SLEEPY)

    # A new boot: the countdown starts afresh rather than firing at once on the old history.
    def fresh_verdict() -> dict | None:
        state = json.loads(cli("status", SLEEPY, "--json").stdout)
        return state if state.get("updated_at", 0) > started else None

    eventually(lambda: fresh_verdict() is not None, timeout=60, what="the watchdog's first tick after start")
    state = fresh_verdict()
    assert state["verdict"]["next_action"] in ("none", "warn")
    container.reload()
    assert container.status == "running"
    assert cli.ssh(SLEEPY, f"cat work/{SLEEPY}/README.md") == f"# {SLEEPY}\n"
    cli("destroy", SLEEPY, "--yes")
