"""The CLI's own build as the wheel every VM installs: the same code makes the same bytes, pip
installs it, the installed copy names the same build, and root on the VM takes a delivered wheel
only when its sha256 is the rendered one, never through a link or by waiting on a FIFO."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import vmgen
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder.install import plan_for
from vmgen.laptop.builder.render import render_bake_script
from vmgen.laptop.spec import VmgenInstall
from vmgen.selfwheel import build_wheel, own_wheel

PACKAGE = Path(vmgen.__file__).parent


def test_the_same_code_makes_the_same_bytes_and_any_change_a_new_build(tmp_path: Path) -> None:
    assert build_wheel(PACKAGE, "0.1.0").sha256 == build_wheel(PACKAGE, "0.1.0").sha256
    copy = tmp_path / "vmgen"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert build_wheel(copy, "0.1.0").sha256 == build_wheel(PACKAGE, "0.1.0").sha256  # where it lies: no matter
    (copy / "marker.py").write_text("MARKER = 1\n")
    assert build_wheel(copy, "0.1.0").sha256 != build_wheel(PACKAGE, "0.1.0").sha256


def test_pip_installs_it_and_the_installed_copy_names_the_same_build(tmp_path: Path) -> None:
    wheel = own_wheel()
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.content)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(path)],
        check=True,
    )
    names = zipfile.ZipFile(path).namelist()
    assert "vmgen/vm-requirements.txt" in names and not any("__pycache__" in n for n in names)
    entry = (target / f"vmgen-{wheel.version}.dist-info" / "entry_points.txt").read_text()
    assert "vmgen = vmgen.vmside.main:main" in entry  # the VM's command, not the laptop's CLI
    rebuilt = subprocess.run(
        [sys.executable, "-c", "from vmgen.selfwheel import own_wheel; print(own_wheel().sha256)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert rebuilt.stdout.strip() == wheel.sha256


def test_every_dependency_in_the_vm_lock_is_hash_pinned() -> None:
    lock = (PACKAGE / "vm-requirements.txt").read_text()
    pins = re.findall(r"^([a-z0-9_.-]+)==([^\s;]+)", lock, re.MULTILINE | re.IGNORECASE)
    assert {name.lower() for name, _ in pins} >= {"click", "psutil", "pyrage", "zstandard", "boto3", "hcloud"}
    for block in re.split(r"\n(?=[a-z0-9])", lock.strip(), flags=re.IGNORECASE):
        if not block.startswith("#"):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    laptops_only = ("docker", "rich", "jinja2", "python-telegram-bot")
    assert not any(name.lower() in laptops_only for name, _ in pins)


# --- root on the VM receiving the wheel (the install step's own script) ------------------------


def receive_script() -> str:
    wheel = own_wheel()
    plan = plan_for(AGENTS["claude"], "2.1.332", VmgenInstall(version=wheel.version, wheel_sha256=wheel.sha256))
    script = render_bake_script(plan)
    return script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


def receive(tmp_path: Path, wait: float = 2) -> subprocess.CompletedProcess[str]:
    wheel = own_wheel()
    return subprocess.run(
        [
            sys.executable,
            "-",
            wheel.relative_path,
            wheel.sha256,
            str(tmp_path / "root"),
            str(tmp_path / "agent"),
            str(wait),
        ],
        input=receive_script(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "agent" / own_wheel().relative_path).parent.mkdir(parents=True)
    return tmp_path


def test_a_delivered_wheel_with_the_rendered_hash_is_taken(folders: Path) -> None:
    wheel = own_wheel()
    (folders / "agent" / wheel.relative_path).write_bytes(wheel.content)
    assert receive(folders).returncode == 0
    taken = (folders / "root" / wheel.relative_path).read_bytes()
    assert hashlib.sha256(taken).hexdigest() == wheel.sha256


def test_another_wheel_is_refused_and_a_stale_build_is_never_mistaken_for_this_one(folders: Path) -> None:
    stale = folders / "root" / "0123456789abcdef" / own_wheel().filename  # another build's, left behind
    stale.parent.mkdir()
    stale.write_bytes(b"an older vmgen")
    (folders / "agent" / own_wheel().relative_path).write_bytes(b"PK\x03\x04 something else")
    result = receive(folders)
    assert result.returncode == 1 and "is not the vmgen this VM was launched with" in result.stderr
    assert not (folders / "root" / own_wheel().relative_path).exists()


def test_a_link_a_fifo_or_nothing_is_never_taken_and_never_blocks(folders: Path) -> None:
    wheel = own_wheel()
    real = folders / "elsewhere.whl"
    real.write_bytes(wheel.content)  # even the right bytes, through a link, are not taken
    (folders / "agent" / wheel.relative_path).symlink_to(real)
    result = receive(folders, wait=1)
    assert result.returncode == 1 and "did not arrive within 1s" in result.stderr
    (folders / "agent" / wheel.relative_path).unlink()
    os.mkfifo(folders / "agent" / wheel.relative_path)
    result = receive(folders, wait=1)  # returns (nothing blocked on the FIFO)
    assert result.returncode == 1 and "is not the vmgen" in result.stderr
