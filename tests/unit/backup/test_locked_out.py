"""What the agent owns but has shut itself out of (a folder of mode 000, a folder without its
search bit, a file of mode 0200): every layer of a restore gets through it and sets the mode
again at the end.

The extraction runs as `nobody` here, as the stages run as the agent on a VM: root reads
everything, so only an unprivileged owner meets these modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_increment_attacks import _as_nobody_extract, layer_bytes
from .test_pipeline_local import snapshot

SRC = str(Path(__file__).resolve().parents[3] / "src")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root to run the stages as another user")


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
    for path, mode in (("sealed/inner", 0o000), ("sealed", 0o000), ("no-search", 0o600),
                       ("write-only.txt", 0o200), ("nothing.bin", 0o000)):
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
