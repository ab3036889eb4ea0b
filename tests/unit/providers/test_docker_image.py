"""The docker provider's image: built from the shipped Dockerfile when missing, and a clear line
when that cannot work (this machine reaches no container registry, like many CI machines)."""

import secrets
import subprocess
import sys
from pathlib import Path

from vmgen.laptop.providers.docker_engine import SHIPPED_IMAGE


def test_the_dockerfile_is_shipped_in_the_package():
    from importlib import resources

    text = resources.files("vmgen.images").joinpath("ubuntu2404.Dockerfile").read_text()
    assert text.startswith("#") and "FROM ubuntu:24.04" in text and "cloud-init" in text
    assert SHIPPED_IMAGE == "vmgen-ubuntu:24.04"


def test_unknown_image_is_one_clear_line(home: Path):
    (home / "repo").mkdir()
    src = Path(__file__).resolve().parents[3] / "src"
    # A name of its own: on a shared engine a workspace named "repo" may exist.
    name = f"image-{secrets.token_hex(3)}"
    result = subprocess.run(
        [sys.executable, "-m", "vmgen", "launch", str(home / "repo"), "--name", name],
        cwd=home,
        env={
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(src),
            "VMGEN_DOCKER_IMAGE": "vmgen-no-such-image:1",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "docker image 'vmgen-no-such-image:1' not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / f".local/state/vmgen/workspaces/{name}").exists()
