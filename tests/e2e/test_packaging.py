"""vmgen as a user installs it: `python -m build` makes an sdist and a wheel, `pipx install` puts
the wheel in an environment of its own, and that `vmgen` launches on the simulated Hetzner cloud
(on docker, the quickstart's test launches from its own pipx install). The VM runs its build: the
installed CLI names the same build as this source tree (the same code makes the same wheel, however
it was installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.hetzner import FakeHetzner

from .conftest import ROOT, Cli, make_repo, unique

NAME = unique("packaged-h")


@pytest.fixture(scope="module")
def installed(tmp_path_factory, cli) -> Cli:
    """`vmgen` from a wheel built by `python -m build`, installed by pipx into its own venv."""
    work = tmp_path_factory.mktemp("packaging")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("vmgen-*.whl")
    assert list(dist.glob("vmgen-*.tar.gz")), "no sdist"
    pipx = {**os.environ, "PIPX_HOME": str(work / "pipx"), "PIPX_BIN_DIR": str(work / "bin")}
    subprocess.run([sys.executable, "-m", "pipx", "install", str(wheel)], env=pipx, check=True, capture_output=True)
    env = {key: value for key, value in cli.env.items() if key != "PYTHONPATH"}  # not this source tree
    env["PATH"] = f"{work / 'bin'}:{env['PATH']}"
    env["PIPX_BIN_DIR"] = pipx["PIPX_BIN_DIR"]
    return PipxCli(env=env, home=cli.home)


class PipxCli(Cli):
    def __call__(self, *args: str, check: bool = True, timeout: float = 900, input: str | None = None):
        result = subprocess.run(
            ["vmgen", *args], env=self.env, capture_output=True, text=True, timeout=timeout, input=input, cwd=self.home
        )
        if check and result.returncode != 0:
            raise AssertionError(f"vmgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


def test_the_installed_cli_is_its_own_install_and_the_same_build(installed: Cli, cli: Cli) -> None:
    found = shutil.which("vmgen", path=installed.env["PATH"])
    assert found is not None and Path(found).parent == Path(installed.env["PIPX_BIN_DIR"])
    assert installed("--version").stdout == cli("--version").stdout


def test_it_launches_on_the_simulated_hetzner_cloud(installed: Cli, vm_image: str, tmp_path: Path) -> None:
    with FakeHetzner(image=vm_image) as fake:
        cloud = PipxCli(
            env={
                **installed.env,
                "VMGEN_PROVIDER": "hetzner",
                "HCLOUD_TOKEN": fake.token,
                "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
                "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
            },
            home=installed.home,
        )
        cloud("launch", str(make_repo(tmp_path, NAME)))
        try:
            assert cloud.ssh(NAME, "vmgen --version") == installed("--version").stdout
        finally:
            cloud("destroy", NAME, "--yes", check=False)
