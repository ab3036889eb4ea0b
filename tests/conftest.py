"""Shared fixtures: an isolated HOME with an SSH key, so no test touches the user's files; and one
id per test run, shared by every xdist worker, that names and labels what the run creates on the
Docker engine, so that the run finds and removes only its own things."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

RUN_VARIABLE = "VMGEN_TEST_RUN"
RUN_LABEL = "vmgen-test-run"  # on every image a test run makes


# Picked when this file is imported: before tests/e2e/conftest.py reads it (conftests are imported
# before any pytest_configure runs) and before xdist starts its workers, which inherit it. Picked
# later, a run without workers labelled its images with one id and removed those of another.
os.environ.setdefault(RUN_VARIABLE, secrets.token_hex(2))


# The modules at the end of the longest chains (an image bake, a booted workspace, then minutes of
# seconds-scale timers) start first, one per worker, and the many short ones fill in after them.
# scripts/test.sh keeps this order (--no-loadscope-reorder): xdist's default puts the files with
# the most tests first, which started these last and made the suite wait on them at its end.
LONGEST_FIRST = (  # by the time a loaded run spent on each (a timeline of every phase per worker)
    "tests/e2e/test_web_access.py",
    "tests/e2e/test_baked_images.py",
    "tests/e2e/test_auto_bake.py",
    "tests/e2e/test_local_slice.py",
    "tests/e2e/test_attacks_docker.py",
    "tests/e2e/test_attacks_hetzner.py",
    "tests/e2e/test_web_attacks.py",
    "tests/e2e/test_watchdog_docker.py",
    "tests/e2e/test_contract_hetzner.py",  # the provider contract: five boots each, a chain of timers
    "tests/e2e/test_contract_ssh.py",
    "tests/e2e/test_contract_aws.py",
    "tests/e2e/test_contract_docker.py",
    "tests/e2e/test_devcontainer.py",  # a debootstrap base first on a fresh machine (~100 s)
    "tests/e2e/test_watchdog.py",
    "tests/e2e/test_sync_config.py",
    "tests/e2e/test_cli_truth.py",
    "tests/integration/test_watchdog_real_claude.py",
    "tests/integration/test_watchdog_real_aider.py",  # installs aider's own virtualenv first
    "tests/e2e/test_quickstart.py",
    "tests/e2e/test_packaging.py",
    "tests/e2e/test_launch_variants.py",
    "tests/e2e/test_backup_restore.py",
    "tests/e2e/test_node_runtime.py",  # npm resolving CloudCLI's tree: seconds to minutes, by the registry
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Once every worker is done, the run's own images go (a user's are never touched)."""
    if hasattr(session.config, "workerinput"):
        return
    try:
        import docker

        engine = docker.from_env()
        ours = engine.images.list(filters={"label": f"{RUN_LABEL}={os.environ[RUN_VARIABLE]}"})
        # Newest first: an image baked on another of the run's goes before its base.
        for image in sorted(ours, key=lambda image: image.attrs["Created"], reverse=True):
            engine.images.remove(str(image.id), force=True)
    except Exception as exc:  # noqa: BLE001 - a run without docker made no images; say so and go on
        print(f"\nvmgen tests: run images not removed: {exc}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tester@laptop", "-f", str(home / ".ssh" / "id_ed25519")],
        check=True,
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "HCLOUD_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(home)
    return home
