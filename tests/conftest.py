"""Shared fixtures: an isolated HOME with an SSH key, so no test touches the user's files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


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
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "HCLOUD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(home)
    return home
