"""What the agent owns but has shut itself out of (a folder of mode 000, a folder without its
search bit, a file of mode 0200): the tar stage, running as that owner, reads it and archives
it with its real mode, leaving the mode as it was; every layer of a restore gets through it
and sets the mode again at the end; what a backup still cannot read (another user's file) is
said, and makes that backup one the VM must not be deleted after.

The walk and the extraction run as `nobody` here, as the stages run as the agent on a VM: root
reads everything, so only an unprivileged owner meets these modes. The whole pipeline as the
agent: tests/e2e/test_backup_restore.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmgen.contract.documents import BackupResult

from .test_increment_attacks import _as_nobody_extract, layer_bytes
from .test_pipeline_local import snapshot

SRC = str(Path(__file__).resolve().parents[3] / "src")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run the stages as another user"
)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder `nobody` can reach (pytest's tmp_path is root's only)."""
    work = Path(tempfile.mkdtemp(prefix="vmgen-locked-"))
    work.chmod(0o755)
    yield work
    subprocess.run(["chmod", "-R", "u+rwx", str(work)], check=False)
    shutil.rmtree(work)


def locked_home(home: Path) -> Path:
    """A home of nobody's with things shut to their owner, deepest first."""
    (home / "work/app").mkdir(parents=True)
    (home / "work/app/main.py").write_text("print('hi')\n")
    (home / "sealed/inner").mkdir(parents=True)
    (home / "sealed/secret.txt").write_text("only mine\n")
    (home / "sealed/inner/deeper.txt").write_text("deeper\n")
    (home / "no-search").mkdir()
    (home / "no-search/file").write_text("behind a folder without x\n")
    (home / "write-only.txt").write_text("no read bit\n")
    (home / "nothing.bin").write_bytes(os.urandom(3000))
    subprocess.run(["chown", "-R", "65534:65534", str(home)], check=True)
    for path, mode in (
        ("sealed/inner", 0o000),
        ("sealed", 0o000),
        ("no-search", 0o600),
        ("write-only.txt", 0o200),
        ("nothing.bin", 0o000),
    ):
        (home / path).chmod(mode)
    return home


def test_every_layer_of_a_restore_gets_through_a_folder_of_mode_000(shared):
    """A chain with a sealed folder, restored as its unprivileged owner: the increment's purge
    used to open the folder the full backup had left at 000 (Permission denied)."""
    home = locked_home(shared / "home")
    full, index = layer_bytes(home, None)  # written as root, who reads everything
    (home / "work/app/main.py").write_text("print('changed')\n")
    increment, _ = layer_bytes(home, index)
    (shared / "restore").mkdir()
    done = _as_nobody_extract([full, increment], shared / "restore")
    assert done.returncode == 0, done.stderr[-400:]
    assert snapshot(shared / "restore/staged") == snapshot(home)  # contents and modes, 000 included


def archive_as_nobody(home: Path, out: Path, previous: Path | None = None) -> tuple[bytes, Path, dict]:
    """The tar stage's walk of `home` as its unprivileged owner (an increment on the index at
    `previous`, if given): the tar stream, where its index went, and its summary."""
    out.mkdir()
    os.chown(out, 65534, 65534)
    code = (
        "import dataclasses, json, os, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from vmgen.backup import index; from vmgen.backup.archive import write_tree\n"
        "previous = index.load(os.open(sys.argv[4], os.O_RDONLY)) if sys.argv[4] else None\n"
        "with open(sys.argv[3] + '/tar', 'wb') as tar, open(sys.argv[3] + '/index', 'wb') as idx:\n"
        "    summary, _ = write_tree(Path(sys.argv[2]), tar, [], previous, index.IndexWriter(idx))\n"
        "print(json.dumps(dataclasses.asdict(summary)))\n"
    )
    done = as_nobody(code, str(home), str(out), str(previous or ""))
    return (out / "tar").read_bytes(), out / "index", json.loads(done)


def as_nobody(code: str, *args: str) -> str:
    """Run `code` as nobody, with this source tree's vmgen (sys.argv[1]); its stdout."""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, SRC, *args],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
        check=True,
    ).stdout


def test_the_owner_backs_up_what_it_cannot_read_and_a_chain_restores_it(shared):
    home = locked_home(shared / "home")
    before = snapshot(home)
    full, index, summary = archive_as_nobody(home, shared / "full")
    assert summary["skipped"] == [] and summary["left_out"] == [] and summary["files"] == 6
    assert snapshot(home) == before  # every mode put back as it was
    (home / "work/app/main.py").write_text("print('changed')\n")
    changed, index, summary = archive_as_nobody(home, shared / "changed", index)
    assert summary["files"] == 1 and summary["unchanged"] == 5 and summary["left_out"] == []
    # Lending a mode and giving it back leaves nothing that looks changed to the next backup.
    unchanged, _, summary = archive_as_nobody(home, shared / "unchanged", index)
    assert summary["files"] == 0 and summary["unchanged"] == 6

    (shared / "restore").mkdir()
    done = _as_nobody_extract([full, changed, unchanged], shared / "restore")
    assert done.returncode == 0, done.stderr[-400:]
    assert snapshot(shared / "restore/staged") == snapshot(home)
    assert (shared / "restore/staged/sealed/inner").stat().st_mode & 0o777 == 0
    # The restore's index of what it made holds what is behind those modes too, and leaves them.
    indexed = as_nobody(
        "import sys; sys.path.insert(0, sys.argv[1]); from vmgen.backup import index\n"
        "out = index.IndexWriter(sys.stdout.buffer); index.walk(sys.argv[2], frozenset(), out)\n",
        str(shared / "restore/staged"),
    )
    assert "\tsealed/inner/deeper.txt\0" in indexed and "\tnothing.bin\0" in indexed
    assert snapshot(shared / "restore/staged") == snapshot(home)


def test_what_the_owner_still_cannot_read_is_said_and_refuses_a_delete(shared):
    home = locked_home(shared / "home")
    (home / "roots.txt").write_text("root's, mode 0600\n")  # not the agent's: no mode of its own to lend
    (home / "roots.txt").chmod(0o600)
    os.mkfifo(home / "a-fifo")  # holds no data: skipped, and nothing is lost
    os.chown(home / "a-fifo", 65534, 65534)
    _tar, _index, summary = archive_as_nobody(home, shared / "full")
    assert summary["left_out"] == ["roots.txt: Permission denied"] and summary["left_out_count"] == 1
    assert summary["skipped_count"] == 2

    result = BackupResult(
        ok=True, backup_id="20261207T010000Z-0000", left_out=1, left_out_paths=("roots.txt: Permission denied",)
    )
    reason = result.reason_not_to_delete()
    assert "left out 1 file(s) or folder(s)" in reason and "roots.txt: Permission denied" in reason
    assert BackupResult(ok=True, backup_id="20261207T010000Z-0000", skipped=1).reason_not_to_delete() == ""
    assert "failed" in BackupResult(ok=False, error="store unreachable").reason_not_to_delete()


def test_the_restored_tree_moves_into_a_home_with_its_folders_of_000(shared):
    """The untar stage's last step as the agent: the staged tree goes into the home (a folder
    moved to another parent needs its own write bit, for its ".."), replacing what is there."""
    home = locked_home(shared / "home")
    _full, _index, _summary = archive_as_nobody(home, shared / "full")
    (shared / "full/tar").chmod(0o644)
    target = shared / "target"
    (target / "sealed").mkdir(parents=True)  # the new VM's, replaced by the backup's
    subprocess.run(["chown", "-R", "65534:65534", str(target)], check=True)
    (target / "sealed").chmod(0o555)
    as_nobody(
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
        "from vmgen.backup import extract; from vmgen.backup.stages import _remove_staging\n"
        "target = Path(sys.argv[2]); staging = extract.staging_path(target, 'x', True)\n"
        "extract.make_staging(target, staging, True)\n"
        "extract.extract_stream(open(sys.argv[3], 'rb'), staging)\n"
        "extract.move_into_place(staging, target); _remove_staging(staging)\n",
        str(target),
        str(shared / "full/tar"),
    )
    assert snapshot(target) == snapshot(home)


def test_what_the_agents_tar_stage_reports_as_left_out_is_capped():
    """The tar stage is the agent's process: its report is input from the agent's side."""
    from vmgen.backup.pipeline import _tar_report

    hostile = {
        "summary": {"left_out": ["x" * 100_000] * 10_000, "left_out_count": -5, "skipped_count": -1},
        "plaintext_bytes": 1,
        "compressed_bytes": 1,
    }
    summary, _plain, _compressed = _tar_report(hostile)
    assert len(summary.left_out) == 50 and all(len(entry) == 300 for entry in summary.left_out)
    assert summary.left_out_count == 50 and summary.skipped_count == 0  # never fewer than it lists
