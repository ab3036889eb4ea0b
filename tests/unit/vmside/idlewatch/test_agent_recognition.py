"""Every agent vmgen offers is recognised by the watchdog from its own declaration: its process
(by name, or the script its interpreter runs), its connection to its model API (as its
environment or its declaration names it), its turn log and its state folders. Real processes,
real sockets and real files; and every new read root makes of the agent's files, attacked."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from vmgen.contract.agentwatch import AgentWatch, TurnLog, endpoint_of, flatten
from vmgen.contract.documents import WatchSettings
from vmgen.errors import DocumentError
from vmgen.laptop.agents import AGENTS
from vmgen.vmside.agentfs import AgentFiles
from vmgen.vmside.idlewatch.agent import (
    AgentConfig,
    AgentWatcher,
    AgentWatchers,
    merge_signals,
    model_endpoint,
    to_endpoint,
)
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState
from vmgen.vmside.idlewatch.rollout import RolloutReader, RolloutTurn, StateFolders

OTHERS = [name for name in AGENTS if name != "claude"]

# The agent's CLI, reduced to what the watchdog sees: a process of the agent's name (a script its
# interpreter runs, as node runs codex.js and python runs aider), told over stdin to connect to a
# host and port, to hang up, or to write a file.
AGENT_PROGRAM = """
import socket, sys
conns = []
print("ready", flush=True)
for line in sys.stdin:
    what, _, arg = line.strip().partition(" ")
    if what == "connect":
        host, port = arg.rsplit(":", 1)
        conns.append(socket.create_connection((host, int(port))))
    elif what == "close":
        while conns:
            conns.pop().close()
    elif what == "write":
        with open(arg, "a") as f:
            f.write("x")
    print("done", flush=True)
"""


def non_loopback_ipv4() -> str:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    raise AssertionError("no non-loopback IPv4 address to stand in for the model API (is dockerd running?)")


class FakeAgent:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., FakeAgent]]:
    procs: list[subprocess.Popen[str]] = []

    def start(name: str, env: dict[str, str] | None = None, options: tuple[str, ...] = ()) -> FakeAgent:
        bindir, repo, home = tmp_path / "bin", tmp_path / "repo", tmp_path / "home"
        for folder in (bindir, repo, home):
            folder.mkdir(exist_ok=True)
        (bindir / name).write_text(AGENT_PROGRAM)
        proc = subprocess.Popen(
            [sys.executable, *options, str(bindir / name)],
            cwd=repo,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(home), **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        procs.append(proc)
        return FakeAgent(proc)

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def watcher_of(tmp_path: Path, name: str, **kw: Any) -> AgentWatcher:
    config = AgentConfig(
        user=getpass.getuser(), watch=AGENTS[name].watch, hook_events=None, only_under=tmp_path / "repo", **kw
    )
    return AgentWatcher(config)


@pytest.fixture
def model_api() -> Iterator[tuple[str, int]]:
    """A listening socket on a non-loopback address: the model API, as far as TCP goes."""
    api = socket.create_server((non_loopback_ipv4(), 0))
    api.listen(8)
    yield api.getsockname()[:2]
    api.close()


# -- the declaration travels to the VM -------------------------------------------------------


@pytest.mark.parametrize("name", list(AGENTS))
def test_each_agent_declares_its_recognition_and_it_reaches_the_vm_intact(name: str) -> None:
    watch = AGENTS[name].watch.validate()
    assert watch.processes and endpoint_of(watch.endpoint) is not None
    settings = WatchSettings.from_toml(WatchSettings(**flatten(watch)).to_toml())
    assert settings.agent_watch == watch


@pytest.mark.parametrize(
    "bad",
    [
        {"processes": ("co dex",)},
        {"processes": ()},
        {"endpoint": "file:///etc/passwd"},
        {"endpoint_variables": ("lower-case",)},
        {"state_paths": ("../../etc",)},
        {"state_paths": ("/etc",)},
    ],
)
def test_a_recognition_that_would_lead_root_astray_is_refused(bad: dict[str, Any]) -> None:
    text = WatchSettings(**flatten(AgentWatch(**bad))).to_toml()
    with pytest.raises(DocumentError):
        WatchSettings.from_toml(text)


def test_the_model_endpoint_is_the_environments_else_the_declared_one() -> None:
    watch = AGENTS["aider"].watch
    assert model_endpoint(watch, {}) == ("api.anthropic.com", 443)
    assert model_endpoint(watch, {"OPENAI_API_BASE": "http://10.0.0.7:8080/v1"}) == ("10.0.0.7", 8080)
    assert model_endpoint(watch, {"OPENAI_API_BASE": "not a url", "OPENAI_BASE_URL": "https://x.test"}) == (
        "x.test",
        443,
    )
    # A host name is never resolved by root: its port decides; an address decides with it.
    assert to_endpoint(("10.0.0.2", 5000, "203.0.113.9", 443), ("api.openai.com", 443))
    assert not to_endpoint(("10.0.0.2", 5000, "203.0.113.9", 8443), ("api.openai.com", 443))
    assert to_endpoint(("10.0.0.2", 5000, "::ffff:10.0.0.7", 8080), ("10.0.0.7", 8080))
    assert not to_endpoint(("10.0.0.2", 5000, "10.0.0.8", 8080), ("10.0.0.7", 8080))


# -- each agent: idle waits, a model request works, the end of it waits again ------------------


@pytest.mark.parametrize("name", OTHERS)
def test_an_agent_mid_turn_with_only_a_model_connection_works_and_then_waits(
    tmp_path: Path, name: str, spawn: Callable[..., FakeAgent], model_api: tuple[str, int]
) -> None:
    host, port = model_api
    variable = AGENTS[name].watch.endpoint_variables[0]
    agent = spawn(name, {variable: f"http://{host}:{port}/v1"})
    watcher = watcher_of(tmp_path, name, stall_after=60)
    first = watcher.poll()
    assert first.state is AgentState.WAITING and first.sessions == 1, first  # alive is not activity
    agent.say(f"connect {host}:{port}")  # a turn: the request is out, nothing is written
    s = watcher.poll()
    assert s.state is AgentState.WORKING and s.model_connections == 1, s
    if AGENTS[name].watch.turn_log is TurnLog.NONE:
        assert s.detail.startswith("1 model connection(s) open"), s
    agent.say("close")  # the answer came
    s = watcher.poll()
    assert s.state is AgentState.WAITING and s.model_connections == 0, s


@pytest.mark.parametrize("name", OTHERS)
def test_a_connection_elsewhere_than_its_model_api_is_no_work(
    tmp_path: Path, name: str, spawn: Callable[..., FakeAgent], model_api: tuple[str, int]
) -> None:
    host, port = model_api
    variable = AGENTS[name].watch.endpoint_variables[0]
    # Its model is on another port: this connection is telemetry, an update check, a web fetch.
    agent = spawn(name, {variable: f"http://{host}:{port + 1 if port < 65535 else port - 1}/v1"})
    watcher = watcher_of(tmp_path, name, stall_after=60)
    watcher.poll()
    agent.say(f"connect {host}:{port}")
    s = watcher.poll()
    assert s.state is AgentState.WAITING and s.model_connections == 0, s


def test_a_process_of_another_name_is_not_the_agent(tmp_path: Path, spawn: Callable[..., FakeAgent]) -> None:
    spawn("codex")
    assert watcher_of(tmp_path, "aider").poll().state is AgentState.ABSENT
    assert watcher_of(tmp_path, "codex").poll().state is AgentState.WAITING


def test_an_agent_its_interpreter_runs_with_options_first_is_the_agent(
    tmp_path: Path, spawn: Callable[..., FakeAgent], model_api: tuple[str, int]
) -> None:
    """As gemini's relaunched child is (`node --max-old-space-size=N .../gemini`): the process
    that holds its model connection."""
    host, port = model_api
    agent = spawn("gemini", {"GOOGLE_GEMINI_BASE_URL": f"http://{host}:{port}"}, options=("-u", "-B"))
    watcher = watcher_of(tmp_path, "gemini", stall_after=60)
    assert watcher.poll().state is AgentState.WAITING
    agent.say(f"connect {host}:{port}")
    s = watcher.poll()
    assert s.state is AgentState.WORKING and s.model_connections == 1, s


# -- a further session of another agent: every offered agent is watched -------------------------


def test_every_other_offered_agent_reaches_the_vm_with_the_workspaces_own() -> None:
    others = tuple(AGENTS[name].watch for name in OTHERS)
    settings = WatchSettings(other_agents=others)
    assert WatchSettings.from_toml(settings.to_toml()).other_agents == others
    bad = WatchSettings(other_agents=(AgentWatch(processes=("co dex",)),)).to_toml()
    with pytest.raises(DocumentError, match="other_agents"):
        WatchSettings.from_toml(bad)


def test_a_codex_session_in_a_claude_workspace_keeps_it_working_and_is_judged_alone(
    tmp_path: Path, spawn: Callable[..., FakeAgent], model_api: tuple[str, int]
) -> None:
    host, port = model_api
    config = AgentConfig(
        user=getpass.getuser(), watch=AGENTS["claude"].watch, hook_events=None, only_under=tmp_path / "repo"
    )
    watchers = AgentWatchers(config, tuple(AGENTS[name].watch for name in OTHERS))
    assert watchers.poll().state is AgentState.ABSENT  # no agent of any kind yet
    codex = spawn("codex", {"OPENAI_BASE_URL": f"http://{host}:{port}/v1"})
    idle = watchers.poll()
    assert idle.state is AgentState.WAITING and idle.sessions == 1, idle
    codex.say(f"connect {host}:{port}")
    busy = watchers.poll()
    assert busy.state is AgentState.WORKING and busy.model_connections == 1, busy
    ((pid, state, _),) = busy.per_session  # `vmgen session list` matches it to its window
    assert pid == codex.proc.pid and state is AgentState.WORKING


def test_every_agent_is_looked_for_in_one_scan_of_the_processes_a_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watching five agents costs the watchdog one scan of /proc a tick, as watching one did."""
    scans = []
    real = psutil.process_iter

    def counted(*args: Any, **kwargs: Any) -> Any:
        scans.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(psutil, "process_iter", counted)
    config = AgentConfig(user=getpass.getuser(), watch=AGENTS["claude"].watch, hook_events=None)
    watchers = AgentWatchers(config, tuple(AGENTS[name].watch for name in OTHERS))
    assert len(watchers.others) == len(OTHERS)
    watchers.poll()
    watchers.poll()
    assert len(scans) == 2


def test_sessions_of_several_agents_combine_as_one_agents_sessions_do() -> None:
    claude = AgentSignals(
        AgentState.WAITING, detail="at its prompt", sessions=1, per_session=((10, AgentState.WAITING, "at its prompt"),)
    )
    codex = AgentSignals(
        AgentState.WORKING,
        model_connections=1,
        detail="turn open",
        sessions=1,
        per_session=((20, AgentState.WORKING, "turn open"),),
    )
    absent = AgentSignals(AgentState.ABSENT, detail="no aider process")
    merged = merge_signals(claude, [codex, absent])
    assert merged.state is AgentState.WORKING and merged.sessions == 2 and merged.model_connections == 1
    assert merged.detail == "turn open; of 2 sessions: 1 working, 1 waiting"
    assert [p for p, _, _ in merged.per_session] == [10, 20]
    nobody = AgentSignals(AgentState.ABSENT, detail="no claude process of agent")
    assert merge_signals(nobody, [absent]) is nobody  # the workspace's own agent says it is gone
    assert merge_signals(claude, [absent]) is claude


# -- codex's rollout: its own statement of the turn ------------------------------------------


def rollout_line(kind: str, payload: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return json.dumps({"timestamp": stamp, "type": kind, "payload": payload}) + "\n"


def rollout_path(home: Path) -> Path:
    day = home / ".codex" / "sessions" / "2026" / "12" / "07"
    day.mkdir(parents=True, exist_ok=True)
    return day / "rollout-2026-12-07T15-55-55-01a25138-0418-7051-aae9-e581ee83732e.jsonl"


def test_rollout_turns_and_tool_calls() -> None:
    turn = RolloutTurn()
    for kind, payload in [
        ("session_meta", {"id": "x"}),
        ("event_msg", {"type": "task_started"}),
        ("response_item", {"type": "function_call", "call_id": "c1", "name": "shell"}),
    ]:
        turn.feed(json.loads(rollout_line(kind, payload)))
    assert turn.turn_open and turn.pending == {"c1"} and turn.tool_since is not None
    turn.feed(json.loads(rollout_line("response_item", {"type": "function_call_output", "call_id": "c1"})))
    assert turn.turn_open and not turn.pending
    turn.feed(json.loads(rollout_line("event_msg", {"type": "turn_aborted", "reason": "interrupted"})))
    assert (turn.turn_open, turn.last_event) == (False, "turn aborted")


def test_codex_works_while_its_rollout_says_a_turn_is_open_and_its_pool_is_no_work(
    tmp_path: Path, spawn: Callable[..., FakeAgent], model_api: tuple[str, int]
) -> None:
    host, port = model_api
    rollout = rollout_path(tmp_path / "home")
    rollout.write_text(rollout_line("session_meta", {"id": "s"}))
    agent = spawn("codex", {"OPENAI_BASE_URL": f"http://{host}:{port}/v1"})
    watcher = watcher_of(tmp_path, "codex", stall_after=60)
    assert watcher.poll().state is AgentState.WAITING
    with rollout.open("a") as f:
        f.write(rollout_line("event_msg", {"type": "task_started"}))
    agent.say(f"connect {host}:{port}")
    s = watcher.poll()
    assert s.state is AgentState.WORKING and s.turn_open and "model connection" in s.detail, s
    with rollout.open("a") as f:
        f.write(rollout_line("event_msg", {"type": "task_complete"}))
    # The turn is over; the HTTP client keeps its connection for the next one: no work.
    s = watcher.poll()
    assert s.state is AgentState.WAITING and not s.turn_open, s
    assert watcher.poll().state is AgentState.WAITING


# -- state folders: a write is work ---------------------------------------------------------


def test_gemini_writing_its_chat_works_and_then_waits(tmp_path: Path, spawn: Callable[..., FakeAgent]) -> None:
    chats = tmp_path / "home" / ".gemini" / "tmp" / "0123abcd" / "chats"
    chats.mkdir(parents=True)
    agent = spawn("gemini")
    watcher = watcher_of(tmp_path, "gemini", stall_after=60)
    assert watcher.poll().state is AgentState.WAITING  # the baseline: no chat yet
    agent.say(f"write {chats / 'session-1.json'}")
    s = watcher.poll()
    assert s.state is AgentState.WORKING and "writes its conversation" in s.detail, s
    assert watcher.poll().state is AgentState.WAITING


# -- attacks on root's new reads --------------------------------------------------------------


def test_a_symlinked_folder_in_a_state_folder_is_not_followed(tmp_path: Path) -> None:
    outside, state = tmp_path / "outside", tmp_path / "state"
    outside.mkdir()
    state.mkdir()
    (state / "link").symlink_to(outside)
    (state / "file-link").symlink_to(outside / "fresh")
    folders = StateFolders(AgentFiles(os.getuid()))
    assert not folders.written([state])
    (outside / "fresh").write_text("x")  # written behind the links
    assert not folders.written([state])
    (state / "own").write_text("x")
    assert folders.written([state])


def test_a_state_file_is_its_own_path_and_a_link_in_its_place_is_not_followed(tmp_path: Path) -> None:
    database, outside = tmp_path / "opencode.db-wal", tmp_path / "outside"
    outside.write_text("x")
    database.symlink_to(outside)
    folders = StateFolders(AgentFiles(os.getuid()))
    assert not folders.written([database])
    outside.write_text("written behind the link")
    assert not folders.written([database])
    database.unlink()
    database.write_text("the agent's own")
    assert folders.written([database])


@pytest.mark.skipif(os.getuid() != 0, reason="planting a file of another owner takes root, as the VM's watchdog is")
def test_a_state_file_of_another_owner_is_no_write_of_the_agents(tmp_path: Path) -> None:
    folders = StateFolders(AgentFiles(os.getuid()))
    assert not folders.written([tmp_path])
    foreign = tmp_path / "foreign"
    foreign.write_text("x")
    os.chown(foreign, 12345, 12345)
    assert not folders.written([tmp_path])


def poll_in_thread(reader: RolloutReader, held: list[Path]) -> Any:
    """The reader's answer, from a thread root's tick would not outlive: a read that blocked
    (a FIFO opened for reading) leaves the thread hanging and the assertion says so."""
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(reader.poll(held)), daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert answer, "reading the rollout blocked"
    return answer[0]


def test_a_rollout_that_is_a_fifo_a_link_or_huge_never_blocks_or_misleads_root(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    day = sessions / "2026" / "12" / "07"
    day.mkdir(parents=True)
    secret = tmp_path / "secret.jsonl"
    secret.write_text(rollout_line("event_msg", {"type": "task_started"}))
    reader = RolloutReader(sessions, AgentFiles(os.getuid()))
    # A link named like a rollout that a process holds open, to a file that says a turn is open.
    (day / "rollout-a.jsonl").symlink_to(secret)
    assert not poll_in_thread(reader, [day / "rollout-a.jsonl"]).turn_open
    # A FIFO as the rollout a process holds open: opening it for reading would block.
    os.mkfifo(day / "rollout-b.jsonl")
    assert not poll_in_thread(reader, [day / "rollout-b.jsonl"]).turn_open
    # A file held open outside the sessions folder is not taken for the rollout at all.
    assert reader.locate([secret]) is None
    # A huge rollout: only its tail is read, and the statement at its end still counts.
    huge = day / "rollout-c.jsonl"
    with huge.open("wb") as f:
        f.truncate(200 << 20)  # 200 MB of NUL bytes (sparse: nothing is written)
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + rollout_line("event_msg", {"type": "task_started"}).encode())
    state = poll_in_thread(reader, [huge])
    assert state.turn_open and state.path == huge, state
