"""A big sparse file stays sparse: the tar stream holds it in GNU tar's sparse format (PAX 1.0:
the map of its data at the start of the member, the holes not stored), so a backup neither
reads nor archives its holes; vmgen's restore and GNU tar by hand (the README's recipe) both
make it sparse again, a chain of increments too; its bytes come back the same. The reader
checks the map: a hostile one is refused, and older sparse formats stay refused."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import cast

import pytest

from vmgen.backup import LocalStore, generate_identity, list_backups, parse_identity
from vmgen.backup.extract import extract_stream
from vmgen.backup.indexkeeper import IndexKeeper
from vmgen.backup.pipeline import create_backup, restore_backup
from vmgen.errors import ArchiveError

from .test_increment_attacks import member, pax_record, raw_pax

SIZE = 3 << 30
DATA_AT = 1 << 30
MIB = 1 << 20


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def du_kib(path: Path) -> int:
    """What `du` says the file takes on disk, in KiB."""
    return int(subprocess.run(["du", "-k", str(path)], check=True, capture_output=True, text=True).stdout.split()[0])


BLOCK = 64 << 10
ZEROS = bytes(BLOCK)


def digest(path: Path) -> str:
    """The SHA-256 of the file's size and of each BLOCK-aligned block that holds anything but
    zeros, with its offset: equal for two files exactly when their bytes are, however each one's
    holes lie. It reads only the blocks its data touches (SEEK_DATA/SEEK_HOLE; a hole reads as
    zeros), not all of a 512 MiB file of holes (reading and hashing those took 12 of 15 CPU-s)."""
    sha = hashlib.sha256()
    size = path.stat().st_size
    sha.update(size.to_bytes(8, "big"))
    with open(path, "rb") as f:
        fd, offset = f.fileno(), 0  # offset: the first block not yet looked at
        while offset < size:
            try:
                data = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # nothing but a hole to the end
                    break
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            block = max(offset, data - data % BLOCK)
            offset = min(size, -(-hole // BLOCK) * BLOCK)
            for at in range(block, offset, BLOCK):
                piece = os.pread(fd, BLOCK, at)
                if piece != ZEROS[: len(piece)]:
                    sha.update(at.to_bytes(8, "big") + piece)
    return sha.hexdigest()


def make_sparse(path: Path, size: int, pieces: dict[int, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)


def test_a_sparse_file_is_restored_with_its_holes(tmp_path: Path) -> None:
    source = tmp_path / "home"
    sparse = source / "work" / "disk.img"
    make_sparse(sparse, SIZE, {DATA_AT: b"data"})
    (source / "work" / "dense.bin").write_bytes(os.urandom(256 << 10))  # next to it, an ordinary file
    text, recipient = generate_identity()
    store = LocalStore(tmp_path / "store")
    made = create_backup(source, store, "app", recipient, excludes=())
    # Its holes are neither read nor archived: the tar stream holds the data and a map.
    assert made.plaintext_bytes < 1 * MIB, made.plaintext_bytes
    assert made.summary.file_bytes == SIZE + (256 << 10)  # what the files hold, holes included

    target = tmp_path / "restored"
    restore_backup(store, "app", None, parse_identity(text), target)
    restored = target / "work" / "disk.img"
    assert restored.stat().st_size == SIZE
    assert allocated(restored) < 1 * MIB, f"{allocated(restored)} bytes allocated for 4 bytes of data"
    with open(restored, "rb") as f:
        f.seek(DATA_AT - 2)
        assert f.read(8) == b"\0\0data\0\0"
    assert (target / "work" / "dense.bin").read_bytes() == (source / "work" / "dense.bin").read_bytes()


def test_gnu_tar_restores_sparse_files_by_hand_from_a_chain(tmp_path: Path) -> None:
    """The README's recipe, `age -d | zstd -d | tar -x --incremental`, oldest first: the files
    come back sparse (`du`), identical, also one that an increment changed."""
    home = tmp_path / "home"
    size = 512 * MIB
    make_sparse(home / "vm/disk.img", size, {0: os.urandom(5000), 200 * MIB: b"middle", size - 3: b"end"})
    make_sparse(home / "vm/ends-in-a-hole.img", size, {64 * MIB: os.urandom(70_000)})
    make_sparse(home / "logs/preallocated.log", 8 * MIB, {})  # nothing but a hole
    (home / "work/notes.txt").parent.mkdir(parents=True)
    (home / "work/notes.txt").write_text("dense\n")
    text, recipient = generate_identity()
    store, keeper = LocalStore(tmp_path / "store"), IndexKeeper(tmp_path / "keeper")
    create_backup(home, store, "app", recipient, excludes=(), keeper=keeper, max_increments=3)
    with open(home / "vm/disk.img", "r+b") as f:  # the increment takes it again, still sparse
        f.seek(300 * MIB)
        f.write(b"written later")
    second = create_backup(home, store, "app", recipient, excludes=(), keeper=keeper, max_increments=3)
    assert second.parent and second.plaintext_bytes < 1 * MIB, second

    identity = tmp_path / "identity.txt"
    identity.write_text(text)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    for m in list_backups(store, "app"):
        recipe = f"age -d -i {identity} < {store.root / m.object_key} | zstd -d | tar -x --incremental -C {by_hand}"
        subprocess.run(recipe, shell=True, check=True)
    ours = tmp_path / "ours"
    restore_backup(store, "app", None, parse_identity(text), ours)
    for restored in (by_hand, ours):
        for rel in ("vm/disk.img", "vm/ends-in-a-hole.img", "logs/preallocated.log"):
            assert (restored / rel).stat().st_size == (home / rel).stat().st_size, rel
            assert du_kib(restored / rel) < 1024, f"{restored / rel}: {du_kib(restored / rel)} KiB on disk"
            assert digest(restored / rel) == digest(home / rel), rel
        assert (restored / "work/notes.txt").read_text() == "dense\n"


def test_the_member_is_gnu_tars_pax_1_0_sparse_format(tmp_path: Path) -> None:
    """What GNU tar and Python's tarfile both read as a sparse file under its real name."""
    home = tmp_path / "home"
    make_sparse(home / "a folder/disk.img", 16 * MIB, {4 * MIB: b"x" * 4096})
    text, recipient = generate_identity()
    store = LocalStore(tmp_path / "store")
    made = create_backup(home, store, "app", recipient, excludes=())
    identity = tmp_path / "identity.txt"
    identity.write_text(text)
    raw = subprocess.run(
        f"age -d -i {identity} < {store.root / made.object_key} | zstd -d", shell=True, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        (info,) = [m for m in tar.getmembers() if m.isreg()]
    assert info.name == "a folder/disk.img" and info.size == 16 * MIB
    assert info.pax_headers["GNU.sparse.major"] == "1" and info.pax_headers["GNU.sparse.minor"] == "0"
    # typeshed declares TarInfo.sparse as bytes | None; CPython's tarfile keeps the (offset, size)
    # pairs of the file's data there (TarInfo._proc_sparse).
    sparse = cast(list[tuple[int, int]] | None, info.sparse)
    assert sparse == [(4 * MIB, 4096), (16 * MIB, 0)]
    listing = subprocess.run(["tar", "-tvf", "-"], input=raw, check=True, capture_output=True).stdout.decode()
    assert "a folder/disk.img" in listing and "GNUSparseFile" not in listing


def sparse_member(name: str, realsize: int, sparse_map: bytes, data: bytes) -> bytes:
    stored = sparse_map + b"\0" * (-len(sparse_map) % 512) + data
    pax = (
        pax_record("GNU.sparse.major", b"1")
        + pax_record("GNU.sparse.minor", b"0")
        + pax_record("GNU.sparse.name", name.encode())
        + pax_record("GNU.sparse.realsize", str(realsize).encode())
    )
    return raw_pax(tarfile.XHDTYPE, pax) + member("GNUSparseFile.0/x", data=stored)[:]


@pytest.mark.parametrize(
    "sparse_map, data, why",
    [
        (b"2\n0\n10\n5\n10\n", b"x" * 20, "overlap"),  # the second region starts inside the first
        (b"1\n100\n10\n", b"x" * 10, "beyond"),  # past the real size (50)
        (b"1\n0\n10\n", b"x" * 11, "holds"),  # more data than the map says
        (b"3\n0\n", b"", "map"),  # cut short
        (b"1\n-1\n10\n", b"x" * 10, "map"),  # not a number
    ],
)
def test_a_hostile_sparse_map_is_refused(tmp_path: Path, sparse_map: bytes, data: bytes, why: str) -> None:
    archive = io.BytesIO(sparse_member("f", 50, sparse_map, data) + b"\0" * 1024)
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match=why):
        extract_stream(archive, tmp_path / "out")


def test_older_sparse_formats_stay_refused(tmp_path: Path) -> None:
    pax = pax_record("GNU.sparse.size", b"10") + pax_record("GNU.sparse.numblocks", b"1")  # format 0.0
    archive = io.BytesIO(raw_pax(tarfile.XHDTYPE, pax) + member("f", data=b"x" * 10) + b"\0" * 1024)
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="unsupported archive member"):
        extract_stream(archive, tmp_path / "out")
