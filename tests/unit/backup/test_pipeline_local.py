"""Backups through the local-directory store: a full round trip of a realistic home (random
binaries, modes, links, odd names, excludes), retention, listing, and every way a restore must
refuse (missing manifest, flipped byte, truncated object, wrong identity) leaving the target
untouched. The tree helpers here are shared with the S3 tests."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

from vmgen.backup import (
    LocalStore,
    apply_retention,
    create_backup,
    generate_identity,
    latest_backup,
    list_backups,
    manifest as model,
    parse_identity,
    restore_backup,
)
from vmgen.errors import (
    ArchiveError,
    DigestMismatch,
    ManifestInvalid,
    ManifestNotFound,
    ObjectTruncated,
    RestoreTargetNotEmpty,
    WrongIdentity,
)

EXCLUDED = {"work/app/node_modules", ".cache", "work/app/build", "work/fifo"}
EXCLUDES = ["node_modules", ".cache", "build"]


def build_tree(root: Path, random_mb: int = 3) -> None:
    """A small home: sources, `random_mb` MiB of incompressible data, links, modes, names."""
    rng = random.Random(7)
    src = root / "work" / "app" / "src"
    src.mkdir(parents=True)
    for i in range(30):
        (src / f"mod{i}.py").write_text("\n".join(f"def f{j}(): return {rng.random()}" for j in range(50)))
    assets = root / "work" / "app" / "assets"
    assets.mkdir()
    for i in range(3):
        (assets / f"blob{i}.bin").write_bytes(os.urandom(random_mb * 1024 * 1024 // 3 + i))
    (root / "work" / "app" / "empty.txt").write_bytes(b"")
    (root / "work" / "app" / "empty-dir").mkdir()
    run = root / "work" / "app" / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    ssh = root / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "id_ed25519").write_text("not a real key\n")
    (ssh / "id_ed25519").chmod(0o600)
    (root / "naïve-ünïcode ✓.txt").write_text("utf-8 name\n")
    deep = root / "work" / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("long-name-" * 12 + ".txt")).write_text("a path longer than 100 bytes\n")
    transcript = root / ".claude" / "projects" / "-home-agent-work-app"
    transcript.mkdir(parents=True)
    (transcript / "session.jsonl").write_text('{"role": "user", "content": "hello"}\n')
    os.symlink("../assets/blob0.bin", src / "blob-link")
    os.symlink("/etc/hostname", root / "abs-link")
    os.link(assets / "blob1.bin", assets / "blob1-hard.bin")
    for excluded in ("work/app/node_modules/pkg", ".cache/pip", "work/app/build"):
        (root / excluded).mkdir(parents=True)
    (root / "work/app/node_modules/pkg/index.js").write_text("module.exports = 1\n" * 100)
    (root / "work/app/node_modules/pkg/package.json").write_text("{}\n")
    (root / ".cache/pip/wheel.whl").write_bytes(b"w" * 50_000)
    (root / "work/app/build/out.o").write_bytes(b"o" * 1000)
    os.mkfifo(root / "work" / "fifo")


def snapshot(root: Path, skip: AbstractSet[str] = frozenset()) -> dict[str, tuple]:
    """Everything a restore must reproduce: type, permission bits, content hash, mtime, links."""
    seen: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                seen[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    st.st_size,
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                    int(st.st_mtime),
                )
            else:
                seen[rel] = ("special",)
    return seen


def assert_same_tree(source: Path, restored: Path) -> None:
    assert snapshot(restored) == snapshot(source, skip=EXCLUDED)
    blob1 = restored / "work/app/assets/blob1.bin"
    assert blob1.stat().st_ino == (restored / "work/app/assets/blob1-hard.bin").stat().st_ino


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("home") / "agent"
    build_tree(root)
    return root


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_identity()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_round_trip_reproduces_the_tree_and_summarises_excludes(tree, keys, store, tmp_path):
    text, recipient = keys
    made = create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    excluded = {e.pattern: e for e in made.summary.excluded}
    assert set(excluded) == {"node_modules", ".cache", "build"}
    assert (excluded["node_modules"].entries, excluded["node_modules"].files) == (1, 2)
    assert excluded[".cache"].bytes == 50_000
    assert made.summary.skipped == ("work/fifo: special file",)
    assert made.summary.hardlinks == 1 and made.summary.symlinks == 2
    assert made.plaintext_bytes > made.summary.file_bytes > 3 * 1024 * 1024
    stored = store.root / "ws" / "app"
    assert sorted(p.name for p in stored.iterdir()) == [f"{made.backup_id}.json", f"{made.backup_id}.tar.zst.age"]
    assert (stored / f"{made.backup_id}.tar.zst.age").stat().st_size == made.ciphertext_bytes
    on_disk = json.loads((stored / f"{made.backup_id}.json").read_text())
    assert on_disk["sha256"] == hashlib.sha256((stored / f"{made.backup_id}.tar.zst.age").read_bytes()).hexdigest()
    assert on_disk["format_version"] == 1 and on_disk["recipient"] == recipient

    target = tmp_path / "restored" / "agent"
    restored = restore_backup(store, "app", None, parse_identity(text), target)
    assert restored == made
    assert_same_tree(tree, target)
    assert sorted(os.listdir(target.parent)) == ["agent"]  # no staging left behind


def test_merge_restore_replaces_backed_up_entries_and_keeps_others(tree, keys, store, tmp_path):
    text, recipient = keys
    create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    target = tmp_path / "agent"
    (target / ".ssh").mkdir(parents=True)
    (target / ".ssh" / "authorized_keys").write_text("from cloud-init\n")
    (target / ".profile").write_text("skeleton\n")
    with pytest.raises(RestoreTargetNotEmpty):
        restore_backup(store, "app", None, parse_identity(text), target)
    restore_backup(store, "app", None, parse_identity(text), target, merge=True)
    assert (target / ".profile").read_text() == "skeleton\n"
    assert not (target / ".ssh" / "authorized_keys").exists()  # .ssh came from the backup
    assert (target / ".ssh" / "id_ed25519").read_text() == "not a real key\n"
    assert not [p for p in tmp_path.iterdir() if ".vmgen-restore" in p.name]
    assert not [p for p in target.iterdir() if ".vmgen-restore" in p.name]


def test_listing_latest_and_retention(tree, keys, store):
    _text, recipient = keys
    ids = [
        create_backup(
            tree, store, "app", recipient, excludes=EXCLUDES, backup_id=f"2026010{i}T000000Z-000{i}"
        ).backup_id
        for i in range(1, 4)
    ]
    create_backup(tree, store, "other", recipient, excludes=EXCLUDES, backup_id="20260101T000000Z-aaaa")
    # A run that died after its upload, before its manifest: not a backup, never "latest".
    store.put_bytes(model.object_key("app", "20260109T000000Z-dead"), b"partial")
    assert [m.backup_id for m in list_backups(store, "app")] == ids
    assert [m.workspace for m in list_backups(store)] == ["app"] * 3 + ["other"]
    assert latest_backup(store, "app").backup_id == ids[-1]

    newest = create_backup(
        tree, store, "app", recipient, excludes=EXCLUDES, keep_last=2, backup_id="20260105T000000Z-0005"
    )
    assert [m.backup_id for m in list_backups(store, "app")] == [ids[-1], newest.backup_id]
    keys_left = store.list_keys("ws/app/")
    assert not any(ids[0] in k or ids[1] in k for k in keys_left)
    assert model.object_key("app", "20260109T000000Z-dead") in keys_left  # newer than kept: left
    assert apply_retention(store, "app", 1) == [ids[-1]]
    assert [m.workspace for m in list_backups(store)] == ["app", "other"]


@pytest.fixture
def one_backup(tree, keys, store):
    text, recipient = keys
    made = create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    return made, parse_identity(text), store.root / made.object_key


def _untouched(target: Path) -> None:
    assert sorted(p.name for p in target.iterdir()) == ["sentinel"]
    assert not [p for p in target.parent.iterdir() if ".vmgen-restore" in p.name]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    target = tmp_path / "agent"
    target.mkdir()
    (target / "sentinel").write_text("before\n")
    return target


def test_restore_refuses_a_flipped_byte_and_leaves_the_target_untouched(one_backup, store, target):
    made, identity, obj = one_backup
    for offset in (40, made.ciphertext_bytes // 2):  # in the age header, then in the payload
        data = bytearray(obj.read_bytes())
        data[offset] ^= 0x01
        obj.write_bytes(bytes(data))
        with pytest.raises(DigestMismatch, match="damaged"):
            restore_backup(store, "app", None, identity, target, merge=True)
        _untouched(target)
        data[offset] ^= 0x01
        obj.write_bytes(bytes(data))


def test_restore_refuses_a_truncated_object(one_backup, store, target):
    made, identity, obj = one_backup
    with open(obj, "r+b") as f:
        f.truncate(made.ciphertext_bytes - 1000)
    with pytest.raises(ObjectTruncated, match="truncated"):
        restore_backup(store, "app", None, identity, target, merge=True)
    _untouched(target)


def test_restore_refuses_the_wrong_identity(one_backup, store, target):
    made, _identity, _obj = one_backup
    other = parse_identity(generate_identity()[0])
    with pytest.raises(WrongIdentity, match="encrypted to"):
        restore_backup(store, "app", None, other, target, merge=True)
    # Even if the manifest is edited to name that identity, age itself refuses.
    forged = json.loads(store.get_bytes(made.manifest_key))
    forged["recipient"] = other.recipient
    store.put_bytes(made.manifest_key, json.dumps(forged).encode())
    with pytest.raises(WrongIdentity, match="cannot decrypt"):
        restore_backup(store, "app", None, other, target, merge=True)
    _untouched(target)


def test_restore_refuses_a_missing_manifest(one_backup, store, target):
    made, identity, _obj = one_backup
    store.delete(made.manifest_key)
    with pytest.raises(ManifestNotFound, match="no completed backup"):
        restore_backup(store, "app", None, identity, target, merge=True)
    with pytest.raises(ManifestNotFound, match="never completed"):
        restore_backup(store, "app", made.backup_id, identity, target, merge=True)
    _untouched(target)


def test_a_manifest_names_a_repository_folder_only_and_fields_of_a_later_vmgen_are_left_alone(one_backup, store):
    made, _identity, _obj = one_backup
    raw = json.loads(store.get_bytes(made.manifest_key))
    later = dict(raw, added_later="x", summary=dict(raw["summary"], counted_later=3))
    assert model.Manifest.from_json(json.dumps(later).encode(), "later") == made
    for folder in ("../etc", "a/b", ".hidden", ""):
        forged = json.dumps(dict(raw, repo_folder=folder)).encode()
        if folder:
            with pytest.raises(ManifestInvalid, match="repository folder"):
                model.Manifest.from_json(forged, "forged")
        else:
            assert model.Manifest.from_json(forged, "forged").repo_folder == ""


def test_a_hostile_archive_in_an_intact_backup_is_refused_by_the_untar_stage(one_backup, keys, store, target):
    """The object is intact and opens with the key, but its tar escapes the target: the error
    is the untar stage's (not its echo, the decrypt stage's broken pipe), nothing moves in."""
    import io
    import tarfile

    import zstandard

    from vmgen.backup import agestream

    made, identity, obj = one_backup
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("../evil", b"evil"), ("big.bin", os.urandom(16 << 20))):  # more than the pipes hold
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sealed = bytearray()
    compressed = zstandard.ZstdCompressor().compress(plain.getvalue())
    digest, size = agestream.encrypt(io.BytesIO(compressed).readinto, sealed.extend, keys[1])
    obj.write_bytes(bytes(sealed))
    forged = json.loads(store.get_bytes(made.manifest_key))
    forged.update(sha256=digest, ciphertext_bytes=size)
    store.put_bytes(made.manifest_key, json.dumps(forged).encode())
    with pytest.raises(ArchiveError, match="unsafe archive member"):
        restore_backup(store, "app", None, identity, target, merge=True)
    _untouched(target)
    assert not (target.parent / "evil").exists()
