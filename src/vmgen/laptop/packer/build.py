"""Write the Packer build directory and run `packer init` / `packer build` when Packer is here."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ...errors import PackerFailed, PackerMissing
from ...selfwheel import VmgenWheel
from .template import BAKE_SCRIPT, SnapshotBuild, render_template

TEMPLATE = "vmgen.pkr.hcl"
INSTALL_HINT = (
    "https://developer.hashicorp.com/packer/install (or `apt install packer` from HashiCorp's apt repository)"
)


def write_build_dir(directory: Path, build: SnapshotBuild, bake_script: str, wheel: VmgenWheel) -> Path:
    """The template, the bake script and the vmgen wheel Packer uploads before running it."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("vmgen-*.whl"):
        stale.unlink()
    (directory / wheel.filename).write_bytes(wheel.content)
    (directory / TEMPLATE).write_text(render_template(build, wheel.relative_path))
    script = directory / BAKE_SCRIPT
    script.write_text(bake_script)
    script.chmod(0o755)
    return directory / TEMPLATE


def build_with_packer(directory: Path, token: str, progress: Callable[[str], None]) -> None:
    packer = shutil.which("packer")
    if packer is None:
        raise PackerMissing(
            f"packer is not installed; the template is in {directory}. Install Packer from "
            f"{INSTALL_HINT}, then run `vmgen image build --provider hetzner` again"
        )
    # The token reaches Packer through its environment only, never its argv or the template.
    env = {**os.environ, "HCLOUD_TOKEN": token}
    for argv in ([packer, "init", "."], [packer, "build", "-color=false", "."]):
        progress(" ".join(["packer", *argv[1:]]))
        with subprocess.Popen(
            argv, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            tail: list[str] = []
            for line in proc.stdout:
                tail = [*tail, line.rstrip()][-15:]
                progress(line.rstrip()[-120:])
        if proc.returncode != 0:
            raise PackerFailed(f"`packer {argv[1]}` failed ({proc.returncode}):\n" + "\n".join(tail))
