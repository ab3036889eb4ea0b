"""A dev container's `forwardPorts` and `appPort`: read and checked on the laptop with the rest of
its policy (a value vmgen cannot read is one line before anything is made), published on the VM's
127.0.0.1 by the agent's own Podman (the engine the CLI runs adds `-p 127.0.0.1:P:P` to the one
run that makes the container), joined to the preview ports, recorded with the workspace and
forwarded by `vmgen forward NAME` without ports. The booted path is tests/e2e/test_devcontainer.py."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.builder.test_render import files_of, make_spec, render
from tests.unit.cli.test_cli import one_error_line, vmgen
from tests.unit.test_devcontainer_launch import UP, repository
from tests.unit.test_launch import ScriptedClient, provider, run_launch, spec_for  # noqa: F401 - the fixture
from vmgen.contract.devcontainer import UP_PHASE, PortError, PortRequests, requested_ports
from vmgen.contract.names import VM
from vmgen.errors import UsageError
from vmgen.laptop.forwards import PortPair, ports_to_forward
from vmgen.laptop.spec import DevcontainerSpec, LocalSource
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState

WRAPPER = str(VM.program("devcontainer-podman"))
LABEL = "devcontainer.local_folder=/home/agent/work/app"


def test_forward_ports_are_numbers_and_local_hosts_and_a_compose_service_is_left_out_with_a_note() -> None:
    asked = requested_ports({"forwardPorts": [3000, "localhost:5173", "127.0.0.1:8000", "db:5432", "9000"]})
    assert asked.ports == asked.publish == (3000, 5173, 8000, 9000)
    assert asked.notes == ('forwardPorts[3] "db:5432" is a port of the compose service db: left out',)
    assert requested_ports({"image": "x"}) == PortRequests()


def test_app_port_is_its_container_port_and_the_cli_publishes_its_own() -> None:
    """The CLI publishes appPort itself (`-p 127.0.0.1:N:N` for a number, the string as written):
    vmgen publishes only what it does not, and never twice on one VM port."""
    assert requested_ports({"appPort": 3000}) == PortRequests(ports=(3000,), publish=())
    assert requested_ports({"appPort": "8080:3000"}) == PortRequests(ports=(3000,), publish=(3000,))
    asked = requested_ports({"forwardPorts": [4000, 3000], "appPort": [3000, "127.0.0.1:5000:5000", "6000", 4000]})
    assert asked.ports == (4000, 3000, 5000, 6000) and asked.publish == (6000,)
    # forwardPorts' 8080 is the VM port appPort gives the container's 3000: not published again.
    taken = requested_ports({"forwardPorts": [8080], "appPort": "8080:3000"})
    assert taken.ports == (3000,) and taken.publish == (3000,)
    assert taken.notes == (
        "forwardPorts[0] 8080: left out (appPort publishes the VM's port 8080 for the container's 3000)",
    )


def test_ports_rootless_podman_cannot_bind_and_vmgens_own_are_left_out_with_a_note() -> None:
    asked = requested_ports({"forwardPorts": [80, 3001, 3000, 3000]})
    assert asked.ports == (3000,)
    assert asked.notes == (
        "forwardPorts[0] 80: left out (below 1024, which the agent's rootless Podman cannot bind on the VM)",
        "forwardPorts[1] 3001: left out (one of vmgen's own ports on the VM)",
    )


@pytest.mark.parametrize(
    ("config", "line"),
    [
        ({"forwardPorts": [0]}, "forwardPorts[0] 0: ports are 1-65535"),
        ({"forwardPorts": [3000, 70000]}, "forwardPorts[1] 70000: ports are 1-65535"),
        ({"forwardPorts": ["localhost:99999"]}, 'forwardPorts[0] "localhost:99999": ports are 1-65535'),
        ({"forwardPorts": 3000}, "forwardPorts must be a list of ports, not 3000"),
        ({"forwardPorts": [True]}, 'forwardPorts[0] true: use a port number or "localhost:PORT"'),
        ({"forwardPorts": ["a b"]}, 'forwardPorts[0] "a b": use a port number or "localhost:PORT"'),
        ({"appPort": "3000-3005"}, 'appPort "3000-3005": use a port number, "HOST:CONTAINER" or a list of those'),
        ({"appPort": ["8080:0"]}, 'appPort[0] "8080:0": ports are 1-65535'),
        ({"appPort": [{"port": 1}]}, 'appPort[0] {"port": 1}: use a port number'),
        ({"appPort": "53:53/udp"}, 'appPort "53:53/udp": use a port number'),
    ],
)
def test_a_value_vmgen_cannot_read_is_one_line_naming_the_field(config: dict, line: str) -> None:
    with pytest.raises(PortError) as raised:
        requested_ports(config)
    assert str(raised.value).startswith(line), raised.value


def test_a_bad_port_is_one_error_line_before_anything_is_made(home: Path) -> None:
    repo = repository(home, '{"image": "localhost/base", "forwardPorts": [3000, "localhost:0"]}')
    result = vmgen(home, "launch", str(repo), "--provider", "hetzner", HCLOUD_TOKEN="test-token")
    assert result.returncode == 2
    assert one_error_line(result) == (
        'error: .devcontainer/devcontainer.json: forwardPorts[1] "localhost:0": ports are 1-65535'
    )
    assert not (home / ".local" / "state" / "vmgen").exists()


def test_the_ports_join_the_previews_and_a_compose_form_is_a_note_in_the_launch_output(home: Path) -> None:
    repo = repository(home, '{"image": "localhost/base", "forwardPorts": [3000, 4321, "db:5432"], "appPort": 7777}')
    result = vmgen(
        home,
        "render",
        str(repo),
        "--provider",
        "hetzner",
        "--domain",
        "dev.example.com",
        VMGEN_PREVIEW_PORTS="3000,8000",
        CLOUDFLARE_API_TOKEN="test-token",
    )
    assert result.returncode == 0, result.stderr
    assert 'note: .devcontainer/devcontainer.json: forwardPorts[2] "db:5432" is a port of the compose service db' in (
        result.stderr
    )
    files = files_of(result.stdout)
    caddyfile = files["/etc/vmgen/Caddyfile"]["content"]
    for port in (3000, 8000, 4321, 7777):  # the configured previews kept, the container's added
        assert f"p{port}.app.dev.example.com {{" in caddyfile, caddyfile
    assert "p5432." not in caddyfile
    # The CLI publishes appPort's 7777 itself; vmgen's engine publishes forwardPorts'.
    up = files[UP]["content"]
    assert f"engine={WRAPPER}\n" in up and 'devcontainer up --docker-path "$engine"' in up
    assert "-p 127.0.0.1:3000:3000 -p 127.0.0.1:4321:4321 " in files[WRAPPER]["content"]
    assert "7777" not in files[WRAPPER]["content"]


def test_without_ports_the_cli_runs_podman_itself() -> None:
    spec = make_spec(
        source=LocalSource(Path("/src/app")), devcontainer=DevcontainerSpec(".devcontainer/devcontainer.json")
    )
    files = files_of(render(spec))
    assert WRAPPER not in files
    assert "engine=podman\n" in files[UP]["content"]


@pytest.mark.parametrize("engine", ["podman", WRAPPER])
def test_the_launch_phases_are_read_from_the_log_whichever_engine_the_cli_runs(engine: str) -> None:
    """The up program's own reading of the CLI's log (its `phases` function, run by bash): the
    log names the engine as the CLI was given it, podman or vmgen's wrapper."""
    publish = (3000,) if engine == WRAPPER else ()
    devcontainer = DevcontainerSpec(".devcontainer/devcontainer.json", forward_ports=publish, publish_ports=publish)
    up = files_of(render(make_spec(source=LocalSource(Path("/src/app")), devcontainer=devcontainer)))[UP]["content"]
    engine_line = next(line for line in up.splitlines() if line.startswith("engine="))
    functions = up[up.index("say() {") : up.index('say "bringing')]
    log = "".join(
        f"[2025-01-01T00:00:00.000Z] {line}\r\n"
        for line in (
            f"Start: Run: {engine} build -f /tmp/Dockerfile -t vsc-app .",
            f"Start: Run: {engine} build -f /tmp/updateUID.Dockerfile -t vsc-app-uid .",
            f"Start: Run: {engine} run --sig-proxy=false -a STDOUT",
            "Running the postCreateCommand from devcontainer.json...",
        )
    )
    said = subprocess.run(
        ["bash", "-c", f"shopt -s extglob\n{engine_line}\n{functions}\nphases"],
        input=log,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line.removeprefix(UP_PHASE) for line in said] == [
        "building the image",
        "updating the remote user's uid",
        "starting the container",
        "running postCreateCommand",
    ]


def fake_podman(tmp_path: Path) -> dict[str, str]:
    """A podman that prints its arguments, one a line, first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    podman = folder / "podman"
    podman.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    podman.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_the_engine_publishes_the_ports_on_the_vms_loopback_for_the_containers_run_only(tmp_path: Path) -> None:
    """The wrapper as the agent's CLI runs it: the run labelled with this repository gets the
    ports before its own arguments; any other podman command, or another folder's run, is podman's."""
    spec = make_spec(
        source=LocalSource(Path("/src/app")),
        devcontainer=DevcontainerSpec(
            ".devcontainer/devcontainer.json", forward_ports=(3000, 7777), publish_ports=(3000,)
        ),
    )
    wrapper = tmp_path / "devcontainer-podman"
    wrapper.write_text(files_of(render(spec))[WRAPPER]["content"])
    env = fake_podman(tmp_path)

    def run(*args: str) -> list[str]:
        done = subprocess.run(["bash", str(wrapper), *args], env=env, capture_output=True, text=True, check=True)
        return done.stdout.splitlines()

    the_run = ["run", "--sig-proxy=false", "-l", LABEL, "-l", "devcontainer.config_file=x", "image", "-c", "a b"]
    assert run(*the_run) == ["run", "-p", "127.0.0.1:3000:3000", *the_run[1:]]
    assert run("run", "-l", "devcontainer.local_folder=/home/agent/other", "image") == [
        "run",
        "-l",
        "devcontainer.local_folder=/home/agent/other",
        "image",
    ]
    assert run("exec", "-l", LABEL) == ["exec", "-l", LABEL]
    assert run("-v") == ["-v"]  # how the CLI tells podman from docker


def test_the_launch_records_the_ports_and_an_older_record_has_none(home: Path, provider) -> None:  # noqa: F811
    devcontainer = DevcontainerSpec(
        ".devcontainer/devcontainer.json", forward_ports=(3000, 4321), publish_ports=(3000,)
    )
    spec = replace(spec_for(home), devcontainer=devcontainer)
    run_launch(spec, provider, ScriptedClient())
    state = WorkspaceState("app")
    record = state.record()
    assert record is not None and record.forward_ports == (3000, 4321)
    older = json.loads((state.dir / "workspace.json").read_text())
    del older["forward_ports"]
    state.write("workspace.json", json.dumps(older))
    assert state.record() == WorkspaceRecord(**{**older, "forward_ports": ()})


def test_forward_without_ports_forwards_the_recorded_ones_and_without_any_is_a_usage_error() -> None:
    assert ports_to_forward([], (3000, 4321)) == (PortPair(3000, 3000), PortPair(4321, 4321))
    assert ports_to_forward(["5000:3000"], (3000, 4321)) == (PortPair(5000, 3000),)
    with pytest.raises(UsageError, match="name at least one port to forward"):
        ports_to_forward([], ())


def test_forward_of_a_workspace_without_ports_is_the_usage_error_it_was(home: Path) -> None:
    result = vmgen(home, "forward", "nothing-here")
    assert result.returncode == 2
    assert "name at least one port to forward" in one_error_line(result)
