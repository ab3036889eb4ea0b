"""A repository's dev container wired into `vmgen launch` and `vmgen render`: found and checked on
the laptop before anything is made (a refusal is one line naming the field and the setting), the
engine and the CLI installed only for such a repository, the agent (never root) bringing it up and
running inside it, the launch's phases and its one error from what the VM's program prints. The
booted path is tests/e2e/test_devcontainer.py."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.unit.builder.test_render import check_schema, files_of, make_spec, render
from tests.unit.cli.test_cli import one_error_line, vmgen
from vmgen.contract.devcontainer import UP_ERROR, UP_PHASE, UP_TAIL
from vmgen.contract.names import VM
from vmgen.errors import DevcontainerFailed
from vmgen.laptop.builder.devcontainer import CLI_PACKAGE, CLI_VERSION, PACKAGES
from vmgen.laptop.builder.install import plan_of
from vmgen.laptop.builder.render import _devcontainer_context
from vmgen.laptop.devcontainer import UpFollower
from vmgen.laptop.providers.docker_engine import UNMASKED_SYSTEM_PATHS, systemd_run_options
from vmgen.laptop.spec import DevcontainerSpec, LocalSource

UP = str(VM.program("devcontainer-up"))
EXEC = str(VM.program("devcontainer-exec"))
RUN = str(VM.program("agent-run"))
SESSION = str(VM.program("agent-session"))
PROVISION = str(VM.program("provision.sh"))
FAILED = "postCreateCommand from devcontainer.json failed. Command failed: ./setup.sh"
HOSTILE = '{"image": "localhost/base", "runArgs": ["--pid=host"]}'


def repository(home: Path, config: str) -> Path:
    repo = home / "app"
    (repo / ".devcontainer").mkdir(parents=True)
    (repo / ".devcontainer" / "devcontainer.json").write_text(config)
    (repo / "README.md").write_text("# app\n")
    return repo


def test_a_hostile_devcontainer_is_refused_on_the_laptop_before_anything_is_made(home: Path) -> None:
    repo = repository(home, HOSTILE)
    result = vmgen(home, "launch", str(repo), "--provider", "hetzner", HCLOUD_TOKEN="test-token")
    assert result.returncode == 2
    line = one_error_line(result)
    assert '.devcontainer/devcontainer.json: runArgs[0] "--pid=host"' in line
    assert "devcontainer_allow_privileged = true" in line
    assert not (home / ".local" / "state" / "vmgen").exists()  # no record, no identity, no workspace


def test_the_setting_lets_it_through_and_says_what_it_allowed(home: Path) -> None:
    repo = repository(home, HOSTILE)
    result = vmgen(home, "render", str(repo), VMGEN_DEVCONTAINER_ALLOW_PRIVILEGED="true")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "--pid=host" in result.stderr
    info = json.loads(files_of(result.stdout)[str(VM.workspace_info)]["content"])
    assert info["devcontainer"] == ".devcontainer/devcontainer.json"
    assert info["devcontainer_allow_privileged"] is True


def test_no_devcontainer_opts_out_and_devcontainer_picks_one_of_several(home: Path) -> None:
    repo = repository(home, HOSTILE)
    plain = vmgen(home, "render", str(repo), "--no-devcontainer")
    assert plain.returncode == 0, plain.stderr
    assert UP not in files_of(plain.stdout)
    (repo / ".devcontainer" / "devcontainer.json").unlink()
    for flavour in ("python", "node"):
        (repo / ".devcontainer" / flavour).mkdir()
        (repo / ".devcontainer" / flavour / "devcontainer.json").write_text('{"image": "localhost/base"}')
    several = vmgen(home, "render", str(repo))
    assert several.returncode == 2 and "--devcontainer PATH" in one_error_line(several)
    chosen = vmgen(home, "render", str(repo), "--devcontainer", ".devcontainer/node/devcontainer.json")
    assert chosen.returncode == 0, chosen.stderr
    assert (
        "--config /home/agent/work/app/.devcontainer/node/devcontainer.json" in files_of(chosen.stdout)[UP]["content"]
    )


def test_a_broken_devcontainer_json_is_one_line_with_its_place(home: Path) -> None:
    repo = repository(home, '{"image": "x",\n  "runArgs": [}')
    result = vmgen(home, "render", str(repo))
    assert result.returncode == 2
    assert ".devcontainer/devcontainer.json: not valid JSON with comments" in one_error_line(result)


def test_an_agent_that_cannot_run_inside_is_refused_with_what_to_do(home: Path) -> None:
    repo = repository(home, '{"image": "localhost/base"}')
    result = vmgen(home, "render", str(repo), "--agent", "aider")
    assert result.returncode == 2 and "--no-devcontainer" in one_error_line(result)


def spec_with_devcontainer():
    return make_spec(
        source=LocalSource(Path("/src/app")), devcontainer=DevcontainerSpec(".devcontainer/devcontainer.json")
    )


def test_without_a_devcontainer_nothing_of_it_is_installed_or_run() -> None:
    spec = make_spec(source=LocalSource(Path("/src/app")))
    files = files_of(render(spec))
    assert UP not in files and EXEC not in files
    assert "podman" not in plan_of(spec).packages and plan_of(spec).devcontainer is None
    assert "devcontainer" not in files[RUN]["content"] and "devcontainer" not in files[PROVISION]["content"]
    assert not {"devices", "security_opt", UNMASKED_SYSTEM_PATHS} & set(systemd_run_options("1"))


def test_with_one_the_engine_and_the_pinned_cli_are_installed() -> None:
    spec = spec_with_devcontainer()
    user_data = render(spec)
    check_schema(user_data)
    plan = plan_of(spec)
    assert set(PACKAGES) <= set(plan.packages)
    assert plan.node is not None and plan.stamp.devcontainer
    provision = files_of(user_data)[PROVISION]["content"]
    assert f"npm install -g --no-fund --no-audit {CLI_PACKAGE}@{CLI_VERSION}" in provision
    assert "loginctl enable-linger agent" in provision
    assert "chmod 0666 /dev/net/tun" in provision


def test_the_agent_brings_it_up_and_runs_inside_it_root_runs_nothing_of_it() -> None:
    files = files_of(render(spec_with_devcontainer()))
    up = files[UP]["content"]
    assert "engine=podman\n" in up
    assert 'devcontainer up --docker-path "$engine" --workspace-folder /home/agent/work/app' in up
    assert 'if [ "$(id -u)" = 0 ]' in up  # refuses to run as root
    assert "type=bind,source=/home/agent,target=/home/agent" in up  # ~/.claude and the repository
    claude = "/usr/local/lib/node_modules/@anthropic-ai/claude-code"
    assert f"ln -sfn {claude}/bin/claude.exe {VM.container_bin}/claude" in up  # the agent's program inside
    # One command: every line of it continued (a blank line would end it early).
    command = up[up.index("devcontainer up ") : up.index("| phases")]
    assert all(line.endswith("\\") for line in command.splitlines()[:-1]), command
    # Root's provisioning never runs the CLI or the engine: the laptop's SSH (the agent) does.
    provision = files[PROVISION]["content"]
    assert UP not in provision and EXEC not in provision
    assert not re.search(r"^\s*(runuser .*)?(podman|devcontainer) ", provision, re.MULTILINE)
    run = files[RUN]["content"]
    assert f"{EXEC} claude --session-id" in run and f"{EXEC} claude --resume" in run
    assert f"{EXEC} bash -l" in run  # `vmgen connect` lands inside, also after the agent exits
    assert UP in files[SESSION]["content"]  # a stopped container starts again at boot, as the agent
    exec_program = files[EXEC]["content"]
    assert "devcontainer exec --docker-path podman" in exec_program
    assert "ANTHROPIC" not in exec_program  # credentials are read inside from the agent's file


def test_the_exec_program_loads_the_agents_variables_inside_without_a_command_line(tmp_path: Path) -> None:
    """The inner script as the container's shell runs it: HOME, PATH and the delivered file."""
    spec = spec_with_devcontainer()
    inner = str(_devcontainer_context(spec)["devcontainer_inner"])
    assert f"sh -c {shlex.quote(inner)} vmgen-exec" in files_of(render(spec))[EXEC]["content"]
    home = tmp_path / "home"
    env_file = home / ".config" / "vmgen" / "agent.env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("ANTHROPIC_API_KEY=test-token\n")
    inner = inner.replace(str(VM.home), str(home))
    shown = subprocess.run(
        ["sh", "-c", inner, "vmgen-exec", "xterm-test", "sh", "-c", 'echo "$HOME|$TERM|$ANTHROPIC_API_KEY|$PATH"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    home_seen, term, key, path = shown.split("|")
    assert (home_seen, term, key) == (str(home), "xterm-test", "test-token")
    assert path.startswith(f"{home}/.vmgen/container-bin:")


def test_the_simulated_vm_gets_what_rootless_podman_needs_only_with_one() -> None:
    options = systemd_run_options("1", nested_containers=True)
    assert options["devices"] == ["/dev/net/tun:/dev/net/tun:rwm"]
    assert "seccomp=unconfined" in options["security_opt"] and options[UNMASKED_SYSTEM_PATHS] is True
    assert options["cap_add"] == ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"]  # no more than without


def test_the_ups_phases_become_progress_and_a_failure_one_error_with_the_tail() -> None:
    said: list[str] = []
    follower = UpFollower(said.append)
    for line in (
        f"{UP_PHASE}building the image",
        "noise the laptop ignores",
        f"{UP_PHASE}running postCreateCommand",
        f"{UP_ERROR}{FAILED}",
        f"{UP_TAIL}installing the toolchain",
        f"{UP_TAIL}setup.sh: line 3: make: command not found",
    ):
        follower.line(line)
    assert said == ["dev container: building the image", "dev container: running postCreateCommand"]
    error = follower.failure(1)
    assert isinstance(error, DevcontainerFailed)
    first, *rest = str(error).splitlines()
    assert first == f"the dev container did not come up: {FAILED}"
    assert rest[-1] == "  setup.sh: line 3: make: command not found"
    assert "~/.vmgen/devcontainer.log" in rest[0]


@pytest.mark.parametrize("hostile", ['{"privileged": true}', '{"mounts": ["source=/,target=/host,type=bind"]}'])
def test_render_refuses_as_launch_does(home: Path, hostile: str) -> None:
    result = vmgen(home, "render", str(repository(home, hostile)))
    assert result.returncode == 2 and "devcontainer_allow_privileged" in one_error_line(result)
    assert not yaml.safe_load(result.stdout or "null")


def test_a_further_session_inside_is_the_workspaces_own_agent() -> None:
    """agent-run inside a dev container offers only its own agent (no other is installed in the
    container), and every way it starts or resumes one goes through devcontainer-exec."""
    run = files_of(render(spec_with_devcontainer()))[RUN]["content"]
    subprocess.run(["bash", "-n"], input=run, text=True, check=True)
    assert '--agent) case "${2:-}" in claude)' in run and "codex)" not in run
    starts = [line.strip() for line in run.splitlines() if re.match(r"\s+claude ", line.replace(EXEC + " ", ""))]
    assert starts and all(line.startswith(f"{EXEC} claude ") for line in starts), starts
    outside = files_of(render(make_spec(source=LocalSource(Path("/src/app")))))[RUN]["content"]
    assert "codex)" in outside and EXEC not in outside  # without one: every offered agent, on the VM


def hook_lines(program: Path, event: str, payload: str, events: Path) -> list[dict]:
    events.unlink(missing_ok=True)
    subprocess.run([str(program), event], input=payload, text=True, check=True)
    return [json.loads(line) for line in events.read_text().splitlines()]


PAYLOADS = [
    {"session_id": "1b2c-session", "transcript_path": "/home/agent/.claude/projects/-w/1b2c-session.jsonl"},
    {"session_id": "s", "transcript_path": "/t.jsonl", "hook_event_name": "Notification", "message": "Claude needs you"}
    | {"notification_type": "permission_prompt"},
    {"session_id": "s2", "transcript_path": "/t2.jsonl", "error": "rate_limit"}
    | {"tool_input": {"content": "x" * 50_000}},
    {"session_id": "../../etc", "transcript_path": 'a"b\\c', "notification_type": "x\ny"},
    {"session_id": "own", "transcript_path": "/t3.jsonl", "tool_input": {"session_id": "quoted", "error": "x"}},
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("event", ["PreToolUse", "Notification", "StopFailure"])
def test_the_hook_inside_writes_what_the_vms_hook_writes_with_sh_alone(
    tmp_path: Path, payload: dict, event: str
) -> None:
    """The hook bound over agent-event in the container (an image need not have Python): run by
    dash, with Claude Code's compact JSON, it records what the watchdog reads of the VM's hook
    (the event, the session, the transcript, the kind), or leaves a value out, never more."""
    from vmgen.contract.documents import HookEvent, parse_hook_event
    from vmgen.contract.names import VmPaths
    from vmgen.laptop.builder.render import agent_event_hook

    paths = VmPaths(home=tmp_path)
    spec = spec_with_devcontainer()
    inside = files_of(render(spec))[str(VM.program("agent-event-inside"))]["content"]
    inside = inside.replace(str(VM.hook_events), str(paths.hook_events))
    assert inside.startswith("#!/bin/sh\n")
    programs = {"vm": tmp_path / "agent-event", "inside": tmp_path / "agent-event-inside"}
    programs["vm"].write_text(agent_event_hook(paths))
    programs["inside"].write_text(inside.replace("#!/bin/sh", "#!/bin/dash", 1))
    for program in programs.values():
        program.chmod(0o755)
    compact = json.dumps(payload, separators=(",", ":"))
    now = time.time() + 5
    read: dict[str, HookEvent] = {}
    for where, program in programs.items():
        (line,) = hook_lines(program, event, compact, paths.hook_events)
        parsed = parse_hook_event(line, now)
        assert parsed is not None, line
        read[where] = parsed
    vm, inside_read = read["vm"], read["inside"]
    assert (inside_read.event, inside_read.session, inside_read.kind) == (vm.event, vm.session, vm.kind)
    # A transcript path with an escape in it is left out inside; the rest is the same.
    assert inside_read.transcript in (vm.transcript, "") and (inside_read.transcript or "\\" in compact)


def test_vmgens_hooks_are_bound_into_the_container_from_roots_files() -> None:
    up = files_of(render(spec_with_devcontainer()))[UP]["content"]
    managed = "/etc/claude-code/managed-settings.json"
    assert f"type=bind,source={managed},target={managed}" in up
    hook = f"type=bind,source={VM.program('agent-event-inside')},target={VM.program('agent-event')}"
    assert hook in up
