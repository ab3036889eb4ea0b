"""The backup format itself: age identities compatible with the age tools, headers identical to
tarfile's, exclude patterns, refusal of hostile archives, and `age -d | zstd -d | tar -t` on a
vmgen backup with the standard Debian tools."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from vmgen.backup import LocalStore, create_backup, generate_identity, load_identity, save_identity
from vmgen.backup.archive import Excludes, header
from vmgen.backup.extract import extract_stream
from vmgen.errors import ArchiveError, IdentityExists, PassphraseRequired, VmgenError, WrongPassphrase


def test_the_standard_tools_are_installed():
    # scripts/setup-system.sh installs them; the interoperability test below must never be skipped.
    assert shutil.which("age") and shutil.which("zstd")


def test_identity_file_is_what_age_keygen_writes(tmp_path: Path):
    text, recipient = generate_identity()
    lines = text.splitlines()
    assert lines[0].startswith("# created: ") and lines[1] == f"# public key: {recipient}"
    assert lines[2].startswith("AGE-SECRET-KEY-1") and recipient.startswith("age1")
    path = tmp_path / "state" / "app.identity"
    save_identity(path, text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path).recipient == recipient
    assert "AGE-SECRET" not in repr(load_identity(path))  # never in logs or tracebacks
    with pytest.raises(IdentityExists):
        save_identity(path, generate_identity()[0])
    assert load_identity(path).recipient == recipient
    if shutil.which("age-keygen"):
        derived = subprocess.run(["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True)
        assert derived.stdout.strip() == recipient


def test_passphrase_protected_identity(tmp_path: Path):
    text, recipient = generate_identity()
    path = tmp_path / "app.identity"
    save_identity(path, text, passphrase="correct horse")
    assert b"AGE-SECRET-KEY" not in path.read_bytes()
    assert path.read_bytes().startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    with pytest.raises(PassphraseRequired):
        load_identity(path)
    with pytest.raises(WrongPassphrase):
        load_identity(path, "wrong")
    assert load_identity(path, "correct horse").recipient == recipient


@pytest.mark.parametrize(
    "name,kind,link",
    [
        ("work/app/main.py", tarfile.REGTYPE, ""),
        ("work/app", tarfile.DIRTYPE, ""),
        ("link", tarfile.SYMTYPE, "../target"),
        ("hard", tarfile.LNKTYPE, "work/app/main.py"),
        ("x" * 150, tarfile.REGTYPE, ""),
        ("naïve.txt", tarfile.REGTYPE, ""),
    ],
)
def test_headers_are_tarfiles_own(name, kind, link):
    size = 1234 if kind == tarfile.REGTYPE else 0
    info = tarfile.TarInfo(name + ("/" if kind == tarfile.DIRTYPE else ""))
    info.type, info.mode, info.uid, info.gid, info.size, info.mtime = kind, 0o640, 1000, 1001, size, 1764000000
    info.linkname, info.uname, info.gname = link, "agent", "agent"
    assert header(name, kind, 0o640, 1000, 1001, size, 1764000000, link, "agent", "agent") == info.tobuf(
        tarfile.PAX_FORMAT, "utf-8", "surrogateescape"
    )


def test_exclude_patterns():
    ex = Excludes(["node_modules", "*.pyc", "work/app/build/", "/.cache"])
    assert ex.match("a/b/node_modules", "node_modules") == "node_modules"
    assert ex.match("x/y.pyc", "y.pyc") == "*.pyc"
    assert ex.match("work/app/build", "build") == "work/app/build"
    assert ex.match("other/build", "build") is None
    assert ex.match(".cache", ".cache") == ".cache"
    assert ex.match("src/node_modules_x", "node_modules_x") is None


def _hostile(*members: tuple[str, bytes, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            data = b"evil" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    "members",
    [
        [("/etc/evil", tarfile.REGTYPE, "")],
        [("../evil", tarfile.REGTYPE, "")],
        [("a/../../evil", tarfile.REGTYPE, "")],
        [("esc", tarfile.SYMTYPE, ".."), ("esc/evil", tarfile.REGTYPE, "")],
        [("esc", tarfile.SYMTYPE, "/tmp"), ("esc/evil", tarfile.REGTYPE, "")],
        [("esc", tarfile.SYMTYPE, "/tmp/evil"), ("esc", tarfile.REGTYPE, "")],
        [("h", tarfile.LNKTYPE, "../outside")],
        [("dev", tarfile.CHRTYPE, "")],
        [("fifo", tarfile.FIFOTYPE, "")],
    ],
    ids=[
        "absolute",
        "dotdot",
        "inner-dotdot",
        "through-symlink",
        "through-abs-symlink",
        "over-symlink",
        "hardlink-out",
        "device",
        "fifo",
    ],
)
def test_hostile_archives_are_refused(tmp_path: Path, members):
    dest = tmp_path / "staging"
    dest.mkdir()
    with pytest.raises(ArchiveError) as refused:
        extract_stream(_hostile(*members), dest)
    assert isinstance(refused.value, VmgenError) and "\n" not in str(refused.value)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_symlinks_pointing_anywhere_are_kept_not_followed(tmp_path: Path):
    dest = tmp_path / "staging"
    dest.mkdir()
    extract_stream(_hostile(("bin/tool", tarfile.SYMTYPE, "/usr/bin/env"), ("up", tarfile.SYMTYPE, "../x")), dest)
    assert os.readlink(dest / "bin" / "tool") == "/usr/bin/env"
    assert os.readlink(dest / "up") == "../x"


def test_standard_age_and_zstd_tools_read_a_backup(tmp_path: Path):
    root = tmp_path / "agent"
    (root / "work").mkdir(parents=True)
    (root / "work" / "notes.md").write_text("# notes\n")
    (root / "work" / "data.bin").write_bytes(os.urandom(300_000))
    text, recipient = generate_identity()
    identity = tmp_path / "app.identity"
    save_identity(identity, text)
    made = create_backup(root, LocalStore(tmp_path / "store"), "app", recipient, excludes=())
    obj = tmp_path / "store" / made.object_key
    listing = subprocess.run(
        f"age -d -i '{identity}' < '{obj}' | zstd -d | tar -t",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
        executable="/bin/bash",
    )
    assert listing.stdout.split() == ["work/", "work/data.bin", "work/notes.md"]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        f"set -o pipefail; age -d -i '{identity}' < '{obj}' | zstd -d | tar -x -C '{out}'",
        shell=True,
        check=True,
        executable="/bin/bash",
    )
    assert (out / "work" / "data.bin").read_bytes() == (root / "work" / "data.bin").read_bytes()
