"""The VM's side of backups, against a real local store and root's real control socket: what is
archived and what is not, the result the CLI reads, and restores that keep the new VM's SSH keys,
run once, and refuse the wrong identity without touching the home."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from vmgen.backup import generate_identity, list_backups
from vmgen.backup.store import LocalStore
from vmgen.contract import codec
from vmgen.contract.control import ControlRequest
from vmgen.contract.documents import BackupConfig, BackupResult, BackupTarget, RestoreRequest, WorkspaceInfo
from vmgen.contract.enums import StoreKind
from vmgen.contract.names import VmPaths
from vmgen.vmside import control
from vmgen.vmside.backups import run_backup, run_restore
from vmgen.vmside.privileges import RunAs

ME = RunAs.current()


def vm(root: Path, store: Path, recipient: str) -> VmPaths:
    paths = VmPaths(home=root / "home", etc=root / "etc", state=root / "lib", run=root / "run")
    paths.etc.mkdir(parents=True)
    target = BackupTarget(kind=StoreKind.LOCAL, path=str(store), excludes=("node_modules",))
    paths.backup_config.write_text(BackupConfig(target, "app", recipient).to_toml())
    paths.restore_request.write_text(codec.dumps(RestoreRequest("app")))
    return paths


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_identity()


@pytest.fixture
def backed_up(tmp_path, keys):
    """A VM home with work, a conversation, vmgen's runtime files and a cache, backed up once."""
    paths = vm(tmp_path / "old", tmp_path / "store", keys[1])
    home = paths.home
    write(home / "work/app/main.py", "print('hi')\n")
    write(home / ".claude/projects/-home-agent-work-app/s1.jsonl", '{"type": "user"}\n')
    write(home / ".ssh/authorized_keys", "ssh-ed25519 OLD old@laptop\n")
    write(home / ".vmgen/handover-done", "")
    write(home / ".vmgen/started-once", "")
    write(home / ".vmgen/leases.json", "[]")
    write(home / ".config/vmgen/agent.env", "ANTHROPIC_API_KEY=test-key-not-real\n")
    write(home / "work/app/node_modules/left-pad/index.js", "x" * 1000)
    os.mkfifo(home / "work/app/a-fifo")  # a backup skips it instead of waiting on it
    result = run_backup("laptop", paths, ME)
    return paths, result


def test_backup_records_its_result_for_the_cli(backed_up, tmp_path):
    paths, result = backed_up
    assert result.ok, result
    recorded = codec.loads(BackupResult, paths.backup_result.read_bytes())
    assert recorded.trigger == "laptop" and recorded.backup_id == result.backup_id
    (only,) = list_backups(LocalStore(tmp_path / "store"), "app")
    assert only.backup_id == result.backup_id
    # The user's excludes are reported; vmgen's own runtime files are dropped silently.
    assert [stat.pattern for stat in result.excluded] == ["node_modules"]
    assert result.skipped == 1 and result.skipped_paths == ("work/app/a-fifo: special file",)  # said, with why


def test_a_backup_records_the_repository_folder_for_its_restore(tmp_path, keys):
    """A workspace restored under another name (app2) works in the original's folder, as its
    workspace.json says: its backups name that folder, for their restore to start the agent in."""
    paths = vm(tmp_path / "vm", tmp_path / "store", keys[1])
    write(paths.home / "work/app/main.py", "print('hi')\n")
    info = WorkspaceInfo("app2", "claude", str(paths.work / "app"), "backup of app", 30, False, "0.1.0")
    paths.workspace_info.write_text(codec.dumps(info))
    assert run_backup("laptop", paths, ME).ok
    (made,) = list_backups(LocalStore(tmp_path / "store"), "app")
    assert made.repo_folder == "app"


def test_restore_brings_work_back_without_runtime_files_and_keeps_the_new_keys(backed_up, tmp_path, keys):
    paths = vm(tmp_path / "new", tmp_path / "store", keys[1])
    write(paths.authorized_keys, "ssh-ed25519 NEW new@laptop\n")
    paths.authorized_keys.chmod(0o600)
    result = run_restore(keys[0], paths, ME)
    assert result.ok, result
    home = paths.home
    assert (home / "work/app/main.py").read_text() == "print('hi')\n"
    assert (home / ".claude/projects/-home-agent-work-app/s1.jsonl").exists()
    assert (home / ".vmgen/started-once").exists()  # other agents resume from this mark
    for runtime in (".vmgen/handover-done", ".vmgen/leases.json", ".config/vmgen/agent.env"):
        assert not (home / runtime).exists(), runtime
    assert not (home / "work/app/node_modules").exists()
    assert paths.authorized_keys.read_text() == "ssh-ed25519 NEW new@laptop\n"
    assert oct(paths.authorized_keys.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in home.iterdir() if p.name.startswith(".vmgen-restore")]
    assert json.loads(paths.restore_result.read_text())["backup_id"] == result.backup_id
    again = run_restore(keys[0], paths, ME)
    assert not again.ok and "restored already" in again.error


def test_backups_after_the_first_are_increments_and_a_restore_continues_the_chain(backed_up, tmp_path, keys):
    old, first = backed_up
    write(old.home / "work/app/main.py", "print('changed')\n")
    second = run_backup("idlewatch", old, ME)
    assert second.ok and second.parent == first.backup_id and second.files == 1 and second.unchanged >= 3
    assert oct(old.backup_index.stat().st_mode & 0o777) == "0o700"  # root's: the agent reads none of it

    new = vm(tmp_path / "new", tmp_path / "store", keys[1])
    assert run_restore(keys[0], new, ME).ok
    write(new.home / "work/app/next.py", "print('on the new VM')\n")
    third = run_backup("idlewatch", new, ME)
    assert third.ok and third.parent == second.backup_id, third
    # What the restore wrote is not archived again: the new file, and the top level (moved in).
    assert third.files <= 3 and third.plaintext_bytes < 64 * 1024, third


def test_restore_with_the_wrong_identity_fails_cleanly(backed_up, tmp_path, keys):
    paths = vm(tmp_path / "new", tmp_path / "store", keys[1])
    write(paths.home / "keep.txt", "untouched\n")
    result = run_restore(generate_identity()[0], paths, ME)
    assert not result.ok and "not to this identity" in result.error
    assert sorted(p.name for p in paths.home.iterdir()) == ["keep.txt"]


def test_without_a_store_the_backup_says_so(tmp_path, keys):
    paths = vm(tmp_path / "vm", tmp_path / "store", keys[1])
    paths.backup_config.unlink()
    paths.home.mkdir()
    result = run_backup("laptop", paths, ME)
    assert not result.ok and result.error == "this workspace has no backup store configured"
    assert json.loads(paths.backup_result.read_text())["ok"] is False


def serve_once(paths: VmPaths, agent: RunAs, allowed: frozenset[int] | None = None) -> threading.Thread:
    """Root's side of the control socket, as systemd runs it: one accepted connection."""
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.control_socket.unlink(missing_ok=True)  # as systemd does before it binds
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(paths.control_socket))
    listener.listen()

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            control.serve(conn, paths, agent, allowed)
        listener.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def test_a_backup_requested_over_the_control_socket_streams_progress_then_the_result(tmp_path, keys):
    paths = vm(tmp_path / "vm", tmp_path / "store", keys[1])
    write(paths.home / "work/app/x.txt", "x\n")
    server = serve_once(paths, ME)
    replies = list(control.ask(ControlRequest("backup", trigger="laptop"), paths, timeout=60))
    server.join(60)
    assert [r.progress for r in replies[:-1]] == ["archiving, compressing, encrypting, uploading, verifying"]
    assert replies[-1].result is not None and replies[-1].result["ok"] is True


def test_the_control_socket_refuses_other_users_and_bad_requests(tmp_path, keys):
    paths = vm(tmp_path / "vm", tmp_path / "store", keys[1])
    server = serve_once(paths, ME, allowed=frozenset({ME.uid + 1}))  # the kernel says: not them
    (reply,) = control.ask(ControlRequest("backup"), paths, timeout=30)
    server.join(30)
    assert "only the agent user and root" in reply.refused
    server = serve_once(paths, ME)
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(paths.control_socket))
        raw.sendall(b'{"op": "shell", "trigger": "laptop"}\n')
        answer = raw.recv(4096)
    server.join(30)
    assert b"unknown operation" in answer
    assert not paths.backup_result.exists()


def test_root_ending_without_an_answer_is_said_where_the_laptop_shows_it(monkeypatch):
    """Root's service died before answering (say, an import failed): the agent-side command
    says so on stderr, the line `vmgen backup` on the laptop prints, instead of nothing."""
    from click.testing import CliRunner

    from vmgen.vmside.cli import vmside

    monkeypatch.setattr(control, "ask", lambda request, *a, **k: iter(()))
    result = CliRunner().invoke(vmside, ["backup", "--trigger", "laptop"])
    assert result.exit_code == 1
    assert "root's control service ended without an answer to 'backup'" in result.stderr
    assert "journalctl -u vmgen-control" in result.stderr
