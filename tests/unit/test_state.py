"""The laptop's half of a workspace: written owner-only, read back, removed whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vmgen.errors import NameBusy
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState, all_records, busy_with, name_lock

RECORD = WorkspaceRecord(
    name="app", provider="docker", created_at=1_700_000_000.0, source="/src/app", agent="claude", host=""
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_state_is_owner_only_and_reads_back(tmp_path: Path) -> None:
    state = WorkspaceState("app", tmp_path)
    old = os.umask(0)  # even a careless umask must not widen what holds host keys and logins
    try:
        state.create(RECORD, "ssh-ed25519 AAAAhostkey")
        secret = state.write("web-login", "vmgen\npassword\n")
    finally:
        os.umask(old)
    assert state.exists() and state.record() == RECORD
    assert mode(state.dir) == 0o700 and mode(secret) == 0o600 and mode(state.known_hosts) == 0o600
    assert state.known_hosts.read_text() == "vmgen-app ssh-ed25519 AAAAhostkey\n"


def test_broken_records_are_skipped_and_remove_takes_everything(tmp_path: Path) -> None:
    WorkspaceState("app", tmp_path).create(RECORD, "ssh-ed25519 A")
    broken = WorkspaceState("broken", tmp_path)
    broken.write("workspace.json", "{not json")
    assert [r.name for r in all_records(tmp_path)] == ["app"]
    WorkspaceState("app", tmp_path).remove()
    assert not (tmp_path / "workspaces" / "app").exists() and all_records(tmp_path) == []


def test_a_name_is_held_by_one_vmgen_until_it_ends_however_it_ends(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    program = (
        "import time; from pathlib import Path; from vmgen.laptop.state import name_lock\n"
        f"with name_lock('app', 'launching', Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert busy_with("app", tmp_path) == "launching" and busy_with("other", tmp_path) == ""
        with pytest.raises(NameBusy, match=f"pid {holder.pid}, launching"), name_lock("app", "destroying", tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel lets go of the lock
        holder.wait()
    assert busy_with("app", tmp_path) == ""
    with name_lock("app", "destroying", tmp_path):
        assert busy_with("app", tmp_path) == "destroying"
