"""The user's quickstart, run as a user would with a home of its own: it prints its steps and
names the log that holds what they printed, installs vmgen for a user (`python -m build`, then
pipx: its own virtualenv on the PATH, no test extra), keeps the clone out of the user's settings,
and ends with a workspace that runs the build it installed."""

from __future__ import annotations

import os
import subprocess

from .conftest import AGENT_VERSION, API_KEY, ROOT, make_home, make_repo, unique

NAME = unique("quick")
# What the machine's package index and proxy need, passed on as a user's shell would have it.
PASSED_ON = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def test_the_quickstart_sets_up_a_user_and_launches(tmp_path, vm_image, model, cli) -> None:
    home = make_home(tmp_path)
    repo = make_repo(tmp_path, NAME)
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith(PASSED_ON)},
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # The launch uses this run's baked image: the environment wins over the settings file
        # the quickstart writes, which is what is checked below.
        "VMGEN_DOCKER_IMAGE": vm_image,
        "VMGEN_AGENT_VERSION": AGENT_VERSION,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": f"http://host.docker.internal:{model.port}",
    }
    vmgen = home / ".local/bin/vmgen"
    try:
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/quickstart.sh"), str(repo)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        shown = result.stdout + result.stderr
        assert result.returncode == 0, shown
        # Its steps and the launch's phases; what apt, debootstrap and pip print is in the log.
        log = home / ".local/state/vmgen/quickstart.log"
        assert str(log) in shown and log.stat().st_size > 0
        assert len(shown.splitlines()) <= 45, shown
        assert f"ready: {NAME}" in shown
        config = (home / ".config/vmgen/config.toml").read_text()
        assert str(ROOT) not in config  # the clone can move or go
        assert "docker_image" in config and "vmgen_find_links" not in config  # no wheel folder: SSH
        assert "docker_image" in shown and "no registry needed" in shown  # said, and why
        venv = next((home / ".local").rglob("pipx/venvs/vmgen"))  # pipx's own venv for vmgen
        installed = subprocess.run(
            [str(venv / "bin/python"), "-m", "pip", "list"], capture_output=True, text=True, check=True
        ).stdout
        assert "vmgen" in installed and "pytest" not in installed and "moto" not in installed
        assert "editable" not in installed.lower()
        # The same code as this tree: the workspace runs the build the quickstart installed.
        version = subprocess.run([str(vmgen), "--version"], env=env, capture_output=True, text=True).stdout
        assert version == cli("--version").stdout
        assert (
            subprocess.run(
                [str(vmgen), "ssh", NAME, "--", "vmgen --version"], env=env, cwd=home, capture_output=True, text=True
            ).stdout
            == version
        )
    finally:
        if vmgen.exists():
            subprocess.run([str(vmgen), "destroy", NAME, "--yes"], env=env, cwd=home, capture_output=True, timeout=300)
