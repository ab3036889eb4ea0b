"""Incremental backups: a chain of a full backup and increments restores every state it was
made of, GNU tar restores the same chain by hand, the kept index only ever describes a backup
that counts, retention keeps whole chains, and a broken chain is refused with the target
untouched. Hostile increments: test_increment_attacks.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vmgen.backup import (
    LocalStore,
    apply_retention,
    create_backup,
    generate_identity,
    index as file_index,
    list_backups,
    parse_identity,
    restore_backup,
)
from vmgen.backup.indexkeeper import IndexKeeper
from vmgen.errors import ArchiveError, DigestMismatch, ManifestNotFound

from .test_pipeline_local import EXCLUDED, EXCLUDES, build_tree, snapshot


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_identity()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    build_tree(root, random_mb=1)
    return root


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def keeper(tmp_path: Path) -> IndexKeeper:
    return IndexKeeper(tmp_path / "root-only" / "index")


def backup(home, store, keeper, recipient, **kw):
    return create_backup(home, store, "app", recipient, excludes=EXCLUDES, keeper=keeper, max_increments=3, **kw)


def restored(store, text, tmp_path, backup_id=None, name="out") -> Path:
    target = tmp_path / name
    restore_backup(store, "app", backup_id, parse_identity(text), target)
    return target


def change(home: Path) -> None:
    """What a day of work does: edit, add, delete, rename, turn a file into a folder and back."""
    (home / "work/app/src/mod1.py").write_text("edited\n")
    (home / "work/app/src/new.py").write_text("new\n")
    (home / "work/app/src/mod2.py").unlink()
    shutil.rmtree(home / "work/app/empty-dir")
    os.rename(home / "work/app/src/mod3.py", home / "work/app/src/renamed.py")
    (home / "work/app/run.sh").unlink()
    (home / "work/app/run.sh").mkdir()
    (home / "work/app/run.sh/inside").write_text("now a folder\n")
    (home / "work/app/src/blob-link").unlink()
    (home / "work/app/src/blob-link").mkdir()
    (home / ".ssh/id_ed25519").chmod(0o400)


def test_a_chain_restores_each_state_it_was_made_of(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    full = backup(home, store, keeper, recipient)
    first_state = snapshot(home, skip=EXCLUDED)
    change(home)
    second = backup(home, store, keeper, recipient)
    second_state = snapshot(home, skip=EXCLUDED)
    unchanged = backup(home, store, keeper, recipient)

    assert (full.parent, full.depth, full.format_version) == ("", 0, 1)
    assert (second.parent, second.depth, second.format_version) == (full.backup_id, 1, 2)
    assert (unchanged.parent, unchanged.depth) == (second.backup_id, 2)
    # Only what changed travels: the unchanged tree's increment is its directory listings.
    # Edited, new, renamed, the file in the folder that was a file, and the chmod'ed one.
    assert second.summary.files == 5 and second.summary.unchanged > 30
    assert unchanged.summary.files == 0 and unchanged.ciphertext_bytes < 8 * 1024
    assert second.ciphertext_bytes < full.ciphertext_bytes / 20

    assert snapshot(restored(store, text, tmp_path)) == second_state
    assert snapshot(restored(store, text, tmp_path, full.backup_id, "old")) == first_state
    assert snapshot(restored(store, text, tmp_path, second.backup_id, "mid")) == second_state


def test_gnu_tar_restores_a_chain_by_hand(home, store, keeper, keys, tmp_path):
    """The README's way without vmgen: `age -d | zstd -d | tar -x --incremental`, in order."""
    text, recipient = keys
    backup(home, store, keeper, recipient)
    change(home)
    backup(home, store, keeper, recipient)
    identity = tmp_path / "identity.txt"
    identity.write_text(text)
    out = tmp_path / "by-hand"
    out.mkdir()
    for m in list_backups(store, "app"):  # oldest first: the full one, then its increments
        subprocess.run(
            f"age -d -i {identity} < {store.root / m.object_key} | zstd -d | tar -x --incremental -C {out}",
            shell=True,
            check=True,
        )
    assert snapshot(out) == snapshot(home, skip=EXCLUDED)


def test_a_new_chain_starts_after_max_increments_and_retention_keeps_whole_chains(home, store, keeper, keys):
    _text, recipient = keys
    made = []
    for i in range(6):
        (home / f"work/file{i}").write_text(str(i))
        made.append(backup(home, store, keeper, recipient, keep_last=2))
    assert [m.depth for m in made] == [0, 1, 2, 3, 0, 1]
    # The newest two are the second chain's; the first chain is gone whole.
    assert [m.backup_id for m in list_backups(store, "app")] == [made[4].backup_id, made[5].backup_id]
    (home / "work/last").write_text("x")
    newest = backup(home, store, keeper, recipient, keep_last=1)
    # keep_last=1 keeps the newest and everything it builds on.
    assert [m.backup_id for m in list_backups(store, "app")] == [made[4].backup_id, made[5].backup_id, newest.backup_id]
    assert apply_retention(store, "app", 1) == []


def test_a_failed_backup_leaves_the_index_of_the_last_good_one(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    full = backup(home, store, keeper, recipient)
    (home / "work/app/src/mod1.py").write_text("changed before a failed backup\n")

    class Broken(LocalStore):
        def put_bytes(self, key, data):  # the manifest never lands
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        backup(home, Broken(store.root), keeper, recipient)
    after = backup(home, store, keeper, recipient)
    assert after.parent == full.backup_id and after.summary.files >= 1
    assert (restored(store, text, tmp_path) / "work/app/src/mod1.py").read_text().startswith("changed")
    assert not list(keeper.folder.glob(".index-*")), "the failed backup's index was left behind"


def test_restore_keeps_the_index_so_the_next_backup_is_an_increment(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    full = backup(home, store, keeper, recipient)
    vm = tmp_path / "new-vm-home"
    vm.mkdir()
    (vm / ".ssh").mkdir()
    (vm / ".ssh/authorized_keys").write_text("the new VM's key\n")
    new_keeper = IndexKeeper(tmp_path / "new-vm-root" / "index")
    restore_backup(
        store, "app", None, parse_identity(text), vm, merge=True, keep=[".ssh/authorized_keys"], keeper=new_keeper
    )
    (vm / "work/app/src/mod5.py").write_text("work on the new VM\n")
    after = create_backup(vm, store, "app", recipient, excludes=EXCLUDES, keeper=new_keeper, max_increments=3)
    assert after.parent == full.backup_id
    # The edited file, the new VM's own key and the top level's files and links (moved into
    # place, so their ctime changed); not the restored tree again (its blobs are 1 MiB).
    top_level = {"naïve-ünïcode ✓.txt", "abs-link"}
    assert after.summary.files + after.summary.symlinks == 2 + len(top_level), after.summary
    assert after.summary.file_bytes < 1000
    again = restored(store, text, tmp_path)
    assert (again / "work/app/src/mod5.py").read_text() == "work on the new VM\n"
    assert (again / ".ssh/authorized_keys").read_text() == "the new VM's key\n"
    assert snapshot(again) == snapshot(vm)


def test_a_chain_with_a_missing_link_is_refused_and_nothing_moves_in(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    full = backup(home, store, keeper, recipient)
    change(home)
    backup(home, store, keeper, recipient)
    store.delete(full.manifest_key)
    target = tmp_path / "target"
    with pytest.raises(ManifestNotFound, match=f"increment on {full.backup_id}, which is missing"):
        restore_backup(store, "app", None, parse_identity(text), target)
    assert not target.exists()


def test_a_damaged_increment_is_refused_after_its_full_backup_was_staged(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    backup(home, store, keeper, recipient)
    change(home)
    inc = backup(home, store, keeper, recipient)
    obj = store.root / inc.object_key
    data = bytearray(obj.read_bytes())
    data[200] ^= 1
    obj.write_bytes(bytes(data))
    target = tmp_path / "target"
    target.mkdir()
    (target / "mine").write_text("untouched")
    with pytest.raises((DigestMismatch, ArchiveError)):
        restore_backup(store, "app", None, parse_identity(text), target, merge=True)
    assert sorted(p.name for p in target.iterdir()) == ["mine"], "a staged tree or a file moved in"


def test_a_download_failing_between_two_backups_of_the_chain_leaves_no_staged_tree(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    backup(home, store, keeper, recipient)
    change(home)
    inc = backup(home, store, keeper, recipient)

    class Flaky(LocalStore):
        def get_stream(self, key):
            if key == inc.object_key:
                raise OSError("connection reset")
            return super().get_stream(key)

    target = tmp_path / "target"
    target.mkdir()
    (target / "mine").write_text("untouched")
    with pytest.raises(OSError, match="connection reset"):
        restore_backup(Flaky(store.root), "app", None, parse_identity(text), target, merge=True)
    assert sorted(p.name for p in target.iterdir()) == ["mine"], "the full backup's staged tree was left"


# ----- the kept index is root's; what the walk makes of it is its own business -----


def test_a_damaged_index_costs_the_shortcut_not_the_backup(home, store, keeper, keys, tmp_path):
    text, recipient = keys
    backup(home, store, keeper, recipient)
    keeper.index.write_bytes(b"vmgen-index 1\n" + b"\xff" * 1000 + b"\0f1.2.3.4\twork/app/src/mod1.py\0")
    change(home)
    after = backup(home, store, keeper, recipient)
    assert after.summary.unchanged == 0  # nothing matched: everything was taken again
    assert snapshot(restored(store, text, tmp_path)) == snapshot(home, skip=EXCLUDED)


def test_an_index_too_large_for_root_is_dropped_and_the_next_backup_is_full(home, store, keeper, keys, monkeypatch):
    _text, recipient = keys
    monkeypatch.setattr(file_index, "MAX_BYTES", 100)  # root's cap (the stage is another process)
    made = backup(home, store, keeper, recipient)
    assert made.depth == 0 and not keeper.index.exists()
    assert backup(home, store, keeper, recipient).depth == 0


def test_root_stops_waiting_for_an_index_the_stage_never_finishes(tmp_path, monkeypatch):
    """The stage is the agent's process: one that keeps the index pipe open (a child holding it)
    costs root a bounded wait and the index, never the backup or the watchdog."""
    from vmgen.backup import indexkeeper

    monkeypatch.setattr(indexkeeper, "_DRAIN_SECONDS", 0.5)
    keeper = IndexKeeper(tmp_path / "kept")
    received = keeper.receive()
    held = os.dup(received.write_fd)  # what a child of the stage would still hold
    try:
        os.write(held, file_index.MAGIC)
        keeper.commit(received, indexkeeper.IndexState("app", "age1x", "20261203T000000Z-0000", 0))
    finally:
        os.close(held)
    assert not keeper.index.exists() and not list(keeper.folder.iterdir())
    assert oct(keeper.folder.stat().st_mode & 0o777) == "0o700"
