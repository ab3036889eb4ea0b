"""The VM's side of backups, against a real local store: what is archived and what is not, the
result the CLI reads, and restores that keep the new VM's SSH keys and refuse the wrong identity
without touching the home."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from vmgen.backup import generate_identity, list_backups
from vmgen.backup.store import LocalStore
from vmgen.backup.target import BackupTarget, vm_config_text
from vmgen.vmside.backups import VmPaths, run_backup, run_backup_request, run_restore


def vm(root: Path, store: Path, recipient: str) -> VmPaths:
    paths = VmPaths(home=root / "home", user=getpass.getuser(), config=root / "etc/backup.toml",
                    backup_result=root / "lib/backup-result.json", restore_identity=root / "run/identity",
                    restore_request=root / "etc/restore.json", restore_result=root / "lib/restore-result.json")
    paths.config.parent.mkdir(parents=True)
    target = BackupTarget(kind="local", path=str(store), excludes=("node_modules",))
    paths.config.write_text(vm_config_text(target, "app", recipient))
    paths.restore_request.write_text(json.dumps({"workspace": "app", "backup_id": ""}))
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
    write(paths.backup_request, "req-42")
    result = run_backup_request(paths)
    return paths, result


def test_backup_records_its_result_for_the_cli(backed_up, tmp_path):
    paths, result = backed_up
    assert result["ok"], result
    assert json.loads(paths.backup_result.read_text())["request_id"] == "req-42"
    assert not paths.backup_request.exists()  # consumed: the next request triggers again
    (only,) = list_backups(LocalStore(tmp_path / "store"), "app")
    assert only.backup_id == result["backup_id"]
    # The user's excludes are reported; vmgen's own runtime files are dropped silently.
    assert [stat["pattern"] for stat in result["excluded"]] == ["node_modules"]


def test_restore_brings_work_back_without_runtime_files_and_keeps_the_new_keys(backed_up, tmp_path, keys):
    paths = vm(tmp_path / "new", tmp_path / "store", keys[1])
    write(paths.authorized_keys, "ssh-ed25519 NEW new@laptop\n")
    write(paths.restore_identity, keys[0])
    result = run_restore(paths)
    assert result["ok"], result
    home = paths.home
    assert (home / "work/app/main.py").read_text() == "print('hi')\n"
    assert (home / ".claude/projects/-home-agent-work-app/s1.jsonl").exists()
    assert (home / ".vmgen/started-once").exists()  # other agents resume from this mark
    for runtime in (".vmgen/handover-done", ".vmgen/leases.json", ".config/vmgen/agent.env"):
        assert not (home / runtime).exists(), runtime
    assert not (home / "work/app/node_modules").exists()
    assert paths.authorized_keys.read_text() == "ssh-ed25519 NEW new@laptop\n"
    assert oct(paths.authorized_keys.stat().st_mode & 0o777) == "0o600"
    assert not paths.restore_identity.exists()
    assert json.loads(paths.restore_result.read_text())["backup_id"] == result["backup_id"]


def test_restore_with_the_wrong_identity_fails_cleanly(backed_up, tmp_path, keys):
    paths = vm(tmp_path / "new", tmp_path / "store", keys[1])
    write(paths.home / "keep.txt", "untouched\n")
    write(paths.restore_identity, generate_identity()[0])
    result = run_restore(paths)
    assert not result["ok"] and "not to this identity" in result["error"]
    assert sorted(p.name for p in paths.home.iterdir()) == ["keep.txt"]
    assert not paths.restore_identity.exists()  # removed even when the restore fails


def test_without_a_store_the_backup_says_so(tmp_path, keys):
    paths = vm(tmp_path / "vm", tmp_path / "store", keys[1])
    paths.config.unlink()
    paths.home.mkdir()
    result = run_backup("r1", paths)
    assert not result["ok"] and result["error"] == "this workspace has no backup store configured"
    assert json.loads(paths.backup_result.read_text())["ok"] is False
