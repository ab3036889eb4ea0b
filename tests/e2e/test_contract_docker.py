"""The provider contract (provider_contract.py) on the docker provider: workspaces are simulated
VMs on this machine's engine, backups go to the local store (the defaults of a fresh install)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.containers import container_named, workspace_things

from .provider_contract import *
from .provider_contract import SECONDS_SCALE, ContractCloud, Refusal

REFUSALS = ("unknown size",)


@contextmanager
def server_type(cli) -> Iterator[list[str]]:
    yield ["--type", "cx33"]


@pytest.fixture(scope="module")
def cloud(cli, docker_client, vm_image) -> ContractCloud:
    cli.env.update({"VMGEN_PROVIDER": "docker", **SECONDS_SCALE})
    return ContractCloud(
        provider="docker",
        resources=lambda names: workspace_things(docker_client, names),
        take_name=lambda name: container_named(docker_client, vm_image, name),
        name_taken_says="which vmgen did not make, hold the name",
        refusals={"unknown size": Refusal(server_type, "docker workspaces have no size or type 'cx33'")},
    )
