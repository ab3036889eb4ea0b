"""The dotfiles_repo setting: checked on the laptop as a repository source is, rendered into a
script the agent runs at the first boot, and that script (as rendered) against a real git server
of the test's own (`git daemon`) cloning and installing as Codespaces and DevPod do; a failure is
one line in the launch's progress, not a failed launch."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.ports import answers, free_port
from vmgen.contract.names import VM
from vmgen.errors import InvalidSpec
from vmgen.laptop.readiness import Phase, _follow_once
from vmgen.laptop.spec import GitSource, RestoreSource, parse_dotfiles

from .test_render import check_schema, files_of, make_spec, render

INSTALLER = str(VM.program("dotfiles-install"))
PROVISION = str(VM.program("provision.sh"))


@pytest.mark.parametrize(
    "text",
    ["-oProxyCommand=touch", "/home/me/dotfiles", "ext::sh -c touch% /tmp/x", "https://x/y z", "file:///srv/dots"],
)
def test_a_dotfiles_repo_that_is_no_git_url_is_one_clear_line(text: str) -> None:
    with pytest.raises(InvalidSpec, match="dotfiles_repo") as caught:
        parse_dotfiles(text)
    assert "\n" not in str(caught.value)


def test_a_dotfiles_repo_takes_a_branch_as_a_source_does() -> None:
    assert parse_dotfiles("git@github.com:me/dots.git#work") == GitSource("git@github.com:me/dots.git", "work")


def test_without_the_setting_nothing_of_it_is_rendered() -> None:
    files = files_of(render(make_spec()))
    assert INSTALLER not in files and "phase dotfiles" not in files[PROVISION]["content"]


def test_the_dotfiles_are_installed_as_the_agent_at_the_first_boot_only() -> None:
    dots = GitSource("https://github.com/me/dots", "main")
    user_data = render(make_spec(dotfiles=dots))
    check_schema(user_data)
    files = files_of(user_data)
    provision = files[PROVISION]["content"]
    assert "phase dotfiles" in provision
    assert "runuser -u agent -- env -i HOME=/home/agent" in provision  # never root's
    assert f"{INSTALLER} </dev/null >/dev/null 2>&1" in provision  # root reads none of its output
    assert "--branch main -- https://github.com/me/dots" in files[INSTALLER]["content"]
    assert files[INSTALLER]["permissions"] == "0755"
    # A restore's home comes back with its dotfiles: nothing is cloned over them.
    restoring = make_spec(source=RestoreSource(workspace="app", backup_id="20260101T000000Z"), dotfiles=dots)
    assert "phase dotfiles" not in files_of(render(restoring))[PROVISION]["content"]


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """`git daemon` serving the bare repositories below tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={served}",
            f"--port={port}",
            "--listen=127.0.0.1",
            str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: answers(port), bool, timeout=10)
        yield served, port
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def publish(served: Path, name: str, files: dict[str, tuple[str, int]]) -> None:
    """A bare repository `name` holding `files` (path: text, mode)."""
    work = served.parent / f"work-{name}"
    work.mkdir()
    for path, (text, mode) in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
        (work / path).chmod(mode)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(work)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "dots"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / f"{name}.git")], check=True)


def install(tmp_path: Path, port: int, name: str) -> tuple[int, Path]:
    """The rendered script run as the provisioning runs it (a clean environment), with the
    agent's home moved to tmp_path/home; its exit status and the home."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    spec = make_spec(dotfiles=parse_dotfiles(f"git://127.0.0.1:{port}/{name}.git"))
    script = files_of(render(spec))[INSTALLER]["content"].replace(str(VM.home), str(home))
    (home / "dotfiles-install").write_text(script)
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    done = subprocess.run(["bash", str(home / "dotfiles-install")], env=env, timeout=60, check=False)
    return done.returncode, home


def test_the_install_script_runs_in_the_clone_with_the_agents_home(tmp_path: Path, git_server) -> None:
    served, port = git_server
    publish(served, "dots", {"install.sh": ('#!/bin/sh\necho "$PWD" > "$HOME/.installed"\n', 0o755)})
    status, home = install(tmp_path, port, "dots")
    assert status == 0, (home / ".vmgen/dotfiles.log").read_text()
    assert (home / ".installed").read_text().strip() == str(home / "dotfiles")
    assert "running install.sh" in (home / ".vmgen/dotfiles.log").read_text()


def test_a_script_that_is_not_executable_runs_with_bash_in_the_conventional_order(tmp_path: Path, git_server) -> None:
    served, port = git_server
    publish(
        served,
        "dots",
        {
            "script/setup": ('touch "$HOME/.from-setup"\n', 0o644),
            "bootstrap": ('touch "$HOME/.from-bootstrap"\n', 0o644),  # before script/setup
        },
    )
    status, home = install(tmp_path, port, "dots")
    assert status == 0 and (home / ".from-bootstrap").exists() and not (home / ".from-setup").exists()


def test_without_a_script_the_dotfiles_are_linked_and_the_homes_own_left_alone(tmp_path: Path, git_server) -> None:
    served, port = git_server
    publish(served, "dots", {".aliases": ("alias g=git\n", 0o644), ".vimrc": ("set nu\n", 0o644)})
    (tmp_path / "home").mkdir()
    (tmp_path / "home/.vimrc").write_text("mine\n")
    status, home = install(tmp_path, port, "dots")
    assert status == 0
    assert (home / ".aliases").is_symlink() and (home / ".aliases").read_text() == "alias g=git\n"
    assert (home / ".vimrc").read_text() == "mine\n" and not (home / ".vimrc").is_symlink()
    assert not (home / ".git").exists()


def test_a_failing_clone_and_a_failing_script_say_which_by_their_status(tmp_path: Path, git_server) -> None:
    served, port = git_server
    assert install(tmp_path, port, "missing")[0] == 10
    publish(served, "broken", {"install.sh": ("#!/bin/sh\nexit 3\n", 0o755)})
    assert install(tmp_path / "second", port, "broken")[0] == 11


class Lines(contextlib.AbstractContextManager):
    def __init__(self, lines: list[str]) -> None:
        self.lines = [line.encode() + b"\n" for line in lines]

    def __enter__(self) -> list[bytes]:
        return self.lines

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_dotfiles_failure_is_one_line_of_the_launchs_progress() -> None:
    said: list[str] = []
    phases: list[Phase] = []
    failed = "dotfiles: the install script failed; the workspace comes up without it (see ~/.vmgen/dotfiles.log)"
    log = [
        "vmgen-phase 1.0 dotfiles",
        f"vmgen-note 2.0 {failed}",
        "vmgen-phase 3.0 agent-unit",
        "@@vmgen-cloud-init done",
    ]
    seen: set[tuple[str, str, float]] = set()
    final = _follow_once(lambda: Lines(log), time.monotonic() + 60, phases, seen, said.append)
    final_again = _follow_once(lambda: Lines(log), time.monotonic() + 60, phases, seen, said.append)  # reopened
    assert final == final_again == "done"
    assert said == [
        "provisioning: dotfiles",
        f"provisioning: {failed}",
        "provisioning: agent-unit",
    ]
    assert [p.name for p in phases] == ["dotfiles", "agent-unit"]


def roots_dotfiles_step(tmp_path: Path, script: str, monkeypatch: pytest.MonkeyPatch, seconds: int = 600) -> str:
    """Root's part of the provisioning (from `phase dotfiles` to its verdict) as rendered, run
    with the agent's script replaced by `script` and as this test's user instead of `runuser -u
    agent` (the deadline and the verdict are root's own); what it said in the launch's progress."""
    import vmgen.laptop.builder.render as rendering

    monkeypatch.setattr(rendering, "DOTFILES_SECONDS", seconds)
    provision = files_of(render(make_spec(dotfiles=parse_dotfiles("https://github.com/me/dots"))))[PROVISION]
    text = provision["content"]
    block = text[text.index("phase dotfiles") : text.index("esac", text.index("phase dotfiles")) + 4]
    (tmp_path / "agents-script").write_text(script)
    (tmp_path / "agents-script").chmod(0o755)
    block = block.replace("runuser -u agent -- ", "").replace(INSTALLER, str(tmp_path / "agents-script"))
    shell = f'set -euo pipefail\nphase() {{ :; }}\nnote() {{ echo "$*"; }}\n{block}\necho step-done\n'
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.endswith("step-done\n"), done.stdout  # the provisioning goes on
    return done.stdout.removesuffix("step-done\n")


def end_own_child(pid_file: Path, argv: str) -> None:
    """Kill the process the pid file names, if it is still the one this test started."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/cmdline").read_text() == argv:
            os.kill(pid, signal.SIGKILL)


def test_an_install_script_that_never_ends_is_stopped_at_roots_deadline(tmp_path, monkeypatch) -> None:
    """The attack: the agent's script (or the repository's) holds the first boot forever, and
    a child it leaves behind keeps the output open; root's step ends at its own deadline."""
    left, lasting = tmp_path / "left-behind", f"300.{os.getpid()}"  # this test's own child, by its argv
    started = time.monotonic()
    try:
        hangs = f"#!/bin/bash\n(sleep {lasting} & echo $! > {left})\nexec sleep 300\n"
        said = roots_dotfiles_step(tmp_path, hangs, monkeypatch, seconds=2)
    finally:
        end_own_child(left, f"sleep\0{lasting}\0")
    assert time.monotonic() - started < 30
    assert said == "dotfiles: the install script ran past 2 s and was stopped (see ~/.vmgen/dotfiles.log)\n"


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (0, ""),
        (10, "dotfiles: could not clone dotfiles_repo; the workspace comes up without them"),
        (11, "dotfiles: the install script failed; the workspace comes up without it"),
        (3, "dotfiles: failed (exit 3); the workspace comes up without them"),
    ],
)
def test_each_failure_is_one_line_and_the_provisioning_goes_on(tmp_path, monkeypatch, status: int, said: str) -> None:
    out = roots_dotfiles_step(tmp_path, f"#!/bin/sh\nexit {status}\n", monkeypatch)
    assert out == (f"{said} (see ~/.vmgen/dotfiles.log)\n" if said else "")
