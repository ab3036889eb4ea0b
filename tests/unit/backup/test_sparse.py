"""A big sparse file stays sparse: backed up without reading its holes, restored with holes
(a 3 GiB file of 4 bytes must not fill a new VM's disk); its bytes come back the same."""

from __future__ import annotations

import os
from pathlib import Path

from vmgen.backup import generate_identity, parse_identity
from vmgen.backup.pipeline import create_backup, restore_backup
from vmgen.backup.store import LocalStore

SIZE = 3 << 30
DATA_AT = 1 << 30


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_a_sparse_file_is_restored_with_its_holes(tmp_path: Path) -> None:
    source = tmp_path / "home"
    (source / "work").mkdir(parents=True)
    sparse = source / "work" / "disk.img"
    with open(sparse, "wb") as f:
        f.truncate(SIZE)
        f.seek(DATA_AT)
        f.write(b"data")
    (source / "work" / "dense.bin").write_bytes(os.urandom(256 << 10))  # next to it, an ordinary file
    text, recipient = generate_identity()
    store = LocalStore(tmp_path / "store")
    made = create_backup(source, store, "app", recipient, excludes=())
    assert made.ciphertext_bytes < 4 << 20  # holes compress to nothing

    target = tmp_path / "restored"
    restore_backup(store, "app", None, parse_identity(text), target)
    restored = target / "work" / "disk.img"
    assert restored.stat().st_size == SIZE
    assert allocated(restored) < 1 << 20, f"{allocated(restored)} bytes allocated for 4 bytes of data"
    with open(restored, "rb") as f:
        f.seek(DATA_AT - 2)
        assert f.read(8) == b"\0\0data\0\0"
    assert (target / "work" / "dense.bin").read_bytes() == (source / "work" / "dense.bin").read_bytes()
