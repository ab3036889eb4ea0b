"""The ssh provider end to end: one workspace on "a server of the user's", launched with
`--provider ssh --host user@server:port`, through a real sshd of the test's own in front of this
machine's Docker engine (tests/ssh_server.py: the same engine, reached over SSH as the Docker SDK
reaches a server's at ssh://). Launch from a local folder (uploaded, as on a cloud) -> ready with
the agent working -> list and status -> stop -> start (files kept, the conversation resumed) ->
destroy, and afterwards nothing of it left on the engine. Later commands find the server by the
workspace's record: no ssh_host is configured."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import eventually
from tests.ssh_server import Server, ssh_server
from vmgen.contract.names import WS_LABEL

from .conftest import make_repo, unique

NAME = unique("sshhost")


@pytest.fixture(scope="module")
def server(cli, tmp_path_factory) -> Iterator[Server]:
    with ssh_server(tmp_path_factory.mktemp("server")) as started:
        cli.env["PATH"] = started.path(os.environ["PATH"])
        yield started


@pytest.fixture(scope="module")
def launched(cli, model, server, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("repos"), NAME)
    model.script = Script(
        rules=[
            Rule(
                trigger="HELLO.md",
                tool=ToolUse(
                    "Write",
                    {"file_path": f"/home/agent/work/{NAME}/HELLO.md", "content": "hello over ssh\n"},
                ),
                after_tool_text="I created HELLO.md.",
            )
        ]
    )
    result = cli("launch", str(repo), "--provider", "ssh", "--host", server.host)
    yield result
    cli("destroy", NAME, "--yes", check=False)


def row(cli) -> list[str]:
    # The ssh provider's rows: the server here is this machine's own engine, so the local docker
    # provider (the default) lists the same container too.
    listing = cli("list", "--provider", "ssh").stdout
    return next(line.split() for line in listing.splitlines() if line.split()[:1] == [NAME])


def test_launch_is_ready_on_the_server_and_the_agent_works(cli, launched, model, server, docker_client) -> None:
    assert f"ready: {NAME} on ssh" in launched.stderr
    # Published on the server's addresses, reached at the server's name (not this machine's loopback).
    container = docker_client.containers.get(f"vmgen-{NAME}")
    binding = container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]
    assert binding["HostIp"] == "0.0.0.0"
    reach = json.loads((cli.home / ".local/state/vmgen/workspaces" / NAME / "ssh.json").read_text())
    assert (reach["host"], reach["port"]) == (server.address, int(binding["HostPort"]))
    # The local folder was uploaded over SSH (the server cannot see this machine's folders).
    assert "README.md" in cli.ssh(NAME, f"ls work/{NAME}").split()
    cli("send", NAME, "please add a HELLO.md")
    model.wait_for("please add a HELLO.md", timeout=60)
    eventually(
        lambda: cli.ssh(NAME, f"cat work/{NAME}/HELLO.md", check=False) == "hello over ssh\n",
        timeout=90,
        what="HELLO.md written by the agent",
    )


def test_list_and_status_find_it_through_the_server(cli, launched, server) -> None:
    listed = row(cli)
    assert listed[1:3] == ["ssh", "running"] and listed[3].startswith(f"{server.address}:")
    state = json.loads(cli("status", NAME, "--json").stdout)
    # The watchdog on the workspace answers over the server's route, and sees the agent there.
    assert state["agent"]["state"] != "absent" and state["verdict"]["condition"] in ("working", "idle")


def test_stop_keeps_the_disk_and_start_resumes(cli, launched) -> None:
    stopped = cli("stop", NAME)
    assert "stopped" in stopped.stderr
    assert row(cli)[2] == "stopped"
    cli("start", NAME)
    assert cli.ssh(NAME, f"cat work/{NAME}/HELLO.md") == "hello over ssh\n"
    eventually(
        lambda: "claude --resume " in cli.ssh(NAME, "ps -o args= -u agent", check=False),
        timeout=90,
        what="the agent resumed with its conversation",
    )


def test_destroy_leaves_nothing_of_it_on_the_engine(cli, launched, docker_client) -> None:
    cli("destroy", NAME, "--yes")
    mine = {"label": f"{WS_LABEL}={NAME}"}
    assert docker_client.containers.list(all=True, filters=mine) == []
    assert docker_client.volumes.list(filters=mine) == []
    assert not (cli.home / ".local/state/vmgen/workspaces" / NAME).exists()
    assert NAME not in cli("list").stdout
