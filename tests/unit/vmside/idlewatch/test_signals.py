"""Idle watchdog signals on real files, real processes and a real tmux: no mocks of the OS."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.polling import wait_until
from vmgen.contract.documents import Clocks
from vmgen.vmside.agentfs import AgentFiles
from vmgen.vmside.idlewatch.agent import AgentConfig, AgentWatcher, Evidence, classify
from vmgen.vmside.idlewatch.files import FileWatcher, IgnoreRules
from vmgen.vmside.idlewatch.humans import (
    SSHD_SESSION,
    HumansConfig,
    count_tmux_clients,
    count_unix_connections,
    count_web_connections,
    is_person,
    read_leases,
    tmux_sockets,
)
from vmgen.vmside.idlewatch.model import AgentState
from vmgen.vmside.idlewatch.signals import SignalCollector, SignalConfig
from vmgen.vmside.idlewatch.transcript import (
    HookState,
    SessionStatus,
    TranscriptReader,
    TranscriptState,
    fuse_turn,
    project_dir_name,
)
from vmgen.vmside.privileges import RunAs

# -- transcript ------------------------------------------------------------------------------


def prompt(text: str, ts: str = "2026-01-01T00:00:00.000Z") -> dict[str, Any]:
    return {"type": "user", "timestamp": ts, "message": {"role": "user", "content": text}}


def assistant(
    blocks: list[dict[str, Any]], stop: str | None, msg_id: str = "msg_1", ts: str = "2026-01-01T00:00:01.000Z"
) -> dict[str, Any]:
    return {
        "type": "assistant",
        "timestamp": ts,
        "message": {"id": msg_id, "role": "assistant", "content": blocks, "stop_reason": stop},
    }


def tool_result(tool_id: str, ts: str = "2026-01-01T00:00:02.000Z") -> dict[str, Any]:
    return {
        "type": "user",
        "timestamp": ts,
        "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}]},
    }


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}
TEXT = {"type": "text", "text": "done"}


@pytest.fixture
def transcript(tmp_path: Path) -> tuple[TranscriptReader, Path]:
    claude = tmp_path / ".claude"
    folder = claude / "projects" / project_dir_name("/work/my repo")
    folder.mkdir(parents=True)
    path = folder / "session-1.jsonl"
    path.write_text(json.dumps({"type": "mode", "mode": "normal"}) + "\n")
    return TranscriptReader(claude, "/work/my repo", AgentFiles(os.getuid())), path


def append(path: Path, *lines: dict[str, Any], raw: str = "") -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines) + raw)


def test_project_dir_name() -> None:
    assert project_dir_name("/home/agent/work/my_app.v2") == "-home-agent-work-my-app-v2"


def test_turn_lifecycle(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    first = reader.poll()
    assert (first.turn_open, first.grew) == (False, 0)  # first sight is a baseline
    append(path, prompt("fix the tests"))
    s = reader.poll()
    assert s.turn_open and not s.tool_running and s.grew > 0
    append(path, assistant([TOOL_USE], "tool_use"), {"type": "file-history-snapshot"})
    s = reader.poll()
    assert s.turn_open and s.tool_running
    assert reader.poll().grew == 0
    append(path, tool_result("toolu_1"), {"type": "attachment"}, {"type": "api-request"})
    s = reader.poll()
    assert s.turn_open and not s.tool_running
    append(path, assistant([TEXT], "end_turn", msg_id="msg_2", ts="2026-01-01T00:00:09.000Z"))
    s = reader.poll()
    assert not s.turn_open and not s.tool_running and not s.tentative
    assert s.changed_at == pytest.approx(1767225609.0)


def test_streamed_message_with_null_stop_reason(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    append(path, prompt("go"), assistant([{"type": "text", "text": "Let me look."}], None))
    s = reader.poll()
    assert not s.turn_open and s.tentative  # text-only so far: maybe final, maybe not
    append(path, assistant([TOOL_USE], None))  # same message id: it used a tool after all
    s = reader.poll()
    assert s.turn_open and s.tool_running


def test_partial_last_line_waits_for_its_end(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    reader.poll()
    line = json.dumps(prompt("hello"))
    append(path, raw=line[:20])
    s = reader.poll()
    assert not s.turn_open and s.grew == 20
    append(path, raw=line[20:] + "\n")
    assert reader.poll().turn_open


def test_truncation_and_rotation(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    append(path, prompt("one"))
    assert reader.poll().turn_open
    path.write_text(json.dumps(assistant([TEXT], "end_turn")) + "\n")  # truncated in place
    s = reader.poll()
    assert not s.turn_open and s.grew > 0
    rotated = path.with_suffix(".new")
    rotated.write_text(json.dumps(prompt("two")) + "\n")
    rotated.replace(path)  # a new inode under the same name
    assert reader.poll().turn_open


def test_interrupt_and_local_commands_close_the_turn(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    append(path, prompt("go"), assistant([TOOL_USE], "tool_use"))
    assert reader.poll().tool_running
    append(
        path,
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "[Request interrupted by user for tool use]",
                    }
                ],
            },
        },
    )
    s = reader.poll()
    assert not s.turn_open and not s.tool_running
    append(path, prompt("<command-name>/model</command-name>"))
    assert reader.poll().turn_open
    append(path, prompt("<local-command-stdout>Set model to opus</local-command-stdout>"))
    assert not reader.poll().turn_open
    append(path, prompt("meta context") | {"isMeta": True}, {"type": "system", "subtype": "other"})
    assert not reader.poll().turn_open


def test_first_read_only_takes_the_tail(tmp_path: Path) -> None:
    claude = tmp_path / ".claude"
    folder = claude / "projects" / project_dir_name("/w")
    folder.mkdir(parents=True)
    path = folder / "s.jsonl"
    filler = json.dumps({"type": "attachment", "pad": "x" * 1000}) + "\n"
    path.write_text(json.dumps(prompt("old")) + "\n" + filler * 3000 + json.dumps(assistant([TEXT], "end_turn")) + "\n")
    s = TranscriptReader(claude, "/w", AgentFiles(os.getuid())).poll()
    assert not s.turn_open and s.grew == 0


def test_session_file_and_newest_transcript(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    other = path.with_name("session-2.jsonl")
    other.write_text(json.dumps(prompt("newer")) + "\n")
    os.utime(path, (time.time() - 100, time.time() - 100))
    assert reader.locate() == other
    assert reader.locate("session-1") == path
    assert reader.poll().turn_open


def test_fuse_turn_most_recent_statement_wins() -> None:
    open_prompt = TranscriptState(Path("t"), turn_open=True, changed_at=100.0)
    idle_later = SessionStatus(1, "idle", 105.0, "s", "/w")  # Esc: only the status file knows
    assert fuse_turn(open_prompt, idle_later, HookState()) == (False, "session status")
    assert fuse_turn(open_prompt, SessionStatus(1, "idle", 99.0, "s", "/w"), HookState())[0]
    streaming = TranscriptState(Path("t"), turn_open=False, tentative=True, changed_at=100.0)
    assert fuse_turn(streaming, SessionStatus(1, "busy", 90.0, "s", "/w"), HookState())[0]
    asked = HookState(event="Notification", detail="Claude needs your permission", at=110.0)
    assert fuse_turn(open_prompt, None, asked) == (False, "hook")
    assert fuse_turn(TranscriptState(None), None, HookState()) == (False, "no transcript yet")


@pytest.mark.parametrize(
    "evidence, state",
    [
        ({"turn_open": False}, AgentState.WAITING),
        ({"turn_open": False, "cpu_busy": True}, AgentState.WAITING),  # claude itself: not activity
        ({"turn_open": False, "children_busy": True}, AgentState.WORKING),  # a background build
        ({"turn_open": True, "connections": 1}, AgentState.WORKING),  # slow model, ~0% CPU
        ({"turn_open": True, "grew_recently": True}, AgentState.WORKING),
        ({"turn_open": True, "tool_running": True, "children_busy": True}, AgentState.WORKING),
        ({"turn_open": True, "hook_recent": True}, AgentState.WORKING),
        ({"turn_open": True}, AgentState.STALLED),
        ({"turn_open": True, "tool_running": True}, AgentState.STALLED),  # a tool call without a process
        ({"turn_open": True, "tool_running": True, "tool_alive": ("sleep",)}, AgentState.WORKING),  # silent, alive
        ({"turn_open": False, "new_connections": 1}, AgentState.WORKING),  # a request no statement explains
        ({"turn_open": False, "connections": 1}, AgentState.WAITING),  # the pool's idle sockets after a turn
    ],
)
def test_classify(evidence: dict[str, Any], state: AgentState) -> None:
    base: dict[str, Any] = {
        "turn_source": "transcript",
        "tool_running": False,
        "grew_recently": False,
        "grew_now": False,
        "connections": 0,
        "cpu_busy": False,
        "children_busy": False,
    }
    got, detail = classify(Evidence(**(base | evidence)))
    assert got is state and detail


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for sub in ("src/pkg", "node_modules/dep", ".git/objects/ab", "docs"):
        (root / sub).mkdir(parents=True)
    return root


def changes(watcher: FileWatcher, timeout: float = 10.0) -> int:
    return wait_until(watcher.poll, lambda n: n > 0, timeout)


def test_files_new_directory_then_file(tree: Path) -> None:
    watcher = FileWatcher(tree)
    assert watcher.poll() == 0
    (tree / "src" / "new").mkdir()
    assert changes(watcher) >= 1
    (tree / "src" / "new" / "a.py").write_text("x = 1\n")  # inside the directory born above
    assert changes(watcher) >= 1
    assert watcher.poll() == 0
    (tree / "src" / "new" / "deep" / "er").mkdir(parents=True)
    (tree / "src" / "new" / "deep" / "er" / "b.py").write_text("")  # maybe before its watch
    assert changes(watcher) >= 1
    watcher.close()


def test_files_ignore_globs(tree: Path) -> None:
    watcher = FileWatcher(tree)
    watcher.poll()
    (tree / "node_modules" / "dep" / "index.js").write_text("")
    (tree / ".git" / "objects" / "ab" / "cdef").write_text("")
    (tree / "src" / ".main.py.swp").write_text("")
    (tree / "src" / "pkg" / "__pycache__").mkdir()
    (tree / "src" / "pkg" / "__pycache__" / "m.pyc").write_text("")
    (tree / "docs" / "node_modules").mkdir()  # at any depth
    (tree / "docs" / "node_modules" / "x.js").write_text("")
    sentinel = tree / "src" / "pkg" / "m.py"  # proves the ignored events were delivered first
    sentinel.write_text("")
    assert changes(watcher) == 1
    assert watcher.watched_dirs == 5  # ws, src, src/pkg, docs, .git (only its objects are ignored)


def test_ignore_rules() -> None:
    rules = IgnoreRules(["node_modules/**", "*.swp", "/build/**", ".git/objects/**"])
    assert rules.match("node_modules", is_dir=True) and rules.match("a/node_modules/b/c.js")
    assert rules.match("src/x.swp") and not rules.match("src/x.swpx")
    assert rules.match("build/out") and not rules.match("src/build/out")
    assert rules.match(".git/objects", is_dir=True) and not rules.match(".git/HEAD")


def test_files_fallback_past_the_watch_limit(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(5):
        (tree / "docs" / f"d{i}").mkdir()
        (tree / "docs" / f"d{i}" / "f.txt").write_text("v1")
    watcher = FileWatcher(tree, max_watches=2, scan_budget=4)
    assert watcher.poll() == 0
    assert watcher.watched_dirs == 2 and watcher.scanned_dirs >= 1
    assert "watch limit" in caplog.text
    wait_until(watcher.poll, lambda n: False, timeout=0.5, every=0.01)  # let the scan baseline all
    target = tree / "docs" / "d3" / "f.txt"
    target.write_text("version 2")  # in place: no directory entry changes, only mtime and size
    assert changes(watcher, timeout=5) >= 1
    (tree / "docs" / "d4" / "g.txt").write_text("new")
    assert changes(watcher, timeout=5) >= 1


def test_files_root_appears_later(tmp_path: Path) -> None:
    watcher = FileWatcher(tmp_path / "later")
    assert watcher.poll() == 0
    (tmp_path / "later").mkdir()
    assert watcher.poll() == 0  # first poll that sees it sets up the watches
    (tmp_path / "later" / "f").write_text("")
    assert changes(watcher) == 1


# -- humans ----------------------------------------------------------------------------------


def test_sshd_titles() -> None:
    # (user, a person at a terminal?): vmgen's own commands run without a terminal ("notty").
    titles = {
        "sshd: agent@pts/0": ("agent", True),
        "sshd: agent@notty": ("agent", False),
        "sshd-session: dev@pts/3": ("dev", True),
        "sshd-session: agent@notty": ("agent", False),
        "sshd: root@pts/1": ("root", False),
        "sshd: agent [priv]": (None, False),
        "sshd: unknown [preauth]": (None, False),
        "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100": (None, False),
    }
    for title, (user, person) in titles.items():
        match = SSHD_SESSION.match(title)
        assert (match["user"] if match else None) == user, title
        assert is_person(title) is person, title


@pytest.fixture
def tmux_server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "tmux").mkdir()
    sock = str(tmp_path / "tmux" / "tmux.sock")
    subprocess.run(["tmux", "-S", sock, "new-session", "-d", "-s", "main", "sleep 600"], check=True)
    yield sock
    subprocess.run(["tmux", "-S", sock, "kill-server"], check=False, capture_output=True)


ME = RunAs.current()


def test_tmux_clients(tmux_server: str, tmp_path: Path) -> None:
    assert count_tmux_clients([tmux_server], ME) == 0
    client = subprocess.Popen(
        ["script", "-qfc", f"tmux -S {tmux_server} attach -t main", "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: count_tmux_clients([tmux_server], ME), lambda n: n == 1) == 1
        assert tmux_sockets(tmp_path / "tmux", AgentFiles(os.getuid())) == [Path(tmux_server)]
    finally:
        client.terminate()
        client.wait(10)
    assert wait_until(lambda: count_tmux_clients([tmux_server], ME), lambda n: n == 0) == 0


def test_tmux_no_or_stale_sockets(tmp_path: Path) -> None:
    assert count_tmux_clients([], ME) == 0
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on: the server died
    assert count_tmux_clients([str(stale)], ME) == 0


def test_web_connections() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    before = count_web_connections([port])
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    try:
        assert before == 0 and count_web_connections([port]) == 1  # the accepted end, not ours
    finally:
        for s in (client, conn, server):
            s.close()


def test_connections_to_the_pages_unix_socket(tmp_path: Path) -> None:
    """Without a domain, `vmgen open` tunnels to the page's unix socket: a person on the page."""
    path = tmp_path / "page.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    before = count_unix_connections([path])
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(path))
    conn, _ = server.accept()
    try:
        assert before == 0 and count_unix_connections([path]) == 1  # the accepted end; the listener is not
        assert count_unix_connections([tmp_path / "other.sock"]) == 0
    finally:
        for s in (client, conn, server):
            s.close()
    assert count_unix_connections([path]) == 0


def test_leases(tmp_path: Path) -> None:
    path = tmp_path / "leases.json"
    files = AgentFiles(os.getuid())
    assert read_leases(path, files) == ()
    path.write_text(
        json.dumps(
            [
                {"until": 1000.0 + 3600, "reason": "long build"},
                {"until": 999.0, "reason": "expired"},
                {"reason": "no until"},
            ]
        )
    )
    leases = read_leases(path, files, monotonic=lambda: 50.0, now=lambda: Clocks(wall=1000.0))
    assert [(lease.until, lease.reason) for lease in leases] == [(3650.0, "long build")]
    assert read_leases(path, files, monotonic=lambda: 50.0, now=lambda: Clocks(wall=5000.0)) == ()
    path.write_text("{not json")
    assert read_leases(path, files) == ()


def test_a_lease_holds_by_the_boot_clock_whatever_the_wall_clock_does(tmp_path: Path) -> None:
    from vmgen.vmside import leases as lease_file

    path = tmp_path / "leases.json"
    taken = Clocks(wall=1000.0, boot="b1", boottime=50.0)
    lease_file.add(600, "build", path, now=taken)
    written = json.loads(path.read_text())[0]
    assert (written["until"], written["boot"], written["boot_until"]) == (1600.0, "b1", 650.0)
    files = AgentFiles(os.getuid())

    def left(wall: float, boottime: float, boot: str = "b1") -> list[float]:
        now = Clocks(wall=wall, boot=boot, boottime=boottime)
        return [lease.until for lease in read_leases(path, files, monotonic=lambda: 0.0, now=lambda: now)]

    assert left(1100.0, 150.0) == [500.0]
    assert left(1100.0 + 7200, 150.0) == [500.0]  # +2 h step: not dropped
    assert left(1100.0 - 7200, 150.0) == [500.0]  # -2 h step: not stretched
    assert left(1700.0 - 7200, 700.0) == []  # over on the boot clock, whatever the wall says
    assert left(1100.0, 20.0, boot="b2") == [500.0]  # another boot: its wall-clock end is all there is


# -- agent processes -------------------------------------------------------------------------

FAKE_AGENT = """
import socket, subprocess, sys, time
mode = sys.argv[1]
if mode == "burn":  # a child burns CPU, like a test suite the agent started
    subprocess.Popen([sys.executable, "-c", "while True: pass"])
if mode.startswith("connect:"):
    host, port = mode.split(":")[1:]
    conn = socket.create_connection((host, int(port)))
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def spawn_claude(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`claude SCRIPT ARGS...`: a python3 behind a symlink named claude, so its comm is "claude",
    run in tmp_path/repo; started once it printed "ready", killed with its children at the end."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(os.path.realpath(sys.executable))
    (tmp_path / "repo").mkdir(exist_ok=True)
    procs: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str) -> subprocess.Popen[str]:
        program = tmp_path / f"agent{len(procs)}.py"
        program.write_text(script)
        proc = subprocess.Popen(
            [str(bindir / "claude"), str(program), *args], cwd=tmp_path / "repo", stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


@pytest.fixture
def fake_claude(spawn_claude: Callable[..., subprocess.Popen[str]]) -> Callable[[str], subprocess.Popen[str]]:
    """`claude <mode>`: idle, a child burning CPU ("burn"), or connected ("connect:HOST:PORT")."""
    return lambda mode: spawn_claude(FAKE_AGENT, mode)


def watcher_for(tmp_path: Path, **kw: Any) -> AgentWatcher:
    config = AgentConfig(
        user=getpass.getuser(), claude_dir=tmp_path / ".claude", hook_events=None, only_under=tmp_path / "repo", **kw
    )
    return AgentWatcher(config)


def settle(watcher: AgentWatcher, ok: Callable[[Any], bool]) -> Any:
    watcher.poll()  # the baseline for CPU deltas
    return wait_until(watcher.poll, ok, timeout=10, every=0.5)


def test_agent_absent(tmp_path: Path) -> None:
    assert watcher_for(tmp_path).poll().state is AgentState.ABSENT


def test_idle_agent_waits_and_busy_child_works(tmp_path: Path, fake_claude: Any) -> None:
    fake_claude("idle")
    watcher = watcher_for(tmp_path)
    s = settle(watcher, lambda s: s.state is AgentState.WAITING)
    assert s.state is AgentState.WAITING and not s.cpu_busy, s
    fake_claude("burn")
    s = settle(watcher, lambda s: s.state is AgentState.WORKING)
    assert s.state is AgentState.WORKING and s.cpu_busy and "child" in s.detail, s


def non_loopback_ipv4() -> str:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    # The test script starts dockerd, whose docker0 bridge has one: its absence is a broken setup.
    raise AssertionError("no non-loopback IPv4 address to stand in for the model API (is dockerd running?)")


def test_open_turn_with_model_connection_works_then_stalls(tmp_path: Path, fake_claude: Any) -> None:
    folder = tmp_path / ".claude" / "projects" / project_dir_name(tmp_path / "repo")
    folder.mkdir(parents=True)
    (folder / "s.jsonl").write_text(json.dumps(prompt("slow one", ts="2020-01-01T00:00:00Z")) + "\n")
    os.utime(folder / "s.jsonl", (time.time() - 3600, time.time() - 3600))  # no recent growth
    api = socket.create_server((non_loopback_ipv4(), 0))
    host, port = api.getsockname()[:2]
    proc = fake_claude(f"connect:{host}:{port}")
    conn, _ = api.accept()
    watcher = watcher_for(tmp_path, stall_after=60)
    s = settle(watcher, lambda s: s.state is AgentState.WORKING)
    assert s.state is AgentState.WORKING and s.turn_open and s.model_connections == 1, s
    conn.close()
    api.close()
    s = wait_until(watcher.poll, lambda s: s.state is AgentState.STALLED, timeout=10, every=0.5)
    assert s.state is AgentState.STALLED and s.model_connections == 0, (s, proc.pid)
    loopback = watcher_for(tmp_path, stall_after=60, excluded_remotes=(f"{host}/32",))
    assert loopback.poll().model_connections == 0


def test_collector_snapshot(tmp_path: Path, tmux_server: str) -> None:
    (tmp_path / "repo").mkdir()
    config = SignalConfig.for_user(
        getpass.getuser(),
        tmp_path / "repo",
        hook_events=None,
        claude_dir=tmp_path / ".claude",
        only_under=tmp_path / "repo",
    )
    config = SignalConfig(
        workspace=config.workspace,
        agent=config.agent,
        humans=HumansConfig(
            agent_user=getpass.getuser(),
            tmux_dir=Path(tmux_server).parent,
            web_ports=(1,),
            leases_path=tmp_path / "leases.json",
        ),
    )
    collector = SignalCollector(config)
    first = collector.snapshot()
    assert first.agent.state is AgentState.ABSENT and first.files_changed == 0
    (tmp_path / "repo" / "f.txt").write_text("x")
    (tmp_path / "leases.json").write_text(json.dumps([{"until": time.time() + 60, "reason": "r"}]))
    snap = wait_until(collector.snapshot, lambda s: s.files_changed > 0)
    assert snap.files_changed == 1 and snap.leases[0].reason == "r" and snap.humans.tmux_clients == 0

    def broken() -> int:
        raise OSError("inotify went away")

    collector._files.poll = broken  # type: ignore[method-assign]  # a source breaks...
    assert collector.snapshot().files_changed == 0  # ...and reads as neutral
    collector.close()


def test_past_the_watch_limit_every_folder_is_seen_within_the_window(tmp_path: Path) -> None:
    # 40 folders of 50 files, 2 watches: the rest is scanned, and a change in the very last
    # folder must show within `window` ticks even though the per-tick floor is tiny.
    tree = tmp_path / "tree"
    for d in range(40):
        (tree / f"d{d:02}").mkdir(parents=True)
        for f in range(50):
            (tree / f"d{d:02}" / f"f{f}").write_text("x")
    window = 4
    watcher = FileWatcher(tree, max_watches=2, scan_budget=10, scan_window_ticks=window)
    for _ in range(window + 1):  # a first pass learns each folder's size and signature
        watcher.poll()
    last = tree / "d39" / "f0"
    last.write_text("changed")
    os.utime(last, (time.time() + 5, time.time() + 5))  # a new mtime even on a coarse clock
    seen = [watcher.poll() for _ in range(window)]
    assert sum(seen) >= 1, seen
    watcher.close()


# -- sessions: hook events, transcripts and processes per agent session ----------------------------


def test_the_hook_program_records_the_session_and_its_transcript(tmp_path: Path) -> None:
    from vmgen.contract.names import VmPaths
    from vmgen.laptop.builder.render import agent_event_hook

    paths = VmPaths(home=tmp_path)
    hook = tmp_path / "agent-event"
    hook.write_text(agent_event_hook(paths))
    hook.chmod(0o755)
    payload = {
        "session_id": "1b2c-session",
        "transcript_path": "/home/agent/.claude/projects/-w/1b2c-session.jsonl",
        "cwd": "/w",
        "hook_event_name": "PreToolUse",
        "tool_input": {"content": "x" * 200_000},
    }
    subprocess.run([str(hook), "PreToolUse"], input=json.dumps(payload), text=True, check=True)
    subprocess.run([str(hook), "Stop"], input="not json", text=True, check=True)  # still a line
    first, second = [json.loads(line) for line in paths.hook_events.read_text().splitlines()]
    assert first["event"] == "PreToolUse" and first["session"] == "1b2c-session"
    assert first["transcript"] == payload["transcript_path"] and "tool_input" not in first
    assert second["event"] == "Stop" and "session" not in second


def test_each_session_keeps_its_own_newest_statement(tmp_path: Path) -> None:
    from vmgen.vmside.idlewatch.transcript import HookReader

    events = tmp_path / "agent-events.jsonl"
    events.write_text("")
    reader = HookReader(events, AgentFiles(os.getuid()))
    reader.poll()
    now = time.time()
    lines = [
        {"at": now - 30, "event": "UserPromptSubmit", "session": "A"},
        {"at": now - 20, "event": "UserPromptSubmit", "session": "B", "transcript": "/t/B.jsonl"},
        {"at": now - 10, "event": "Stop", "session": "A"},
        {"at": now - 5, "event": "Notification", "session": "A"},
        {"at": now - 1, "event": "Stop"},  # an older hook script: no session
        {"at": now, "event": "Stop", "session": "../../etc"},
    ]  # not a session id: none
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    sessions = reader.poll()
    assert sessions["A"].event == "Notification" and sessions["B"].event == "UserPromptSubmit"
    assert sessions["B"].transcript == "/t/B.jsonl" and sessions["B"].activity_at == pytest.approx(now - 20)
    assert sessions[""].event == "Stop" and "../../etc" not in sessions


def test_a_transcript_named_by_a_hook_is_followed_only_inside_claudes_folder(
    transcript: tuple[TranscriptReader, Path], tmp_path: Path
) -> None:
    reader, path = transcript
    other = path.parent.parent / "-elsewhere" / "moved.jsonl"  # the session's folder after a cd
    other.parent.mkdir()
    other.write_text(json.dumps(prompt("here")) + "\n")
    assert reader.locate(None, other) == other
    outside = tmp_path / "notes.jsonl"
    outside.write_text("")
    assert reader.locate("session-1", outside) == path
    assert reader.locate("session-1", path.parent / ".." / "x" / "session-1.jsonl") == path


def test_an_open_tool_call_remembers_when_it_began(transcript: tuple[TranscriptReader, Path]) -> None:
    reader, path = transcript
    append(path, prompt("run the suite"), assistant([TOOL_USE], "tool_use", ts="2026-01-01T00:00:05.000Z"))
    s = reader.poll()
    assert s.tool_running and s.tool_since == pytest.approx(1767225605.0)
    append(path, tool_result("toolu_1"))
    assert reader.poll().tool_since is None


SESSION_AGENT = """
import json, os, pathlib, socket, subprocess, sys, time
claude, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
helper = subprocess.Popen(["sleep", "600"])  # started with the session, like an MCP server
(claude / "sessions").mkdir(parents=True, exist_ok=True)
(claude / "sessions" / f"{os.getpid()}.json").write_text(json.dumps(
    {"pid": os.getpid(), "sessionId": "s1", "cwd": os.getcwd(), "status": "busy"}))
time.sleep(2.5)  # the tool call begins well after the helper started
folder = claude / "projects" / "".join(c if c.isalnum() else "-" for c in os.getcwd())
folder.mkdir(parents=True, exist_ok=True)
now = time.time()
stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
lines = [{"type": "user", "timestamp": stamp, "message": {"role": "user", "content": "run it"}},
         {"type": "assistant", "timestamp": stamp, "message": {"id": "m", "role": "assistant",
          "stop_reason": "tool_use", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}}]
(folder / "s1.jsonl").write_text("".join(json.dumps(line) + "\\n" for line in lines))
if mode == "tool":
    subprocess.Popen(["sleep", "600"])  # the tool call's own process: silent, alive
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def session_agent(tmp_path: Path, spawn_claude: Any) -> Callable[[str], subprocess.Popen[str]]:
    """`claude`: writes a session status file and a transcript with an open tool call, after a
    long-lived helper it started before the call and (mode "tool") with a silent tool process."""
    return lambda mode: spawn_claude(SESSION_AGENT, str(tmp_path / ".claude"), mode)


def test_a_silent_tool_call_with_a_live_process_works_past_the_stall_limit(tmp_path: Path, session_agent: Any) -> None:
    agent = session_agent("tool")
    watcher = watcher_for(tmp_path, stall_after=0.5)
    watcher.poll()
    time.sleep(1.0)  # past stall_after with nothing written: the claim is about this quiet
    s = watcher.poll()
    assert s.state is AgentState.WORKING and s.tool_alive and "tool running (sleep)" in s.detail, s
    # Each session's own state, by its agent process (`vmgen session list` matches it to a window).
    assert [(pid, state) for pid, state, _ in s.per_session] == [(agent.pid, AgentState.WORKING)]


def test_a_tool_call_whose_only_process_predates_it_is_stalled(tmp_path: Path, session_agent: Any) -> None:
    session_agent("no-tool")  # only the helper, started before the call
    watcher = watcher_for(tmp_path, stall_after=0.5)
    watcher.poll()
    time.sleep(1.0)
    s = watcher.poll()
    assert s.state is AgentState.STALLED and s.tool_running and not s.tool_alive, s


def test_a_new_connection_outside_a_turn_works_and_the_turns_pool_does_not(tmp_path: Path, fake_claude: Any) -> None:
    api = socket.create_server((non_loopback_ipv4(), 0))
    host, port = api.getsockname()[:2]
    watcher = watcher_for(tmp_path, stall_after=60)
    watcher.poll()  # the watchdog's first look: nothing yet
    fake_claude(f"connect:{host}:{port}")  # no transcript: at its prompt
    conn, _ = api.accept()
    try:
        s = settle(watcher, lambda s: s.state is AgentState.WORKING)
        assert s.state is AgentState.WORKING and "new model connection" in s.detail, s
        stale = watcher_for(tmp_path, stall_after=60)  # a watchdog started after it connected
        stale.poll()
        assert stale.poll().state is AgentState.WAITING  # taken as the idle pool, not a request
    finally:
        conn.close()
        api.close()


def test_a_turn_between_two_ticks_leaves_its_connection_in_the_pool(tmp_path: Path, fake_claude: Any) -> None:
    # A quick answer: the turn opened and ended between two ticks, over a connection the HTTP
    # client then keeps for its next request. That is no request a statement leaves unexplained.
    api = socket.create_server((non_loopback_ipv4(), 0))
    host, port = api.getsockname()[:2]
    watcher = watcher_for(tmp_path, stall_after=60)
    watcher.poll()
    folder = tmp_path / ".claude" / "projects" / project_dir_name(tmp_path / "repo")
    folder.mkdir(parents=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 1))  # clamped to now when read
    append(folder / "s.jsonl", prompt("quick one", ts=stamp), assistant([TEXT], "end_turn", ts=stamp))
    fake_claude(f"connect:{host}:{port}")
    conn, _ = api.accept()
    try:
        s = watcher.poll()
        assert s.state is AgentState.WAITING and not s.turn_open, s
    finally:
        conn.close()
        api.close()
