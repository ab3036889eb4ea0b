"""The watchdog on one docker workspace, with the real Claude Code against the scripted model and
seconds-scale timers (idle 30 s, stall 15 s): the launch installed the user's dotfiles as the
agent (a repository the test serves); the launch's "ready" line says what the watchdog will
really do; two sessions (the second opened by `vmgen session new`), one at its prompt and one
mid-turn on a slow model, are working and `vmgen session list` says which is which; a
silent tool call longer than the stall limit is working; a keepalive is said with its own time;
`vmgen status` polled every few seconds is no person and never holds the workspace up, so it
backs up and powers itself off (a container cannot delete itself); `vmgen list` shows its warning
beforehand to a user who is not attached, and afterwards that the watchdog stopped it, after which
backup, and the ways back, which a refused `vmgen restore` names too; `vmgen start` brings it back
with a fresh countdown and both sessions, each resuming its own conversation. The tests run in
order on the module's workspace."""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import threading
import time

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import eventually, wait_until

from .conftest import QuietHandler, make_repo, unique

NAME = unique("sleepy")
IDLE_SECONDS = 30
SLOW_SECOND = "SECOND-SESSION-SLOW"
QUICK_FIRST = "FIRST-SESSION-QUICK"
SILENT_TOOL = "SILENT-TOOL-CALL"
SECOND_DELAY = 60  # seconds the model takes for the second session: well past the idle timeout
TOOL_SECONDS = 40  # a silent step, past twice the stall limit


@pytest.fixture(scope="module")
def dotfiles(tmp_path_factory):
    """A dotfiles repository (an install.sh) served over git's dumb HTTP protocol."""
    base = tmp_path_factory.mktemp("dotfiles")
    work = base / "work"
    work.mkdir()
    (work / "install.sh").write_text('#!/bin/sh\nprintf "%s %s\\n" "$(id -un)" "$PWD" > "$HOME/.dotfiles-ran"\n')
    (work / "install.sh").chmod(0o755)
    git = ["git", "-C", str(work), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "install.sh"], check=True)
    subprocess.run([*git, "commit", "-qm", "dots"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(base / "served" / "dots.git")], check=True)
    subprocess.run(["git", "-C", str(base / "served" / "dots.git"), "update-server-info"], check=True)
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", 0), functools.partial(QuietHandler, directory=str(base / "served"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://host.docker.internal:{server.server_address[1]}/dots.git"
    server.shutdown()


@pytest.fixture(scope="module")
def ws(cli, model, tmp_path_factory, docker_client, dotfiles):
    model.script = Script(
        rules=[
            Rule(SLOW_SECOND, text="The slow second answer.", delay=SECOND_DELAY),
            Rule(QUICK_FIRST, text="The quick first answer."),
            Rule(
                SILENT_TOOL,
                tool=ToolUse(
                    "Bash",
                    {"command": f"python3 -c 'import time; time.sleep({TOOL_SECONDS})'", "description": "a quiet step"},
                ),
                after_tool_text="The quiet step is over.",
            ),
        ]
    )
    cli.env.update(
        {
            "VMGEN_IDLE_INTERVAL_SECONDS": "2",
            "VMGEN_IDLE_WARN_MINUTES": "0.25",
            "VMGEN_IDLE_STALL_MINUTES": "0.25",
            "VMGEN_DOTFILES_REPO": dotfiles,
        }
    )
    launched = cli(
        "launch", str(make_repo(tmp_path_factory.mktemp("repo"), NAME)), "--idle-minutes", str(IDLE_SECONDS / 60)
    )
    yield launched
    cli("destroy", NAME, "--yes", check=False)


def poll_status(cli, seconds: float, every: float = 3.0) -> list[dict]:
    """`vmgen status --json` every few seconds for `seconds`: what a user polling would see."""
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        seen.append(json.loads(cli("status", NAME, "--json").stdout))
        time.sleep(max(0.0, min(every, end - time.monotonic())))
    return seen


def keep_going(cli) -> None:
    """A file edited in the workspace: activity, so the countdown starts again from here."""
    cli.ssh(NAME, f"date > work/{NAME}/edited.txt")


def test_the_ready_line_says_what_the_watchdog_will_do(ws) -> None:
    # The launch's own SSH is no person: the countdown is the idle timeout, not the human limit.
    line = next(line for line in ws.stderr.splitlines() if "watchdog:" in line)
    said = re.search(r"(?:in (\d+) s unless something happens|once idle for 30 s)$", line)
    assert said is not None and int(said.group(1) or 0) <= IDLE_SECONDS, line


def test_the_dotfiles_were_installed_as_the_agent(ws, cli) -> None:
    assert cli.ssh(NAME, "cat ~/.dotfiles-ran") == "agent /home/agent/dotfiles\n"
    assert "dotfiles:" not in ws.stderr  # no failure line in the launch's progress


def test_two_sessions_one_at_its_prompt_one_mid_turn_keep_it_up(ws, cli, model, docker_client) -> None:
    keep_going(cli)
    # A second Claude session beside the agent's, its first message typed once it is up.
    cli("session", "new", NAME, "--name", "two", "--prompt", f"take your time, {SLOW_SECOND}")
    keep_going(cli)
    model.wait_for(SLOW_SECOND, timeout=60)
    started = time.monotonic()
    cli("send", NAME, f"be quick, {QUICK_FIRST}")  # the first session: its turn ends after the second's began
    eventually(
        lambda: "quick first answer" in cli.ssh(NAME, "tmux capture-pane -p -t claude:0"),
        timeout=60,
        what="the first session's answer",
    )
    lines = [json.loads(line) for line in cli.ssh(NAME, "cat ~/.vmgen/agent-events.jsonl").splitlines()]
    assert lines[-1]["event"] == "Stop" and len({line.get("session") for line in lines}) == 2, lines
    # Each session with the watchdog's own state for it, asked early in the second's long turn (on
    # a loaded machine the end of the polling below can come within seconds of the turn's end):
    # index, name, agent, what runs, state.
    listed = wait_until(
        lambda: cli("session", "list", NAME).stdout,
        lambda out: bool(
            re.search(r"^\s*0\*?\s+\S+\s+claude\s+claude\s+waiting", out, re.MULTILINE)
            and re.search(r"^\s*1\s+two\s+claude\s+claude\s+working", out, re.MULTILINE)
        ),
        timeout=20,
        every=1,
    )
    assert re.search(r"^\s*1\s+two\s+claude\s+claude\s+working", listed, re.MULTILINE), listed
    assert re.search(r"^\s*0\*?\s+\S+\s+claude\s+claude\s+waiting", listed, re.MULTILINE), listed

    seen = poll_status(cli, SECOND_DELAY - (time.monotonic() - started) - 12)  # a slow answer may lag
    report = "\n".join(f"{s['agent']['state']} {s['agent']['detail']} | {s['verdict']['condition']}" for s in seen)
    assert time.monotonic() - started > IDLE_SECONDS + 15, report  # the claim is about this long
    assert all(s["agent"]["state"] == "working" and s["verdict"]["condition"] == "working" for s in seen), report
    # The first session waits at its prompt (right after its turn it may still make a request of
    # its own, a title for the conversation, which counts as work for a moment).
    assert all("1 waiting" in s["agent"]["detail"] for s in seen[len(seen) // 2 :]), report
    assert docker_client.containers.get(f"vmgen-{NAME}").status == "running"
    eventually(
        lambda: "slow second answer" in cli.ssh(NAME, "tmux capture-pane -p -t claude:two"),
        timeout=60,
        what="the second session's answer",
    )


def test_a_silent_tool_call_longer_than_the_stall_limit_keeps_it_up(ws, cli, model, docker_client) -> None:
    keep_going(cli)
    sent_at = time.time()
    cli("send", NAME, f"run the quiet step, {SILENT_TOOL}")
    model.wait_for(SILENT_TOOL, timeout=60)
    started = time.monotonic()
    seen = poll_status(cli, TOOL_SECONDS - 8)
    report = "\n".join(f"{s['agent']['state']} {s['agent']['detail']}" for s in seen)
    quiet = seen[len(seen) // 2 :]  # well past the stall limit, nothing written
    assert time.monotonic() - started > 2 * 15, report  # twice the stall limit
    assert all(s["agent"]["state"] == "working" and "tool running" in s["agent"]["detail"] for s in quiet), report
    # Both sessions' screens, to say where the answer went if it is not in the first one's; the
    # last ones read while the workspace still answered, what the model was asked after the
    # tool and the agent's hook events go into the failure message too.
    shown: dict[str, str] = {}

    def screens() -> dict[str, str]:
        read = {w: cli.ssh(NAME, f"tmux capture-pane -p -t claude:{w}", check=False) for w in ("0", "=two")}
        shown.update({w: screen for w, screen in read.items() if screen})
        if "quiet step is over" not in read["0"]:
            events = cli.ssh(NAME, "tail -n 8 ~/.vmgen/agent-events.jsonl", check=False)
            shown["events"] = events or shown.get("events", "")
            # Root's view: whether the agent's service restarted (its tmux server, every window).
            vm = docker_client.containers.get(f"vmgen-{NAME}")
            if vm.status == "running":
                journal = vm.exec_run(["journalctl", "-u", "vmgen-agent", "-n", "12", "--no-pager", "-o", "short"])
                shown["agent service"] = journal.output.decode(errors="replace")
        return read

    final = wait_until(screens, lambda read: "quiet step is over" in read["0"], timeout=60, every=1)
    asked = [
        (round(r.at - sent_at), r.model, r.last_user_text[-60:], r.tool_result_for, r.rule)
        for r in model.requests
        if r.at >= sent_at
    ]
    if "quiet step is over" not in final["0"]:  # every screen whole: an assert's repr was cut short
        seen_last = "\n".join(f"--- {what}\n{text}" for what, text in shown.items())
        pytest.fail(f"the quiet step's answer never showed\n{seen_last}\n--- the model was asked\n{asked}", False)


def test_a_keepalive_is_said_and_polled_status_never_holds_it_up(ws, cli, docker_client) -> None:
    cli("keepalive", NAME, "--for", "20s")
    held = json.loads(cli("status", NAME, "--json").stdout)
    assert held["verdict"]["condition"] == "kept-alive" and held["verdict"]["busy"] is True, held
    assert IDLE_SECONDS < held["verdict"]["left_seconds"] <= 20 + IDLE_SECONDS, held  # the lease's end + idle
    words = cli("status", NAME).stdout
    assert "kept alive for" in words and "(from the laptop)" in words, words
    assert re.search(r"in \d+ s unless something happens", words), words

    container = docker_client.containers.get(f"vmgen-{NAME}")
    seen: list[dict] = []
    warnings: list[str] = []

    def off() -> bool:
        container.reload()
        if container.status == "exited":
            return True
        # vmgen's own SSH every few seconds: no person, so the countdown runs through it.
        state = json.loads(cli("status", NAME, "--json", check=False).stdout or "{}")
        if state:
            seen.append(state)
        if not warnings and state.get("verdict", {}).get("next_action") == "warn":
            # Nobody is attached: `vmgen list` says what the watchdog is about to do.
            listed = cli("list", check=False).stderr
            warnings.extend(line for line in listed.splitlines() if line.startswith(f"{NAME}: idle;"))
        return False

    eventually(off, timeout=180, what="the idle workspace to power off while its status is polled", interval=3)
    assert all("SSH" not in "; ".join(s["verdict"]["reasons"]) for s in seen), seen
    assert not any(s["verdict"]["busy"] and s["verdict"]["idle_for_seconds"] > 0 for s in seen), seen
    assert [s["verdict"]["condition"] for s in seen][-1] == "idle", seen
    assert warnings and "in " in warnings[0] and f"vmgen keepalive {NAME} --for 1h" in warnings[0], seen


def test_it_starts_again_with_a_fresh_countdown(ws, cli, docker_client) -> None:
    listed = cli("list")
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == [NAME])
    assert "stopped (idle)" in row
    note = next(line for line in listed.stderr.splitlines() if line.startswith(f"{NAME}: "))
    backup_id = note.split("after backup ")[1].split(";")[0]
    assert "stopped by its idle watchdog" in note and backup_id in cli("backups", NAME).stdout
    assert f"`vmgen start {NAME}`" in note and f"`vmgen destroy {NAME}` then `vmgen restore {NAME}`" in note
    refused = cli("restore", NAME, check=False, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"`vmgen start {NAME}`" in refused.stderr
    assert f"`vmgen destroy {NAME}` then `vmgen restore {NAME}`" in refused.stderr
    started = time.time()
    cli("start", NAME)

    # A new boot: the countdown starts afresh rather than firing at once on the old history.
    def fresh_verdict() -> dict | None:
        state = json.loads(cli("status", NAME, "--json").stdout)
        return state if state.get("updated_at", 0) > started else None

    eventually(lambda: fresh_verdict() is not None, timeout=60, what="the watchdog's first tick after start")
    state = fresh_verdict()
    assert state is not None
    assert state["verdict"]["next_action"] in ("none", "warn")
    container = docker_client.containers.get(f"vmgen-{NAME}")
    assert container.status == "running"
    assert cli.ssh(NAME, f"cat work/{NAME}/README.md") == f"# {NAME}\n"

    # Both sessions came back, each resuming its own conversation (not the workspace's latest).
    def screen(window: str) -> str:
        return cli.ssh(NAME, f"tmux capture-pane -p -S -300 -t claude:{window}", check=False)

    eventually(lambda: "slow second answer" in screen("=two"), timeout=90, what="the second session resumed")
    eventually(lambda: "quiet step is over" in screen("0"), timeout=90, what="the first session resumed")
    assert "slow second answer" not in screen("0") and "quiet step is over" not in screen("=two")
    assert re.search(r"^\s*1\s+two\s", cli("session", "list", NAME).stdout, re.MULTILINE)
    cli("destroy", NAME, "--yes")
