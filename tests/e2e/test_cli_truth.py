"""The CLI tells the truth, on real docker workspaces driven through the `vmgen` CLI without a
terminal: one line per launch phase; a warning before anything is made when the agent will have
no credentials, and `send` refused while it waits at its login screen or is not running; the
watchdog's first verdict before "ready", and what it will do in words; `open` refuses what is
not there; `destroy` asks for --yes without a terminal; a failed boot shows its phase's own
error first; two Ctrl-C leave nothing behind, and leftovers are listed, refused and removed;
`list` and `image list` show one's own unless --all."""

from __future__ import annotations

import http.server
import io
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import RUN_LABEL
from tests.polling import eventually

from .conftest import RUN, Cli, QuietHandler, make_home, make_repo, unique

NAME = unique("truth")


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def index_of(lines: list[str], part: str) -> int:
    return next(i for i, line in enumerate(lines) if part in line)


@pytest.fixture(scope="module")
def keyless(cli, tmp_path_factory):
    """Launched with no ANTHROPIC_API_KEY and no --copy-claude-login, output piped (no terminal),
    twice at the same moment (one of them makes the workspace); `vmgen status` asked right after
    "ready", with the watchdog's usual 30 s interval."""
    bare = Cli(env={k: v for k, v in cli.env.items() if k != "ANTHROPIC_API_KEY"}, home=cli.home)
    repo = make_repo(tmp_path_factory.mktemp("repos"), NAME)
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "vmgen", "launch", str(repo)],
            env=bare.env,
            cwd=bare.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        ended = [subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=600)) for p in both]
    finally:
        for process in both:
            process.kill()
    for process, result in zip(both, ended, strict=True):
        result.returncode = process.returncode
    ended.sort(key=lambda result: result.returncode)  # the launch that made it first
    status = bare("status", NAME)
    yield ended[0], status, ended[1]
    cli("destroy", NAME, "--yes", check=False)


def test_two_launches_of_one_name_at_once_make_one_workspace(cli, keyless) -> None:
    launched, _, refused = keyless
    assert launched.returncode == 0 and f"ready: {NAME}" in launched.stderr
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"'{NAME}' is busy: another vmgen is working on it right now" in refused.stderr
    assert "creating" not in refused.stderr and "warning" not in refused.stderr  # refused before all else
    assert cli.ssh(NAME, "true") == ""  # the pinned host key and the record are the first launch's, intact
    assert (cli.home / ".local/state/vmgen/identities" / f"{NAME}.age-identity").exists()  # and its identity


def test_launch_without_a_terminal_prints_one_line_per_phase(keyless) -> None:
    lines = lines_of(keyless[0].stderr)
    phases = [
        "creating the workspace on docker",
        "waiting for SSH",
        "provisioning: ",
        "handing over credentials",
        "waiting for the watchdog's first verdict",
        "ready: ",
    ]
    at = [index_of(lines, phase) if any(phase in line for line in lines) else -1 for phase in phases]
    assert at == sorted(at), lines
    assert sum("waiting for SSH" in line for line in lines) == 1  # a retry is not a new phase


def test_launch_says_before_anything_is_made_that_the_agent_has_no_credentials(keyless) -> None:
    lines = lines_of(keyless[0].stderr)
    warning = index_of(lines, "warning: claude will have no credentials")
    assert "ANTHROPIC_API_KEY" in lines[warning] and "--copy-claude-login" in lines[warning]
    assert f"vmgen connect {NAME}" in lines[warning + 1]
    assert max(len(lines[warning]), len(lines[warning + 1])) < 120  # lines a terminal shows whole
    assert warning < index_of(lines, "creating the workspace")


def test_status_right_after_ready_sees_the_running_agent(keyless) -> None:
    launched, status, _ = keyless
    assert "watchdog: agent waiting" in launched.stderr  # "ready" came with the first verdict
    agent_row = next(line for line in status.stdout.splitlines() if line.split()[:1] == ["agent"])
    # Seen, not absent; a child of its start (a hook, a check) may still be burning CPU for a
    # moment on a loaded machine, which the watchdog calls working.
    assert ("waiting" in agent_row or "working" in agent_row) and "absent" not in agent_row, agent_row


def test_status_says_what_the_watchdog_will_do_and_when(cli, keyless) -> None:
    row = next(line for line in cli("status", NAME).stdout.splitlines() if line.strip().startswith("next action"))
    # Docker workspaces have a local backup store: the default action backs up, then deletes.
    assert "backs up and deletes itself in " in row and "unless something happens" in row, row
    assert " none " not in row


def test_send_refuses_an_agent_at_its_login_screen(cli, keyless) -> None:
    result = cli("send", NAME, "please add a HELLO.md", check=False)
    assert result.returncode == 1 and "sent to" not in result.stderr, cli.ssh(NAME, "tmux capture-pane -p -t claude")
    assert "not logged in" in result.stderr and f"vmgen connect {NAME}" in result.stderr


def test_open_refuses_what_the_workspace_does_not_serve(cli, keyless) -> None:
    code = cli("open", NAME, "--what", "code", "--no-browser", check=False, timeout=60)
    assert code.returncode == 1 and f"{NAME} has no code UI" in code.stderr and "http" not in code.stderr
    desktop = cli("open", NAME, "--what", "desktop", "--no-browser", check=False, timeout=60)
    assert desktop.returncode == 1 and f"{NAME} has no desktop" in desktop.stderr


def test_destroy_without_a_terminal_needs_yes(cli, keyless) -> None:
    refused = cli("destroy", NAME, input="n\n", check=False)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert cli.ssh(NAME, "true") == ""  # still there


def test_list_shows_only_ones_own_unless_all(cli, keyless, tmp_path) -> None:
    # Someone else on the same engine, as the same uid and user name (everyone is root on a shared
    # machine): only their vmgen state folder, in another home, tells them apart.
    home = make_home(tmp_path)
    other = Cli(env={**cli.env, "HOME": str(home)}, home=home)
    listed = other("list")
    assert NAME not in listed.stdout and "of other users not shown" in listed.stderr
    row = next(line for line in other("list", "--all").stdout.splitlines() if line.split()[:1] == [NAME])
    assert f"@{socket.gethostname()}" in row  # its owner
    assert NAME in cli("list").stdout


def test_the_agents_pane_has_focus_events_and_no_hint_about_them(cli, keyless) -> None:
    assert cli.ssh(NAME, "tmux show-options -gv focus-events").strip() == "on"
    assert "focus-events" not in cli.ssh(NAME, "tmux capture-pane -p -S -100 -t claude")


def test_the_agents_install_is_logged_under_its_own_phase(cli, keyless) -> None:
    log = cli.ssh(NAME, "cat /var/log/vmgen/provision.log").splitlines()
    skipped = next(i for i, line in enumerate(log) if line.startswith("vmgen-skip ") and line.split()[2] == "agent")
    phase = next(line for line in reversed(log[:skipped]) if line.startswith("vmgen-phase "))
    assert phase.split()[2] == "agent-install", log


def test_open_killed_with_sigterm_takes_its_tunnel_with_it(cli, keyless) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "vmgen", "open", NAME, "--no-browser"],
        env=cli.env,
        cwd=cli.home,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: list[str] = []
        read_until(process, "through SSH", seen)
        port = int(seen[-1].split("127.0.0.1:")[1].split("/")[0])
        tunnel = next(pid for pid in children(process.pid) if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh")
        eventually(lambda: listening(port), timeout=30, what="the tunnel's port")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        process.kill()
    assert not Path(f"/proc/{tunnel}").exists() and not listening(port)


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_send_refuses_an_agent_that_exited_or_whose_session_is_gone(cli, keyless) -> None:
    cli.ssh(NAME, "pkill -u agent -x claude")
    exited = cli("send", NAME, "hello", check=False)
    assert exited.returncode == 1 and "claude is not running" in exited.stderr, exited.stderr
    cli.ssh(NAME, "tmux kill-session -t claude")
    gone = cli("send", NAME, "hello", check=False)
    assert gone.returncode == 1 and "tmux session is not running" in gone.stderr


def test_destroy_removes_the_identity_nothing_was_encrypted_to(cli, keyless) -> None:
    # The last of this workspace's tests. It never backed up: its identity goes with it, said.
    destroyed = cli("destroy", NAME, "--yes")
    assert "its backup identity went with it (no backup in local folder" in destroyed.stderr
    assert not (cli.home / ".local/state/vmgen/identities" / f"{NAME}.age-identity").exists()


# --- failures and interrupts, each on a workspace of its own -------------------------------------


def nothing_left(cli, docker_client, name: str) -> None:
    assert not docker_client.containers.list(all=True, filters={"label": f"vmgen-ws={name}"})
    assert not [v for v in docker_client.volumes.list() if v.name == f"vmgen-{name}-home"]
    assert not (cli.home / ".local/state/vmgen/workspaces" / name).exists()
    assert not (cli.home / ".local/state/vmgen/identities" / f"{name}.age-identity").exists()


def test_a_typo_in_a_git_url_is_refused_before_anything_is_made(cli, docker_client) -> None:
    name = unique("typo")
    result = cli("launch", "https://nohost.invalid/me/app.git", "--name", name, check=False, timeout=120)
    assert result.returncode == 2 and "the host 'nohost.invalid' does not exist" in result.stderr
    assert "creating" not in result.stderr and "Traceback" not in result.stderr
    nothing_left(cli, docker_client, name)


@pytest.fixture
def git_server(tmp_path) -> Iterator[str]:
    """A repository this machine serves on 127.0.0.1 (git's dumb HTTP protocol): it checks out
    from here, and a workspace cannot reach it (its 127.0.0.1 is its own)."""
    repo = make_repo(tmp_path, "served-src")
    served = tmp_path / "served"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(served / "app.git")], check=True)
    subprocess.run(["git", "-C", str(served / "app.git"), "update-server-info"], check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/app.git"
    server.shutdown()
    server.server_close()


def test_a_failed_clone_shows_its_phase_and_its_own_error_first_and_keeps_its_log(
    cli, docker_client, git_server
) -> None:
    name = unique("noclone")
    result = cli("launch", git_server, "--name", name, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("error: ") :]
    assert "failed in the provisioning phase 'repo'" in error and "Failed to connect to 127.0.0.1" in error, error
    assert "Rules updated" not in error and "Firewall" not in error  # the phase before says nothing
    kept = Path(error.split("(the whole log: ")[1].split(")")[0])
    assert kept.is_relative_to(cli.home) and "Failed to connect to 127.0.0.1" in kept.read_text()  # here, not gone
    nothing_left(cli, docker_client, name)


def launching(cli, name: str, repo: Path) -> subprocess.Popen[str]:
    """A launch to interrupt while it provisions: cold, so that provisioning takes longer than the
    test takes to read a line and signal (from a baked image the whole launch can be over first)."""
    return subprocess.Popen(
        # Ctrl-C reaches a terminal's foreground process with SIGINT at its default; a test run
        # started in the background (as CI may start it) hands SIGINT down ignored, and Python
        # then never raises KeyboardInterrupt: `env --default-signal` gives it back its default.
        ["env", "--default-signal=INT", sys.executable, "-m", "vmgen", "launch", str(repo), "--name", name, "--cold"],
        env=cli.env,
        cwd=cli.home,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(process: subprocess.Popen[str], part: str, seen: list[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if part in line:
            return
    raise AssertionError(f"the launch ended before printing {part!r}:\n{''.join(seen)}")


def test_two_interrupts_during_provisioning_leave_nothing_behind(cli, docker_client, tmp_path) -> None:
    name = unique("ctrlc")
    process = launching(cli, name, make_repo(tmp_path, name))
    seen: list[str] = []
    try:
        read_until(process, "provisioning: ", seen)
        process.send_signal(signal.SIGINT)
        read_until(process, "removing what was created", seen)
        process.send_signal(signal.SIGINT)  # while the container and its volume are being removed
        assert process.stderr is not None
        seen.append(process.stderr.read())
        assert process.wait(timeout=120) == 130, "".join(seen)
    finally:
        process.kill()
    assert "still removing what was created" in "".join(seen)
    nothing_left(cli, docker_client, name)


def test_leftovers_are_listed_refused_and_removed(cli, docker_client, tmp_path) -> None:
    # A launch killed outright mid-provisioning: its workspace runs on, half-made.
    name = unique("left")
    repo = make_repo(tmp_path, name)
    process = launching(cli, name, repo)
    try:
        read_until(process, "provisioning: ", [])
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert (cli.home / ".local/state/vmgen/identities" / f"{name}.age-identity").exists()
    row = next(line for line in cli("list").stdout.splitlines() if line.split()[:1] == [name])
    assert "leftover" in row and "never came up" in row and "running" not in row.split()[2:3]
    again = cli("launch", str(repo), "--name", name, check=False, timeout=60)
    assert again.returncode == 2 and "cut short" in again.stderr and f"`vmgen destroy {name}`" in again.stderr
    assert "creating" not in again.stderr
    # Then its container removed (a cleanup cut short): its volume, local state and identity remain.
    docker_client.containers.get(f"vmgen-{name}").remove(force=True, v=True)
    row = next(line for line in cli("list").stdout.splitlines() if line.split()[:1] == [name])
    assert "leftover" in row and f"vmgen-{name}-home" in row
    again = cli("launch", str(repo), "--name", name, check=False, timeout=60)
    assert again.returncode == 2 and f"vmgen destroy {name}" in again.stderr and "creating" not in again.stderr
    destroyed = cli("destroy", name, "--yes")
    assert "its backup identity went with it (it never came up" in destroyed.stderr
    nothing_left(cli, docker_client, name)  # the identity too: that workspace never came up


# --- baked images of several users on one engine ------------------------------------------------


def fake_baked_image(docker_client, owner: str, tag: str, owner_id: str = "") -> str:
    """An empty image labelled as a bake of this run's own base: never what a launch picks."""
    stamp = {
        "vmgen-baked": "1",
        "vmgen-base": f"test-base-{RUN}",
        "vmgen-stamp-packages": "p",
        "vmgen-stamp-agent": "a",
        "vmgen-stamp-vmgen": "v",
        "vmgen-owner": owner,
        RUN_LABEL: RUN,
        "vmgen-test-tag": tag,
    }
    if owner_id:
        stamp["vmgen-owner-id"] = owner_id
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    docker_client.api.import_image_from_data(
        empty.getvalue(),
        repository=f"vmgen-test-baked-{RUN}",
        tag=tag,
        changes=[f"LABEL {k}={v}" for k, v in stamp.items()],
    )
    image = docker_client.images.get(f"vmgen-test-baked-{RUN}:{tag}")
    assert image.id is not None
    return image.id.removeprefix("sha256:")[:12]


def test_image_list_rm_and_prune_act_on_ones_own_images(cli, docker_client) -> None:
    me = replace(cli, env={**cli.env, "LOGNAME": f"me-{RUN}", "USER": f"me-{RUN}"})
    mine = subprocess.run(
        [sys.executable, "-c", "from vmgen.laptop.owner import owner_id; print(owner_id())"],
        env=cli.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()  # this user's, in their home
    host = socket.gethostname()
    older = fake_baked_image(docker_client, f"me-{RUN}@{host}", "older", mine)
    newer = fake_baked_image(docker_client, f"me-{RUN}@{host}", "newer", mine)
    # Another user of the same uid and user name: their own vmgen state folder, their own id.
    theirs = fake_baked_image(docker_client, f"me-{RUN}@{host}", "theirs", "0123456789abcdef")
    unknown = fake_baked_image(docker_client, f"me-{RUN}@{host}", "unknown")  # baked before owner ids

    listed = me("image", "list")
    assert older in listed.stdout and newer in listed.stdout and theirs not in listed.stdout
    assert "of other users not shown" in listed.stderr
    row = next(line for line in listed.stdout.splitlines() if unknown in line)
    assert "only with --image" in row and "baked before vmgen recorded who baked them" in listed.stderr
    assert theirs in me("image", "list", "--all").stdout
    me("image", "rm", unknown)

    pruned = me("image", "prune")  # all but the newest of a base: what a launch from it would use
    assert f"({older})" in pruned.stderr and newer not in pruned.stderr and theirs not in pruned.stderr
    me("image", "rm", newer)
    left = {
        image.id.removeprefix("sha256:")[:12]
        for image in docker_client.images.list(filters={"label": f"{RUN_LABEL}={RUN}"})
        if image.id
    }
    assert theirs in left and older not in left and newer not in left
    assert me("image", "rm", theirs, check=False).returncode == 2  # another user's: not without --all
