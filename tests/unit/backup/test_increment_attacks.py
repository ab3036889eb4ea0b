"""Incremental backups under attack and in corners: hostile increments (refused, or contained in
the staging folder, an outside canary untouched, always an ArchiveError), chains that a
non-root restorer must get through (read-only and very deep folders), folders too long to
list, ids when the clock went back, a stage report held open, and GNU tar parity."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

from vmgen.backup import (
    LocalStore,
    apply_retention,
    create_backup,
    generate_identity,
    index as file_index,
    latest_backup,
    list_backups,
    parse_identity,
    restore_backup,
    tarstream,
)
from vmgen.backup.archive import write_tree
from vmgen.backup.extract import extract_stream
from vmgen.backup.indexkeeper import IndexKeeper
from vmgen.errors import ArchiveError

from .test_pipeline_local import snapshot

D, F, S, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


# ----- helpers -----


def member(
    name: str,
    kind: bytes = F,
    data: bytes = b"",
    dumpdir: str | None = None,
    linkname: str = "",
    pax: dict[str, str] | None = None,
    mode: int = 0o755,
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), linkname, mode
    headers = dict(pax or {})
    if dumpdir is not None:
        headers["GNU.dumpdir"] = dumpdir
    info.pax_headers = headers
    block = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return block + data + b"\0" * (-len(data) % 512)


def raw_pax(kind: bytes, records: bytes) -> bytes:
    """A PAX header block of type `kind` (x or g) with `records` as its payload, by hand."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = kind, len(records)
    return info.tobuf(tarfile.USTAR_FORMAT) + records + b"\0" * (-len(records) % 512)


def pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def increment(*members: bytes) -> io.BytesIO:
    return io.BytesIO(b"".join(members) + b"\0" * 1024)


def top(dumpdir: str) -> bytes:
    return member(".", D, dumpdir=dumpdir)


@pytest.fixture
def layered(tmp_path: Path) -> tuple[Path, Path]:
    """A staged tree as a full backup left it: a file, a real dir, symlinks out (to a dir and to
    a file), and a canary tree outside that must stay as it is."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "canary").write_text("keep me")
    (outside / "sub/deep").write_text("keep me too")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "keep").write_text("k")
    (staged / "d").mkdir()
    (staged / "d/inner").write_text("i")
    os.symlink(outside, staged / "out")
    os.symlink(outside / "canary", staged / "outfile")
    return staged, outside


def outside_intact(outside: Path) -> None:
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == ["canary", "sub", "sub/deep"]
    assert (outside / "canary").read_text() == "keep me"
    assert (outside / "sub/deep").read_text() == "keep me too"
    assert os.stat(outside / "canary").st_nlink == 1, "something hard-linked the canary"


def layer_bytes(home: Path, previous: dict[str, bytes] | None, excludes=()) -> tuple[bytes, dict[str, bytes]]:
    """One backup's tar stream of `home` (an increment if `previous`), and its index."""
    out = io.BytesIO()
    r, w = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(os.fdopen(r, "rb").read()))
    reader.start()
    idx = file_index.IndexWriter(open(w, "wb"))  # noqa: SIM115 - closed below
    write_tree(home, out, list(excludes), previous, idx)
    idx.close()
    reader.join()
    r2, w2 = os.pipe()

    def write_back() -> None:
        os.write(w2, got[0])
        os.close(w2)

    threading.Thread(target=write_back).start()
    return out.getvalue(), file_index.load(r2)


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_identity()


# ----- hostile increments: a backup is what the agent's walk wrote -----


@pytest.mark.parametrize("entry", ["Y../x", "Ya/b", "Y.", "Q", "Yname\0R"])
def test_a_dumpdir_naming_anything_but_one_entry_of_its_folder_is_refused(layered, entry):
    staged, _outside = layered
    with pytest.raises(ArchiveError, match="lists"):
        extract_stream(increment(member(".", tarfile.DIRTYPE, dumpdir=f"Ykeep\0{entry}\0\0")), staged, True)


def test_an_increment_cannot_write_through_an_earlier_backups_symlink(layered):
    staged, outside = layered
    # "out" is listed as a directory and written into: the purge removes the link first, and
    # the folder made in its place is a real one.
    archive = increment(
        member(".", tarfile.DIRTYPE, dumpdir="Ykeep\0Dout\0\0"),
        member("out", tarfile.DIRTYPE, dumpdir="Ycanary\0\0"),
        member("out/canary", data=b"overwritten"),
    )
    extract_stream(archive, staged, True)
    assert (outside / "canary").read_text() == "keep me"
    assert not (staged / "out").is_symlink() and (staged / "out/canary").read_text() == "overwritten"


def test_an_increment_without_the_folders_it_writes_into_is_refused(layered):
    staged, outside = layered
    for archive in (
        increment(member("out/canary", data=b"x")),  # no directory members at all
        increment(member(".", tarfile.DIRTYPE, dumpdir="Dout\0\0"), member("out/canary", data=b"x")),
        increment(member(".", tarfile.DIRTYPE), member("x", tarfile.LNKTYPE, linkname="out/canary")),
    ):
        with pytest.raises(ArchiveError, match="outside the increment's directories"):
            extract_stream(archive, staged, True)
    assert (outside / "canary").read_text() == "keep me"


def test_a_purge_deletes_only_inside_the_staged_tree(layered):
    staged, outside = layered
    # The top folder lists nothing: everything staged goes, the link's target stays.
    extract_stream(increment(member(".", tarfile.DIRTYPE, dumpdir="\0")), staged, True)
    assert list(staged.iterdir()) == []
    assert (outside / "canary").read_text() == "keep me"


def test_a_folder_listed_twice_is_refused(layered):
    staged, _outside = layered
    archive = increment(
        member(".", tarfile.DIRTYPE, dumpdir="Da\0\0"),
        member("a", tarfile.DIRTYPE, dumpdir="\0"),
        member("a", tarfile.DIRTYPE, dumpdir="\0"),
    )
    with pytest.raises(ArchiveError, match="twice"):
        extract_stream(archive, staged, True)


# ----- a hostile increment fails as an ArchiveError, not as whatever the OS raises -----


@pytest.mark.parametrize(
    "members",
    [
        [member("x", H, linkname="d")],
        [member("x", H, linkname="nothing")],
        [member("keep", H, linkname="keep")],
        [member("x", pax={"path": "a\0b"})],
        [member("x", S, pax={"linkpath": "a\0b"})],
    ],
    ids=["link-to-dir", "link-to-nothing", "link-to-self", "nul-path", "nul-linkpath"],
)
def test_a_hostile_increment_fails_with_an_archive_error(layered, members):
    """Said as what it is ("the archive cannot be extracted: ..."), not as whatever os.link or
    a NUL in a name raised."""
    staged, outside = layered
    with pytest.raises(ArchiveError):
        extract_stream(increment(top("Ykeep\0Dd\0Yx\0Nout\0Noutfile\0\0"), *members), staged, True)
    outside_intact(outside)


@pytest.mark.parametrize("mtime", ["inf", "nan", "-inf", "1e300", "-5"])
def test_a_hostile_mtime_is_clamped(layered, mtime):
    staged, outside = layered
    members = [member("x", pax={"mtime": mtime}), member("d", D, dumpdir="\0", pax={"mtime": mtime})]
    extract_stream(increment(top("Ykeep\0Dd\0Yx\0Nout\0Noutfile\0\0"), *members), staged, True)
    for name in ("x", "d"):
        assert 0 <= (staged / name).stat().st_mtime <= 253402300799
    outside_intact(outside)


# ----- attacks on the extraction of an increment: all refused or contained -----


@pytest.mark.parametrize(
    "members",
    [
        # A symlink, then a directory of the same name and a file below it.
        [top("Ss\0\0"), member("s", S, linkname=".."), member("s", D, dumpdir="Yx\0\0"), member("s/x", data=b"x")],
        # A directory member where an earlier layer left a symlink out, and the top has no dumpdir
        # (no purge): the dir's own dumpdir would purge the symlink target's contents.
        [member(".", D), member("out", D, dumpdir="\0")],
        # Same, with the top listing "out" as unchanged (N: not purged) and "out" as a directory.
        [top("Nout\0\0"), member("out", D, dumpdir="\0")],
        [top("Yout\0\0"), member("out", D, dumpdir="\0")],
        # A hard link to a file through an earlier layer's symlink, with and without its dir member.
        [top("Ykeep\0Nout\0Yh\0\0"), member("h", H, linkname="out/canary")],
        [top("Ykeep\0Nout\0Yh\0\0"), member("h", H, linkname="out/sub/deep")],
        # A file written over an existing directory listed as a directory (it would need rmtree).
        [top("Ykeep\0Dd\0\0"), member("d", data=b"z")],
        # A directory, then a symlink and a hard link of the same name (would need the dir removed).
        [top("Dd\0\0"), member("d", D, dumpdir="Yinner\0\0"), member("d", S, linkname=str(Path("/")))],
        [top("Dd\0Ykeep\0\0"), member("d", D, dumpdir="Yinner\0\0"), member("d", H, linkname="keep")],
        # "./x" and "x": one directory listed twice.
        [top("Dx\0\0"), member("./x", D, dumpdir="\0"), member("x", D, dumpdir="Yy\0\0")],
        # Members below a directory that is only in the dumpdir, not a member of this increment.
        [top("Dd\0\0"), member("d/inner", data=b"new")],
        [top("Dout\0\0"), member("out/canary", data=b"pwned")],
        # A symlink member named like an earlier layer's dir, then a file through it.
        [top("Dd\0\0"), member("d", S, linkname=".."), member("d/keep", data=b"x")],
        # Absolute and dot-dot names, in an increment.
        [top("Ykeep\0\0"), member("/tmp/evil-abs", data=b"x")],
        [top("Ykeep\0\0"), member("../outside/canary", data=b"x")],
        [top("Ykeep\0\0"), member("x", H, linkname="../outside/canary")],
        # GNU rename records and a name with a slash in a dumpdir.
        [top("Rkeep\0Tx\0\0")],
        [top("Yout/canary\0\0")],
    ],
    ids=[
        "symlink-then-dir",
        "dir-over-old-symlink-no-top-dumpdir",
        "dir-over-old-symlink-N",
        "dir-over-old-symlink-Y",
        "hardlink-through-old-symlink",
        "hardlink-through-old-symlink-deep",
        "file-over-dir",
        "symlink-over-new-dir",
        "hardlink-over-new-dir",
        "dot-slash-twice",
        "below-unlisted-dir",
        "below-old-symlink",
        "symlink-then-below",
        "absolute",
        "dotdot",
        "hardlink-dotdot",
        "rename-records",
        "slash-in-dumpdir",
    ],
)
def test_hostile_increments_are_refused_and_touch_nothing_outside(layered, members):
    staged, outside = layered
    with pytest.raises(ArchiveError):
        extract_stream(increment(*members), staged, True)
    outside_intact(outside)
    assert not Path("/tmp/evil-abs").exists()


def test_a_purge_removes_old_symlinks_without_following_them(layered):
    """The top lists "d" only: the symlinks to the outside dir and file go, the dir they point
    to keeps its contents; "d" keeps what its dumpdir lists (nothing: emptied)."""
    staged, outside = layered
    extract_stream(increment(top("Dd\0\0"), member("d", D, dumpdir="\0")), staged, True)
    assert sorted(os.listdir(staged)) == ["d"] and os.listdir(staged / "d") == []
    outside_intact(outside)


def test_an_old_symlink_replaced_by_a_file_is_unlinked_not_written_through(layered):
    staged, outside = layered
    archive = increment(top("Youtfile\0Yout\0\0"), member("outfile", data=b"pwned"), member("out", data=b"pwned"))
    extract_stream(archive, staged, True)
    assert (staged / "outfile").read_bytes() == b"pwned" and not (staged / "outfile").is_symlink()
    assert (staged / "out").read_bytes() == b"pwned"
    outside_intact(outside)


def test_a_hard_link_to_an_old_symlink_links_the_symlink_itself(layered):
    staged, outside = layered
    extract_stream(
        increment(
            top("Noutfile\0Nout\0Yh\0Yh2\0\0"), member("h", H, linkname="outfile"), member("h2", H, linkname="out")
        ),
        staged,
        True,
    )
    assert os.readlink(staged / "h") == str(outside / "canary")
    assert os.readlink(staged / "h2") == str(outside)
    outside_intact(outside)


def test_a_dumpdir_with_duplicate_names_and_odd_bytes_stays_inside(layered):
    staged, outside = layered
    odd = "\udcff\n\tname"  # a non-UTF-8 byte, a newline and a tab
    archive = increment(top(f"Ykeep\0Dkeep\0Y{odd}\0Nd\0Dd\0\0"), member(odd, data=b"z"))
    extract_stream(archive, staged, True)
    # The last listing of a name wins: "keep" was listed as a directory, so the file went.
    assert sorted(os.listdir(staged)) == sorted([odd, "d"])
    assert (staged / odd).read_bytes() == b"z"
    outside_intact(outside)


def test_a_global_pax_dumpdir_or_path_does_not_lead_anywhere(layered):
    staged, outside = layered
    archive = increment(
        raw_pax(tarfile.XGLTYPE, pax_record("path", b"out/canary")), top("Ykeep\0\0"), member("x", data=b"pwned")
    )
    with pytest.raises(ArchiveError):
        extract_stream(archive, staged, True)
    outside_intact(outside)


def test_a_huge_pax_header_is_refused_before_it_is_read(layered):
    staged, outside = layered
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 8**11 - 1  # 8 GiB, no data follows
    with pytest.raises(ArchiveError, match="extended header"):
        extract_stream(increment(top("Ykeep\0\0"), info.tobuf(tarfile.USTAR_FORMAT)), staged, True)
    outside_intact(outside)


def test_global_pax_headers_cannot_pile_up_in_memory(monkeypatch):
    monkeypatch.setattr(tarstream, "MAX_EXTENDED_HEADER", 64 << 10)
    headers = b"".join(raw_pax(tarfile.XGLTYPE, pax_record(f"k{i}", b"a" * (60 << 10))) for i in range(40))
    data = headers + member("f", data=b"x") + b"\0" * 1024
    chunks = iter([data, b""])
    reader = tarstream.TarReader(lambda: next(chunks))
    try:
        while reader.next() is not None:
            pass
    except ArchiveError:
        return  # refusing is fine
    held = sum(len(k) + len(v) for k, v in reader._global_pax.items())
    assert held <= 2 * tarstream.MAX_EXTENDED_HEADER, f"{held} bytes of global PAX records kept"


def test_a_deep_tree_from_an_earlier_layer_can_be_purged(tmp_path):
    staged = tmp_path / "staged"
    staged.mkdir()
    try:
        extract_stream(increment(*(member("/".join(["a"] * i), D) for i in range(1, 1501))), staged, False)
        extract_stream(increment(top("\0")), staged, True)
        assert os.listdir(staged) == []
    finally:  # pytest's own clean-up of old temporary folders recurses: it must not meet this tree
        subprocess.run(["rm", "-rf", str(staged)], check=True)


# ----- correctness: what a legit chain must restore -----


def test_a_directory_with_a_long_listing_makes_a_restorable_increment(tmp_path, monkeypatch):
    monkeypatch.setattr(tarstream, "MAX_EXTENDED_HEADER", 64 << 10)
    home = tmp_path / "home"
    (home / "maildir").mkdir(parents=True)
    for i in range(3000):
        (home / "maildir" / f"1764000000.M{i:06d}P1234.host").write_bytes(b"")
    full, idx = layer_bytes(home, None)
    (home / "maildir/new-mail").write_text("hi")
    inc, _ = layer_bytes(home, idx)
    staged = tmp_path / "staged"
    staged.mkdir()
    extract_stream(io.BytesIO(full), staged, False)
    extract_stream(io.BytesIO(inc), staged, True)  # ArchiveError: a 100,xxx-byte extended header
    assert (staged / "maildir/new-mail").read_text() == "hi"


def _as_nobody_extract(layers: list[bytes], work: Path) -> subprocess.CompletedProcess[str]:
    """Extract the chain's layers as an unprivileged user (how the VM restores: as the agent;
    on a laptop: as the user), each layer as a separate extract_stream like the untar stages."""
    os.chmod(work, 0o755)
    files = []
    for i, data in enumerate(layers):
        path = work / f"layer{i}.tar"
        path.write_bytes(data)
        path.chmod(0o644)
        files.append(str(path))
    staged = work / "staged"
    staged.mkdir()
    os.chown(staged, 65534, 65534)
    src = str(Path(__file__).resolve().parents[3] / "src")
    code = (
        f"import sys; sys.path.insert(0, {src!r}); from vmgen.backup.extract import extract_stream\n"
        "for i, p in enumerate(sys.argv[2:]):\n    extract_stream(open(p, 'rb'), sys.argv[1], i > 0)\n"
    )
    return subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
            str(staged),
            *files,
        ],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run the extraction as another user"
)


@needs_root
@pytest.mark.parametrize("change", ["delete-read-only-tree", "new-file-in-dir-made-writable"])
def test_a_read_only_directory_does_not_break_the_chain(tmp_path, change):
    home = tmp_path / "home"
    mod = home / "go/pkg/mod/example.com/x@v1.0.0"
    mod.mkdir(parents=True)
    (mod / "x.go").write_text("package x\n")
    for d in (mod, mod.parent, home / "go/pkg/mod"):
        d.chmod(0o555)
    full, idx = layer_bytes(home, None)
    for d in (home / "go/pkg/mod", mod.parent, mod):
        d.chmod(0o755)
    if change == "delete-read-only-tree":
        shutil.rmtree(home / "go")
    else:
        (mod / "patched.go").write_text("package x // patched\n")
    inc, _ = layer_bytes(home, idx)
    work = Path(tempfile.mkdtemp(prefix="vmgen-review-"))  # pytest's tmp_path is root's only
    try:
        done = _as_nobody_extract([full, inc], work)
        assert done.returncode == 0, done.stderr[-300:]
        assert snapshot(work / "staged") == snapshot(home)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(tmp_path), str(work)], check=False)
        shutil.rmtree(work)


def test_the_newest_backup_is_the_latest_even_when_the_clock_went_back(tmp_path, keys):
    """A VM resumed from a snapshot, an NTP step back: the new backup still sorts after every
    backup in the store, so "latest" and retention keep meaning the newest."""
    text, recipient = keys
    home = tmp_path / "home"
    home.mkdir()
    (home / "f").write_text("old")
    store, keeper = LocalStore(tmp_path / "store"), IndexKeeper(tmp_path / "keeper")
    create_backup(
        home, store, "app", recipient, excludes=[], keeper=keeper, max_increments=3, backup_id="29991231T235958Z-0000"
    )  # made when the clock was far ahead
    (home / "f").write_text("new")
    newest = create_backup(home, store, "app", recipient, excludes=[], keeper=keeper, max_increments=3)
    assert newest.depth == 1 and newest.backup_id > "29991231T235958Z-0000"
    assert latest_backup(store, "app").backup_id == newest.backup_id
    apply_retention(store, "app", 1)
    assert newest.backup_id in [m.backup_id for m in list_backups(store, "app")]
    out = tmp_path / "out"
    restore_backup(store, "app", None, parse_identity(text), out)
    assert (out / "f").read_text() == "new"


def test_retention_after_restoring_an_older_backup_keeps_the_new_branch(tmp_path, keys):
    """Full F, increments I1, I2; the VM restores I1 and goes on: I3's parent is I1. Keeping
    the newest one keeps I3's chain (F, I1) and drops I2; every kept state restores."""
    text, recipient = keys
    home = tmp_path / "home"
    (home / "d").mkdir(parents=True)
    (home / "d/a").write_text("a1")
    store, keeper = LocalStore(tmp_path / "store"), IndexKeeper(tmp_path / "keeper")

    def backup(root: Path, kp: IndexKeeper):
        return create_backup(root, store, "app", recipient, excludes=[], keeper=kp, max_increments=5)

    full = backup(home, keeper)
    (home / "d/a").write_text("a2")
    i1 = backup(home, keeper)
    state1 = snapshot(home)
    (home / "d/b").write_text("b")
    i2 = backup(home, keeper)
    vm = tmp_path / "vm"
    vm_keeper = IndexKeeper(tmp_path / "vm-keeper")
    restore_backup(store, "app", i1.backup_id, parse_identity(text), vm, keeper=vm_keeper)
    assert snapshot(vm) == state1
    shutil.rmtree(vm / "d")
    (vm / "e").mkdir()
    (vm / "e/c").write_text("c")
    i3 = backup(vm, vm_keeper)
    assert (i3.parent, i3.depth) == (i1.backup_id, 2)
    assert apply_retention(store, "app", 1) == [i2.backup_id]
    assert [m.backup_id for m in list_backups(store, "app")] == [full.backup_id, i1.backup_id, i3.backup_id]
    out = tmp_path / "out"
    restore_backup(store, "app", None, parse_identity(text), out)
    assert snapshot(out) == snapshot(vm)


# ----- GNU tar parity on tricky legit changes -----


def _odd_tree(home: Path) -> None:
    bad = os.fsdecode(b"latin1-\xe9t\xe9")
    (home / "a/b").mkdir(parents=True)
    (home / "a/b/file").write_text("1")
    (home / "a/to-dir").write_text("will be a dir")
    (home / "a/to-file").mkdir()
    (home / "a/to-file/x").write_text("x")
    (home / "a/to-link").write_text("will be a link")
    os.symlink("b/file", home / "a/link-to-file")
    (home / f"{bad}").mkdir()
    (home / f"{bad}/{bad}.txt").write_text("non-utf-8")
    (home / "new\nline\tand tab").write_text("nl")
    (home / "empty").mkdir()
    (home / "ro").mkdir()
    (home / "ro/f").write_text("r")
    (home / "hl-1").write_text("hard")
    os.link(home / "hl-1", home / "a/hl-2")
    (home / "build").mkdir()
    (home / "build/out").write_text("excluded")
    (home / "renamed-dir").mkdir()
    (home / "renamed-dir/inside").write_text("moves")


def _odd_changes(home: Path, step: int) -> None:
    bad = os.fsdecode(b"latin1-\xe9t\xe9")
    if step == 1:
        (home / "a/to-dir").unlink()
        (home / "a/to-dir").mkdir()
        (home / "a/to-dir/inside").write_text("now a dir")
        shutil.rmtree(home / "a/to-file")
        (home / "a/to-file").write_text("now a file")
        (home / "a/to-link").unlink()
        os.symlink("../empty", home / "a/to-link")
        (home / "a/link-to-file").unlink()
        (home / "a/link-to-file").mkdir()
        os.unlink(home / f"{bad}/{bad}.txt")
        (home / f"{bad}/{bad}2.txt").write_text("other non-utf-8")
        (home / "new\nline\tand tab").write_text("changed nl")
        os.link(home / "hl-1", home / "empty/hl-3")  # a third name: all three are taken again
        os.rename(home / "renamed-dir", home / "renamed-dir2")
        (home / "ro").chmod(0o555)
    else:
        os.unlink(home / "hl-1")  # the other two stay linked
        (home / "empty/hl-3").write_text("rewritten through one name")
        shutil.rmtree(home / "a/b")
        (home / "a/b").write_text("b is a file now")
        (home / "ro").chmod(0o755)
        (home / "ro/g").write_text("g")


def test_gnu_tar_and_vmgen_restore_the_same_tree_of_odd_changes(tmp_path, keys):
    text, recipient = keys
    home = tmp_path / "home"
    home.mkdir()
    _odd_tree(home)
    store, keeper = LocalStore(tmp_path / "store"), IndexKeeper(tmp_path / "keeper")
    states = []
    for step in range(3):
        if step:
            _odd_changes(home, step)
        made = create_backup(home, store, "app", recipient, excludes=["build"], keeper=keeper, max_increments=5)
        assert made.depth == step
        states.append(snapshot(home, skip={"build"}))
    identity = tmp_path / "identity.txt"
    identity.write_text(text)
    for upto in range(3):
        ours = tmp_path / f"ours{upto}"
        restore_backup(store, "app", list_backups(store, "app")[upto].backup_id, parse_identity(text), ours)
        gnu = tmp_path / f"gnu{upto}"
        gnu.mkdir()
        for m in list_backups(store, "app")[: upto + 1]:
            subprocess.run(
                f"age -d -i {identity} < '{store.root / m.object_key}' | zstd -d | tar -x --incremental -C '{gnu}'",
                shell=True,
                check=True,
            )
        diff = subprocess.run(["diff", "-r", "--no-dereference", str(ours), str(gnu)], capture_output=True)
        assert diff.returncode == 0, diff.stdout.decode(errors="replace")[-2000:]
        assert snapshot(ours) == snapshot(gnu) == states[upto]
    final = tmp_path / "ours2"
    assert os.stat(final / "a/hl-2").st_ino == os.stat(final / "empty/hl-3").st_ino
    assert (final / "a/hl-2").read_text() == "rewritten through one name"
    assert not (final / "build").exists()


def test_an_unchanged_hard_link_pair_stays_linked_across_increments(tmp_path, keys):
    text, recipient = keys
    home = tmp_path / "home"
    (home / "x").mkdir(parents=True)
    (home / "x/one").write_text("same inode")
    os.link(home / "x/one", home / "two")
    store, keeper = LocalStore(tmp_path / "store"), IndexKeeper(tmp_path / "keeper")
    create_backup(home, store, "app", recipient, excludes=[], keeper=keeper, max_increments=5)
    (home / "other").write_text("unrelated change")
    inc = create_backup(home, store, "app", recipient, excludes=[], keeper=keeper, max_increments=5)
    assert inc.summary.unchanged == 2 and inc.summary.hardlinks == 0
    out = tmp_path / "out"
    restore_backup(store, "app", None, parse_identity(text), out)
    assert os.stat(out / "x/one").st_ino == os.stat(out / "two").st_ino


# ----- root never blocks for ever on a pipe the agent's process holds -----


def test_root_does_not_wait_forever_for_a_stage_report_a_grandchild_holds(tmp_path):
    from vmgen.backup import stages

    report_r, report_w = os.pipe()
    child = (
        'import os, subprocess, sys; fd = int(sys.argv[1]); os.write(fd, b\'{"ok": true, "result": 1}\');'
        " print(subprocess.Popen(['sleep', '30'], pass_fds=(fd,)).pid, flush=True)"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(report_w)], pass_fds=(report_w,), stdout=subprocess.PIPE)
    os.close(report_w)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())  # int() reads the digits of b"1234\n" too
    try:
        stage = stages.Stage("tar", proc, open(report_r, "rb"))  # noqa: SIM115 - the stage closes it
        stage.start()
        stage.join(5)
        assert not stage.is_alive(), "root still waits for a pipe the agent's grandchild holds"
    finally:
        os.kill(grandchild, 9)
        proc.wait()
