"""Every agent session comes back after a restart, each resuming its own conversation: the VM's
own agent-session and agent-run scripts (as rendered) against a real tmux server of the test's
own (TMUX_TMPDIR), with a stand-in `claude` that records how it was started and, started under
an id, writes that conversation's transcript as Claude Code does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.polling import wait_until
from vmgen.contract.names import AGENT_SESSION, VM, VmPaths
from vmgen.laptop.sessions import new_window_argv

from .test_render import files_of, make_spec, render

PROJECT = ".claude/projects/-home-agent-work-app"


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The rendered scripts with the agent's home and vmgen's programs moved below tmp_path."""
    home, lib = tmp_path / "home", tmp_path / "lib"
    for folder in (home / "work/app", home / PROJECT, lib, tmp_path / "bin", tmp_path / "tmux"):
        folder.mkdir(parents=True)
    files = files_of(render(make_spec()))
    for name in ("agent-session", "agent-run", "tmux.conf"):
        text = files[str(VM.program(name))]["content"]
        text = text.replace(str(VM.program("")), f"{lib}/").replace(str(VM.home), str(home))
        # The pane stays open without a login shell of the test machine's user.
        (lib / name).write_text(text.replace("exec bash -l", "exec sleep 600"))
        (lib / name).chmod(0o755)
    (tmp_path / "bin/claude").write_text(
        "#!/bin/bash\n"
        f'echo "$@" >> {tmp_path}/claude-calls\n'
        f'if [ "$1" = --session-id ]; then echo "{{}}" > {home / PROJECT}/"$2".jsonl; fi\n'
    )
    (tmp_path / "bin/claude").chmod(0o755)
    # codex, installed besides: logged in already; a conversation leaves its rollout.
    (tmp_path / "bin/codex").write_text(
        "#!/bin/bash\n"
        'if [ "$1" = login ]; then exit 0; fi\n'
        f'echo "codex $*" >> {tmp_path}/claude-calls\n'
        f"mkdir -p {home}/.codex/sessions/2026/12/07 && touch {home}/.codex/sessions/2026/12/07/rollout-x.jsonl\n"
    )
    (tmp_path / "bin/codex").chmod(0o755)
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path / "tmux"), "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    env.pop("TMUX", None)
    env.pop("TMUX_PANE", None)
    yield tmp_path, env
    subprocess.run(["tmux", "kill-server"], env=env, check=False)


def tmux(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["tmux", *args], env=env, capture_output=True, text=True, check=True).stdout


def calls(root: Path, count: int) -> list[str]:
    """The stand-in claude's first `count` starts, once there are that many."""
    log = root / "claude-calls"
    return wait_until(
        lambda: log.read_text().splitlines() if log.exists() else [],
        lambda lines: len(lines) >= count,
        timeout=10,
        every=0.1,
    )[:count]


def record(root: Path) -> list[list[str]]:
    path = root / "home/.vmgen/sessions.tsv"
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def conversation_of(env: dict[str, str], window: str) -> str:
    return tmux(env, "show-options", "-w", "-v", "-t", window, "@vmgen-conversation").strip()


def test_each_session_comes_back_after_a_restart_resuming_its_own_conversation(vm) -> None:
    root, env = vm
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    first_start = calls(root, 1)[0].split()
    assert first_start[0] == "--session-id"  # a new workspace: a conversation under an id of vmgen's
    first = first_start[1]
    subprocess.run(new_window_argv("two", VmPaths(lib=root / "lib")), env=env, check=True)
    second = calls(root, 2)[1].split()[1]
    assert second != first
    # The first window's name is tmux's (after what it runs): none is recorded for it.
    assert wait_until(lambda: record(root), lambda r: len(r) == 2, timeout=10, every=0.1) == [
        [first, "", "claude"],
        [second, "two", "claude"],
    ]

    tmux(env, "kill-server")  # the VM stops; its next boot starts the agent's service again
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    resumed = calls(root, 4)[2:]
    assert sorted(resumed) == sorted(f"--resume {i} --dangerously-skip-permissions" for i in (first, second))
    windows = tmux(env, "list-windows", "-t", AGENT_SESSION, "-F", "#{window_index} #{window_name}").splitlines()
    assert len(windows) == 2 and windows[1] == "1 two", windows
    assert conversation_of(env, f"{AGENT_SESSION}:0") == first
    assert conversation_of(env, f"{AGENT_SESSION}:=two") == second
    # Started again, the service leaves the running sessions alone.
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    assert len(tmux(env, "list-windows", "-t", AGENT_SESSION).splitlines()) == 2


def test_a_closed_session_is_forgotten_when_the_next_one_begins(vm) -> None:
    root, env = vm
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    calls(root, 1)  # the first window's agent has started: the next start logged is window two's
    subprocess.run(new_window_argv("two", VmPaths(lib=root / "lib")), env=env, check=True)
    two = calls(root, 2)[1].split()[1]
    tmux(env, "kill-window", "-t", f"{AGENT_SESSION}:=two")
    subprocess.run(new_window_argv("three", VmPaths(lib=root / "lib")), env=env, check=True)
    calls(root, 3)
    kept = wait_until(lambda: record(root), lambda r: [n for _, n, _ in r][1:] == ["three"], timeout=10, every=0.1)
    assert two not in [i for i, _, _ in kept]


def test_a_record_the_agent_garbled_starts_only_what_it_names_properly(vm) -> None:
    """The record is the agent's file: lines of other shapes start nothing and run nothing."""
    root, env = vm
    good = "5e1a7c3b-2d4f-4b6a-8c9e-0f1a2b3c4d5e"
    (root / "home/.vmgen").mkdir()
    (root / "home/.vmgen/sessions.tsv").write_text(
        f"$(touch {root}/ran)\tx\n{good}\tname;touch {root}/ran2\nnot-an-id\tthree\n{good.upper()}\tfour\n"
    )
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    assert calls(root, 1) == [f"--session-id {good} --dangerously-skip-permissions"]  # no transcript yet
    windows = tmux(env, "list-windows", "-t", AGENT_SESSION, "-F", "#{window_name}").splitlines()
    assert len(windows) == 1 and ";" not in windows[0]
    assert not (root / "ran").exists() and not (root / "ran2").exists()


def windows_of(env: dict[str, str]) -> list[str]:
    return tmux(env, "list-windows", "-t", AGENT_SESSION, "-F", "#{window_name} #{@vmgen-agent}").splitlines()


def test_a_session_of_another_agent_starts_it_and_comes_back_after_a_restart(vm) -> None:
    root, env = vm
    lib = VmPaths(lib=root / "lib")
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    first = calls(root, 1)[0].split()[1]
    subprocess.run(new_window_argv("cx", lib, agent="codex"), env=env, check=True)
    assert calls(root, 2)[1] == "codex "  # a fresh codex conversation, not Claude Code
    subprocess.run(new_window_argv("cx2", lib, agent="codex"), env=env, check=True)
    calls(root, 3)
    rows = wait_until(lambda: record(root), lambda r: len(r) == 3, timeout=10, every=0.1)
    assert [(name, agent) for _, name, agent in rows] == [("", "claude"), ("cx", "codex"), ("cx2", "codex")]
    assert windows_of(env)[1:] == ["cx codex", "cx2 codex"]

    tmux(env, "kill-server")
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    again = calls(root, 5)[3:]
    # Claude Code resumes its own conversation; codex takes no id: one session of it comes back,
    # with its last conversation (two resuming the same one would fight over it).
    assert sorted(again) == sorted([f"--resume {first} --dangerously-skip-permissions", "codex resume --last"])
    assert [w.split()[0] for w in windows_of(env)][1:] == ["cx"]


def test_an_agent_the_record_names_that_vmgen_does_not_offer_starts_nothing(vm) -> None:
    root, env = vm
    good = "5e1a7c3b-2d4f-4b6a-8c9e-0f1a2b3c4d5e"
    other = "6e1a7c3b-2d4f-4b6a-8c9e-0f1a2b3c4d5e"
    (root / "home/.vmgen").mkdir()
    (root / "home/.vmgen/sessions.tsv").write_text(
        f"{good}\tone\tclaude;touch {root}/ran\n{other}\ttwo\t$(touch {root}/ran2)\n{good}\tthree\n"
    )
    subprocess.run([str(root / "lib/agent-session")], env=env, check=True, timeout=30)
    assert calls(root, 1) == [f"--session-id {good} --dangerously-skip-permissions"]  # the line with no agent
    assert [w.split()[0] for w in windows_of(env)] == ["three"]
    assert not (root / "ran").exists() and not (root / "ran2").exists()
    # agent-run itself takes only an agent vmgen offers: anything else is the workspace's own.
    subprocess.run(
        [
            "tmux",
            "new-window",
            "-d",
            "-t",
            f"{AGENT_SESSION}:",
            "-n",
            "x",
            str(root / "lib/agent-run"),
            "--new",
            "--agent",
            f"codex;touch {root}/ran3",
        ],
        env=env,
        check=True,
    )
    assert calls(root, 2)[1].startswith("--session-id ") and not (root / "ran3").exists()
