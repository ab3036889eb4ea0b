"""The unit tests' `cloud-init`: cloud-init's own command, forked from one process that imported it
(tests/cloud_init_forks.py), first on PATH for every unit test and the `vmgen` processes they
start. A test that asks for `real_cloud_init` runs the installed console script itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import cloud_init_forks


@pytest.fixture(scope="session")
def cloud_init_shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    with cloud_init_forks.serving(tmp_path_factory.mktemp("cloud-init")) as shim:
        yield shim


@pytest.fixture(autouse=True)
def forked_cloud_init(cloud_init_shim: Path | None, monkeypatch: pytest.MonkeyPatch) -> str:
    """PATH as it was (for `real_cloud_init`); the shim's folder goes before it for the test."""
    path = os.environ.get("PATH", os.defpath)
    if cloud_init_shim is not None:
        monkeypatch.setenv("PATH", f"{cloud_init_shim}{os.pathsep}{path}")
    return path


@pytest.fixture
def real_cloud_init(forked_cloud_init: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", forked_cloud_init)
