"""The provider contract (provider_contract.py) on the ssh provider: workspaces on "a server of the
user's", reached through a real sshd of the test's own in front of this machine's Docker engine
(tests/ssh_server.py: the same engine, over SSH, as the Docker SDK reaches a server's at ssh://),
configured as a user would (`ssh_host`); backups go to an S3 server (moto) on the server's address,
since the server cannot see this machine's folders. Besides the contract: the workspace's SSH is
published on the server's addresses and reached at the server's name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.containers import container_named, workspace_things
from tests.ssh_server import Server, ssh_server

from .conftest import Cli
from .provider_contract import *
from .provider_contract import SECONDS_SCALE, ContractCloud, Refusal, s3_backup_store

REFUSALS = ("refused login", "unknown size")


def published_on_the_server(server: Server, docker_client):
    def check(cli: Cli, name: str) -> None:
        binding = docker_client.containers.get(f"vmgen-{name}").attrs["NetworkSettings"]["Ports"]["22/tcp"][0]
        assert binding["HostIp"] == "0.0.0.0"
        reach = json.loads((cli.home / ".local/state/vmgen/workspaces" / name / "ssh.json").read_text())
        assert (reach["host"], reach["port"]) == (server.address, int(binding["HostPort"]))

    return check


def refusals(server: Server) -> dict[str, Refusal]:
    @contextmanager
    def args(*given: str) -> Iterator[list[str]]:
        yield list(given)

    stranger = f"nobody@{server.address}:{server.port}"
    return {
        "refused login": Refusal(lambda cli: args("--host", stranger), "refused the SSH login"),
        "unknown size": Refusal(lambda cli: args("--type", "cx33"), "ssh workspaces have no size or type 'cx33'"),
    }


@pytest.fixture(scope="module")
def cloud(cli, docker_client, vm_image, tmp_path_factory) -> Iterator[ContractCloud]:
    with (
        ssh_server(tmp_path_factory.mktemp("server")) as server,
        s3_backup_store(cli, server.address, tmp_path_factory.mktemp("s3")),
    ):
        cli.env.update(
            {
                "PATH": server.path(os.environ["PATH"]),
                "VMGEN_PROVIDER": "ssh",
                "VMGEN_SSH_HOST": server.host,
                **SECONDS_SCALE,
            }
        )
        yield ContractCloud(
            provider="ssh",
            resources=lambda names: workspace_things(docker_client, names),
            take_name=lambda name: container_named(docker_client, vm_image, name),
            name_taken_says="which vmgen did not make, hold the name",
            refusals=refusals(server),
            location=server.host,
            running_checks=published_on_the_server(server, docker_client),
        )
