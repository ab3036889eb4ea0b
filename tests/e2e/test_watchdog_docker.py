"""The watchdog on the docker provider: an idle workspace powers itself off (a container cannot
delete itself), and `vmgen start` brings it back with a fresh countdown."""

from __future__ import annotations

import json
import time

from tests.polling import eventually

from .conftest import make_repo, unique

SLEEPY = unique("sleepy")


def test_idle_workspace_powers_off_and_starts_again(cli, tmp_path, docker_client):
    cli.env.update({"VMGEN_IDLE_INTERVAL_SECONDS": "2", "VMGEN_IDLE_WARN_MINUTES": "0.1"})
    cli("launch", str(make_repo(tmp_path, SLEEPY)), "--idle-minutes", "0.5")
    container = docker_client.containers.get(f"vmgen-{SLEEPY}")

    def exited() -> bool:
        container.reload()
        return container.status == "exited"

    eventually(exited, timeout=180, what="the idle workspace to power off", interval=2)
    row = next(line for line in cli("list").stdout.splitlines() if line.startswith(" " + SLEEPY) or line.startswith(SLEEPY))
    assert "stopped" in row

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
