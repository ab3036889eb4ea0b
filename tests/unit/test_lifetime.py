"""A workspace's bill has an end by default: the hard lifetime is finite unless the user turns it
off, settable per launch, and `vmgen status` and the workspace page say it and what is left."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.unit.cli.test_cli import one_error_line, vmgen
from tests.unit.cli.test_status_words import state
from tests.unit.vmside.idlewatch.test_policy import CONFIG, HOUR, Situation, live
from vmgen.contract import codec
from vmgen.contract.names import VmPaths
from vmgen.contract.verdict_words import lifetime_words
from vmgen.laptop.cli.watchdog import format_status
from vmgen.laptop.config import load_settings
from vmgen.vmside.web.server import WebSettings, answer_get, said

REPO = "https://github.com/me/app"
TIMER = "/etc/systemd/system/vmgen-lifetime.timer"


def timer_of(user_data: str) -> str | None:
    files = {f["path"]: f["content"] for f in yaml.safe_load(user_data).get("write_files", [])}
    return files.get(TIMER)


def test_the_default_lifetime_is_finite_and_rendered_as_the_timer(tmp_path: Path, home: Path) -> None:
    settings = load_settings(environ={}, config_file=tmp_path / "none.toml", dotenv_file=tmp_path / "none.env")
    assert 0 < settings.max_lifetime_hours < float("inf")
    result = vmgen(home, "render", REPO)
    assert result.returncode == 0, result.stderr
    timer = timer_of(result.stdout)
    assert timer is not None and f"OnBootSec={round(settings.max_lifetime_hours * 3600)}s" in timer


def test_a_launch_sets_its_own_lifetime_or_turns_it_off(home: Path) -> None:
    two_hours = vmgen(home, "render", REPO, "--max-lifetime", "2")
    assert "OnBootSec=7200s" in (timer_of(two_hours.stdout) or "")
    assert timer_of(vmgen(home, "render", REPO, "--max-lifetime", "0").stdout) is None


@pytest.mark.parametrize("hours", ["-1", "nan", "100000"])
def test_a_lifetime_out_of_range_is_one_line(home: Path, hours: str) -> None:
    result = vmgen(home, "render", REPO, "--max-lifetime", hours)
    assert result.returncode == 2 and "max_lifetime_hours" in one_error_line(result)


def test_the_watchdogs_state_carries_the_lifetime_and_status_and_the_page_say_it() -> None:
    _verdict, written = live(Situation(), until=10, config=replace(CONFIG, max_lifetime=4 * HOUR))
    assert written.verdict.lifetime_hours == 4
    assert written.verdict.lifetime_left_seconds == pytest.approx(4 * HOUR - 10 * 60, abs=1)
    # 3 h 50 min left, said on the reader's clock: from 2026-12-07 12:00 UTC, 15:50.
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
    words = (
        "deletes itself at 2026-12-07 15:50 UTC, in 3 h 50 min (max_lifetime_hours 4, from boot; nothing extends it)"
    )
    assert lifetime_words(written, now=now) == words
    table = format_status("app", written, now=now)
    rows = {str(row): str(cell) for row, cell in zip(table.columns[0]._cells, table.columns[1]._cells, strict=True)}
    assert rows["hard lifetime"] == words
    page = said({**written.__dict__, "verdict": written.verdict.__dict__, "agent": written.agent.__dict__}, now)
    assert page is not None and page["lifetime"] == words
    # Read a minute later, the same end; past it, "now".
    assert lifetime_words(written, elapsed=60, now=now + 60) == words.replace("3 h 50 min", "3 h 49 min")
    assert lifetime_words(written, elapsed=4 * HOUR, now=now).startswith("deletes itself now (")


def test_the_page_says_when_the_hard_lifetime_ends_on_the_vms_clock(tmp_path: Path) -> None:
    """Through the page's state route: the VM's wall clock (the state's `now`) + the time left."""
    _verdict, written = live(Situation(), until=10, config=replace(CONFIG, max_lifetime=72 * HOUR))
    paths = VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path)
    document = codec.to_value(written)
    paths.watchdog_state.parent.mkdir(parents=True, exist_ok=True)
    paths.watchdog_state.write_text(json.dumps(document))
    reply = answer_get(WebSettings(vm=paths, ops=lambda request: {}), "/api/state", b"")
    state = json.loads(reply.body)
    left = written.verdict.lifetime_left_seconds - written.age_seconds
    end = datetime.fromtimestamp(state["now"] + left, UTC)
    assert state["said"]["lifetime"] == (
        f"deletes itself at {end:%Y-%m-%d %H:%M} UTC, in 71 h 50 min "
        "(max_lifetime_hours 72, from boot; nothing extends it)"
    )


def test_no_lifetime_is_said_as_no_bound_and_an_older_vm_says_nothing() -> None:
    _verdict, off = live(Situation(), until=1, config=replace(CONFIG, max_lifetime=None))
    assert lifetime_words(off).startswith("none (max_lifetime_hours = 0)")
    older = state("poweroff", "none", 60)  # a VM from before the lifetime was recorded
    assert lifetime_words(older) == ""
    table = format_status("app", older)
    assert "hard lifetime" not in [str(row) for row in table.columns[0]._cells]
