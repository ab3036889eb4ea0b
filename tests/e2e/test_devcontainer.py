"""A repository with a dev container on one launched docker workspace, every part real: the
devcontainers CLI and rootless Podman on the VM, run by the agent. The repository's
devcontainer.json builds a Dockerfile on a Debian base that needs no registry (a debootstrap
tarball carried in the repository, imported by its own `initializeCommand`, which runs on the VM
as the agent); the launch says the CLI's phases and comes up with the agent's tmux session running
Claude Code inside the container, whose hooks the watchdog hears (working mid-turn, then
waiting); a further session runs inside too, one of another agent is refused. From inside, as
the agent: no metadata service (root reaches
the stand-in one), no engine socket of root's, and a second container asking for everything the
refusal policy refuses (privileged, the VM's /etc and /root, its processes) reads none of root's
files. A hostile devcontainer.json is refused on the laptop before anything is made."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from filelock import FileLock

from tests.fakes.anthropic_api import Rule, Script
from tests.polling import eventually, wait_until
from tests.ports import answers, free_port
from vmgen.laptop.devcontainer import UpFollower

from .conftest import unique

NAME = unique("devc")
HOSTILE = unique("devc-evil")
BASE_TAG = "localhost/vmgen-test-base:12"
IMAGE_MARK = "/etc/vmgen-test-image"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# A Debian base without a registry: made once per recipe on this machine (debootstrap, about
# 100 s), kept beside the other cached test images' recipes in /var/tmp.
BASE_RECIPE = f"debootstrap --variant=minbase bookworm {MIRROR}"
EXEC = "/usr/local/lib/vmgen/devcontainer-exec"
SLOW_TURN = "vmgen-devc-slow-turn"
SLOW_SECONDS = 40  # the scripted model's stall: the watchdog is asked while it lasts
FORWARD_PORT = free_port()
# A server for the image's Perl (a minbase Debian has no Python): one answer per request.
SERVER = """
my $server = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1)
  or die "listen: $!";
while (my $client = $server->accept) {
  while (defined(my $line = <$client>)) { last if $line =~ /^\\r?$/ }
  print $client "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nfrom-inside $ENV{VMGEN_TEST_ENV}\\n";
  close $client;
}
"""

DEVCONTAINER = {
    "name": "vmgen-test",
    # Runs on the VM as the agent before the build: the base comes with the repository.
    "initializeCommand": (
        f"podman image exists {BASE_TAG} || podman import -q '${{localWorkspaceFolder}}/base.tar' {BASE_TAG}"
    ),
    "build": {"dockerfile": "Dockerfile"},
    "containerEnv": {"VMGEN_TEST_ENV": "from-containerEnv"},
    "postCreateCommand": "echo created > /tmp/postcreate-marker",
    "remoteUser": "dev",
    # Published on the VM's 127.0.0.1 by the agent's Podman; `vmgen forward NAME` forwards it
    # here at the same port, so one free on this machine (3000 may be another test's).
    "forwardPorts": [FORWARD_PORT],
}
DOCKERFILE = f"""FROM {BASE_TAG}
RUN useradd -m -u 1000 -s /bin/bash dev && echo from-the-image > {IMAGE_MARK}
"""
# Everything the refusal policy names; brought up by the agent itself on the VM (the agent may run
# its own engine as it likes: the refusal is a clear answer, the boundary is the agent's uid).
EVERYTHING = {
    "image": BASE_TAG,
    "privileged": True,
    "capAdd": ["SYS_ADMIN"],
    # The VM's processes and network (rootless Podman cannot mount a sysfs for --pid=host alone).
    "runArgs": ["--pid=host", "--network=host"],
    "mounts": ["source=/root,target=/host-root,type=bind", "source=/etc,target=/host-etc,type=bind"],
}


def base_tarball() -> Path:
    digest = hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:12]
    tarball = Path(f"/var/tmp/vmgen-test-devcontainer-base-{digest}.tar")
    with FileLock(f"{tarball}.lock"):
        if not tarball.exists():
            root = Path(f"{tarball}.root")
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR], check=True, capture_output=True
            )
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            subprocess.run(["tar", "-C", str(root), "-cf", f"{tarball}.tmp", "."], check=True)
            os.replace(f"{tarball}.tmp", tarball)
            shutil.rmtree(root, ignore_errors=True)
    return tarball


def make_repository(parent: Path, name: str, config: dict, tarball: Path | None = None) -> Path:
    repo = parent / name
    (repo / ".devcontainer").mkdir(parents=True)
    (repo / "README.md").write_text(f"# {name}\n")
    (repo / ".devcontainer" / "devcontainer.json").write_text("// a dev container\n" + json.dumps(config, indent=2))
    (repo / ".devcontainer" / "Dockerfile").write_text(DOCKERFILE)
    if tarball is not None:
        shutil.copy(tarball, repo / "base.tar")
    return repo


@pytest.fixture(scope="module")
def launched(cli, tmp_path_factory):
    repos = tmp_path_factory.mktemp("repos")
    repo = make_repository(repos, NAME, DEVCONTAINER, base_tarball())
    started = time.monotonic()
    result = cli("launch", str(repo))
    print(f"\ndevcontainer launch: {time.monotonic() - started:.1f} s")
    yield result
    cli("destroy", NAME, "--yes", check=False)


def root(docker_client, command: str) -> tuple[int, str]:
    """Root on the simulated VM (the engine's exec), as a VM's console would be."""
    result = docker_client.containers.get(f"vmgen-{NAME}").exec_run(["bash", "-c", command])
    return result.exit_code, result.output.decode(errors="replace")


def inside(cli, script: str) -> str:
    """`script` in the workspace's dev container, as the agent's pane runs its agent."""
    return cli.ssh(NAME, f"{EXEC} bash -c {shlex.quote(script)}")


def test_the_launch_said_the_clis_phases_and_the_agent_runs_inside(cli, launched) -> None:
    said = launched.stderr
    for phase in ("dev container: building the image", "dev container: running postCreateCommand"):
        assert phase in said, said
    # The agent's own process (Claude Code, started by its tmux pane) sees the image's files and
    # what postCreateCommand left: it runs in the container, as the agent's uid on the VM.
    script = (
        "pid=$(pgrep -u agent -f '^claude ' | head -n1);"
        f' [ -n "$pid" ] && cat /proc/$pid/root{IMAGE_MARK} /proc/$pid/root/tmp/postcreate-marker'
    )
    seen = wait_until(lambda: cli.ssh(NAME, script, check=False), lambda text: "from-the-image" in text, 60, 1)
    if seen.split() != ["from-the-image", "created"]:
        screen = cli.ssh(NAME, "ps -u agent -o pid,args | cut -c1-150; tmux capture-pane -p -t claude", check=False)
        raise AssertionError(f"{seen!r}\n{screen}")
    # The session's shell is inside too: the container's user, its env, the repository at the
    # VM's path, the agent's ~/.claude (the conversation stays on the VM and in its backups).
    shown = inside(cli, 'echo "$(id -un) $VMGEN_TEST_ENV $PWD"; ls -d ~/.claude')
    assert shown.split() == ["dev", "from-containerEnv", f"/home/agent/work/{NAME}", "/home/agent/.claude"]


def agent_state(cli) -> dict:
    return json.loads(cli("status", NAME, "--json").stdout)["agent"]


def test_the_watchdog_hears_the_agent_inside_working_then_waiting(cli, launched, model) -> None:
    """vmgen's hooks fire inside the container (root's managed settings and a hook any image can
    run, bound in): while the scripted model stalls a turn the watchdog says working, after the
    turn waiting, and the hook's lines for that turn name the session."""
    model.script = Script(rules=[Rule(SLOW_TURN, text="The slow answer from inside.", delay=SLOW_SECONDS)])
    before = len(cli.ssh(NAME, "cat ~/.vmgen/agent-events.jsonl 2>/dev/null", check=False).splitlines())
    cli("send", NAME, f"take your time, {SLOW_TURN}")
    model.wait_for(SLOW_TURN, timeout=60)
    mid_turn = wait_until(lambda: agent_state(cli), lambda a: a["state"] == "working", timeout=20, every=2)
    written = cli.ssh(NAME, "cat ~/.vmgen/agent-events.jsonl 2>/dev/null", check=False)
    events = [json.loads(line) for line in written.splitlines()[before:]]
    assert mid_turn["state"] == "working", (mid_turn, events)
    prompted = [e for e in events if e["event"] == "UserPromptSubmit"]
    assert prompted and prompted[-1].get("session"), events
    eventually(
        lambda: "slow answer from inside" in cli.ssh(NAME, "tmux capture-pane -p -t claude"),
        timeout=SLOW_SECONDS + 60,
        what="the slow answer on the agent's screen",
    )
    after = wait_until(lambda: agent_state(cli), lambda a: a["state"] == "waiting", timeout=30, every=2)
    assert after["state"] == "waiting", after
    last = json.loads(cli.ssh(NAME, "tail -n 1 ~/.vmgen/agent-events.jsonl"))
    assert last["event"] == "Stop" and last.get("session") == prompted[-1]["session"], last


def test_a_further_session_runs_inside_and_another_agent_is_refused(cli, launched) -> None:
    refused = cli("session", "new", NAME, "--name", "cx", "--agent", "codex", check=False)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "runs claude inside its dev container" in lines[0] and "codex is refused" in lines[0], lines
    cli("session", "new", NAME, "--name", "two")
    # Every Claude Code process, the first session's and the new one's, sees the image's file.
    script = f"for pid in $(pgrep -u agent -f '^claude '); do echo $pid $(cat /proc/$pid/root{IMAGE_MARK}); done"
    seen = wait_until(lambda: cli.ssh(NAME, script, check=False).splitlines(), lambda found: len(found) >= 2, 60, 1)
    assert len(seen) == 2 and all(line.endswith(" from-the-image") for line in seen), seen
    assert "two" in cli.ssh(NAME, "tmux list-windows -t claude -F '#{window_name}'").split()


def get(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.read().decode()
    except OSError as error:
        return f"unreachable: {error}"


def test_a_server_inside_on_a_forward_port_is_reached_from_here_with_vmgen_forward(cli, launched) -> None:
    """forwardPorts' port, published on the VM's 127.0.0.1 only: a server the agent starts inside
    answers on the VM as one on the VM would, and `vmgen forward -d NAME` (no ports) brings it here."""
    inside(
        cli,
        f"setsid perl -MIO::Socket::INET -e {shlex.quote(SERVER)} {FORWARD_PORT}"
        " </dev/null >/tmp/forward-server.log 2>&1 &",
    )
    on_vm = f"curl -s -m 5 http://127.0.0.1:{FORWARD_PORT}/"
    answer = wait_until(lambda: cli.ssh(NAME, on_vm, check=False), lambda text: "from-inside" in text, 30, 1)
    assert answer.strip() == "from-inside from-containerEnv", answer
    listening = cli.ssh(NAME, f"ss -Htln 'sport = :{FORWARD_PORT}'")
    assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{FORWARD_PORT}"], listening
    started = cli("forward", "-d", NAME)
    try:
        assert f"forwarding localhost:{FORWARD_PORT} -> {NAME}:{FORWARD_PORT} in the background" in started.stderr
        assert get(FORWARD_PORT).strip() == "from-inside from-containerEnv"
    finally:
        stopped = cli("forward", "--stop", NAME)
    assert f"stopped localhost:{FORWARD_PORT} -> {NAME}:{FORWARD_PORT}" in stopped.stderr, stopped.stderr
    assert not answers(FORWARD_PORT)


def test_a_hostile_devcontainer_is_refused_before_anything_is_made(cli, tmp_path) -> None:
    repo = make_repository(tmp_path, HOSTILE, EVERYTHING)
    refused = cli("launch", str(repo), check=False)
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "privileged" in lines[0] and "devcontainer_allow_privileged = true" in lines[0]
    assert not (cli.home / ".local/state/vmgen/workspaces" / HOSTILE).exists()
    assert HOSTILE not in cli("list").stdout


@pytest.fixture(scope="module")
def metadata_service(launched, docker_client) -> str:
    """A stand-in metadata service of root's on the address, behind vmgen's own guard: root
    reaches it (so the attempts from inside could succeed); the agent's connections may not."""
    code, answer = root(
        docker_client,
        "ip addr add 169.254.169.254/32 dev lo 2>/dev/null; mkdir -p /root/md && echo token-of-root >/root/md/token;"
        " (cd /root/md && setsid python3 -m http.server --bind 169.254.169.254 80 >/dev/null 2>&1 &);"
        " for i in $(seq 50); do curl -sf -m 2 http://169.254.169.254/token && break; sleep 0.2; done",
    )
    assert code == 0 and "token-of-root" in answer, answer
    return "token-of-root"


# Run inside a container with bash: a GET of the metadata service, or what stopped it.
METADATA_PROBE = (
    "timeout 5 bash -c 'exec 3<>/dev/tcp/169.254.169.254/80"
    ' && printf "GET /token HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3\' 2>&1 || echo metadata-unreachable'
)


def test_from_inside_root_and_its_metadata_and_sockets_are_out_of_reach(
    cli, launched, docker_client, metadata_service
) -> None:
    _, listed = root(docker_client, "ls -l /etc/vmgen/provider.env && ls /run/podman /var/run/docker.sock 2>&1")
    assert "-rw------- 1 root root" in listed and "No such file" in listed  # root's secret; no root engine
    probe = inside(
        cli,
        f"{METADATA_PROBE};"
        " for s in /var/run/docker.sock /run/docker.sock /run/podman/podman.sock; do [ -S $s ] && echo socket $s; done;"
        " true",
    )
    assert "metadata-unreachable" in probe and metadata_service not in probe and "socket" not in probe, probe


def test_a_container_asking_for_everything_reads_nothing_of_roots(cli, launched, metadata_service) -> None:
    """What the refusal would refuse, brought up by the agent's own CLI: still the agent's uid."""
    folder = f"/home/agent/everything-{NAME}"
    config = json.dumps(EVERYTHING)
    up = cli.ssh(
        NAME,
        f"mkdir -p {folder}/.devcontainer"
        f" && printf '%s' {shlex.quote(config)} > {folder}/.devcontainer/devcontainer.json"
        f" && devcontainer up --docker-path podman --workspace-folder {folder} >{folder}.log 2>&1;"
        f" echo up=$?; grep -i error {folder}.log | tail -n 5",
    )
    script = (
        "head -c 60 /host-etc/vmgen/provider.env 2>&1; head -c 60 /host-etc/shadow 2>&1; ls /host-root 2>&1;"
        f" {METADATA_PROBE}; head -n1 /proc/self/uid_map"
    )
    probe = cli.ssh(
        NAME,
        f"devcontainer exec --docker-path podman --workspace-folder {folder} bash -c {shlex.quote(script)}",
        check=False,
    )
    assert "up=0" in up, up
    assert probe.count("Permission denied") >= 3, probe
    assert "BUDGET_KEY" not in probe and "root:" not in probe
    # Its network is the VM's (--network=host), its connections still the agent's.
    assert "metadata-unreachable" in probe and metadata_service not in probe, probe
    uid_map = probe.strip().splitlines()[-1].split()
    assert uid_map[:2] == ["0", "2000"], probe  # the container's root is the agent


def test_a_failing_post_create_command_is_one_error_with_its_output(cli, launched) -> None:
    """Last: it replaces the workspace's container. The VM's own program as the launch runs it,
    its lines read by the laptop's follower: the CLI's message and the command's own output."""
    repo = f"/home/agent/work/{NAME}"
    broken = "echo making the toolchain; echo make: not found >\\&2; exit 3"
    printed = cli.ssh(
        NAME,
        f"cd {repo} && sed -i 's|echo created > /tmp/postcreate-marker|{broken}|' .devcontainer/devcontainer.json"
        f" && podman rm -f $(podman ps -aq --filter label=devcontainer.local_folder={repo}) >/dev/null"
        " && /usr/local/lib/vmgen/devcontainer-up; echo exit=$?",
    )
    said: list[str] = []
    follower = UpFollower(said.append)
    for line in printed.splitlines():
        follower.line(line)
    assert printed.splitlines()[-1] == "exit=1", printed
    assert "dev container: running postCreateCommand" in said, said
    first, *tail = str(follower.failure(1)).splitlines()
    assert first.startswith("the dev container did not come up: postCreateCommand from devcontainer.json failed"), first
    assert "  make: not found" in tail, tail
