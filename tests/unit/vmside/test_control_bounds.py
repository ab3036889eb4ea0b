"""Root's control daemon and backups under an agent that does not play along, with the real
socket, real processes and a real local store: a flood of connections and slow clients leave the
laptop's request answered; a second backup hears "busy" at once; requested backups are
rate-limited; a backup whose tar stage the agent stopped ends at root's deadline, and gives way
to the idle action."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vmgen.backup import generate_identity, list_backups, stages
from vmgen.backup.store import LocalStore
from vmgen.contract import codec
from vmgen.contract.control import ControlRequest, Reply
from vmgen.contract.documents import BackupConfig, BackupTarget, WatchdogState
from vmgen.contract.names import VmPaths
from vmgen.errors import BackupBusy, BackupRefused
from vmgen.vmside import backups, control
from vmgen.vmside.backups import run_backup
from vmgen.vmside.privileges import RunAs

ME = RunAs.current()


def vm(root: Path, **target: object) -> VmPaths:
    paths = VmPaths(home=root / "home", etc=root / "etc", state=root / "lib", run=root / "run")
    paths.etc.mkdir(parents=True)
    (paths.home / "work/app").mkdir(parents=True)
    (paths.home / "work/app/main.py").write_text("print('hi')\n")
    store = BackupTarget(kind="local", path=str(root / "store"), **target)  # type: ignore[arg-type]
    paths.backup_config.write_text(BackupConfig(store, "app", generate_identity()[1]).to_toml())
    return paths


def a_state() -> WatchdogState:
    from vmgen.contract.documents import AgentRecord, VerdictRecord

    verdict = VerdictRecord(False, (), 0.0, 0.0, "none", 0.0, 0.0)
    return WatchdogState("boot", {}, verdict, AgentRecord(), time.time())


@pytest.fixture
def daemon(tmp_path):
    """The daemon on a real socket. Connections from this test process are "the laptop" (an SSH
    session of its own); from any other process, the agent's shell."""
    paths = vm(tmp_path)
    paths.run.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(paths.control_socket))
    listener.listen(1024)
    me = os.getpid()
    server = control.ControlServer(
        listener,
        paths,
        ME,
        peer=lambda pid, uid: "ssh session laptop" if pid == me else f"uid {uid}",
        ticks=control.TickShare(ask=lambda paths: a_state()),
    )
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"idle_exit": None, "stop": stop}, daemon=True)
    thread.start()
    yield paths, server
    stop.set()
    thread.join(10)
    listener.close()


FLOOD = textwrap.dedent("""
    import socket, sys, time
    path, count, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    held, busy = [], 0
    for i in range(count):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        held.append(s)
    for s in held[-slow:]:  # slowloris: a byte now and then, never a whole line
        try:
            s.sendall(b"{")
        except OSError:
            pass
    print("connected", flush=True)
    sys.stdin.readline()
    for s in held:
        s.settimeout(0.5)
        try:
            busy += b"busy" in s.recv(4096)
        except OSError:
            pass
    print(busy, flush=True)
""")


def test_a_flood_and_slow_clients_leave_the_laptops_request_answered(daemon):
    paths, server = daemon
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(paths.control_socket), "500", "8"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None and flood.stdin is not None
        assert flood.stdout.readline().strip() == "connected"
        assert len(server._open) <= control.PER_PEER + 1  # the agent's shell holds its share only
        replies = list(control.ask(ControlRequest("tick", trigger="laptop"), paths, timeout=10))
        assert replies[-1].result is not None and replies[-1].result["boot_id"] == "boot"
        flood.stdin.write("\n")
        flood.stdin.flush()
        told_busy = int(flood.stdout.readline())
    finally:
        flood.kill()
        flood.wait()
    assert told_busy >= 400  # at once, in words, instead of a silent close


def test_a_slow_client_is_cut_off_at_the_request_deadline(daemon, monkeypatch):
    monkeypatch.setattr(control, "REQUEST_DEADLINE", 1.5)
    paths, _server = daemon
    with socket.socket(socket.AF_UNIX) as slow:
        slow.connect(str(paths.control_socket))
        started, answer = time.monotonic(), b""
        slow.settimeout(1)
        while b"\n" not in answer and time.monotonic() - started < 10:
            try:
                slow.sendall(b" ")
                answer += slow.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
    assert b"no request within 1.5s" in answer
    assert time.monotonic() - started < 5


def test_at_its_bound_a_peer_makes_room_from_its_own_slowest_connection(daemon):
    paths, server = daemon
    server.per_peer = 2
    held = []
    try:
        for _ in range(2):  # the laptop's own slow connections, holding its share
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(paths.control_socket))
            held.append(s)
        time.sleep(0.2)
        replies = list(control.ask(ControlRequest("tick", trigger="laptop"), paths, timeout=10))
        assert replies[-1].result is not None
    finally:
        for s in held:
            s.close()


def stopped_tar_stage(monkeypatch) -> list[int]:
    """The agent SIGSTOPs the backup's tar stage (its own process) the moment it starts."""
    stopped: list[int] = []
    spawn = stages.spawn

    def spawn_and_stop(kind, *args, **kwargs):
        stage = spawn(kind, *args, **kwargs)
        if kind == "tar":
            os.kill(stage.proc.pid, signal.SIGSTOP)
            stopped.append(stage.proc.pid)
        return stage

    monkeypatch.setattr(stages, "spawn", spawn_and_stop)
    return stopped


def test_a_stopped_tar_stage_ends_at_roots_deadline_and_the_next_backup_runs(tmp_path, monkeypatch):
    paths = vm(tmp_path)
    stopped = stopped_tar_stage(monkeypatch)
    started = time.monotonic()
    result = run_backup("idlewatch", paths, ME, deadline=started + 2)
    assert not result.ok and result.error == "the backup was stopped: it did not finish within its deadline"
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(stopped[0], 0)  # SIGKILL: a stopped process cannot hold it off
    monkeypatch.undo()
    assert run_backup("idlewatch", paths, ME).ok  # the lock is free again


def test_a_second_backup_hears_busy_at_once_and_the_client_asks_again(tmp_path, monkeypatch):
    paths = vm(tmp_path)
    stopped_tar_stage(monkeypatch)
    first = threading.Thread(target=run_backup, args=("shell", paths, ME), kwargs={"deadline": time.monotonic() + 4})
    first.start()
    try:
        deadline = time.monotonic() + 10
        while not paths.backup_lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.monotonic()
        with pytest.raises(BackupBusy, match=r"a backup is already running \(asked for by shell \d+s ago\)"):
            run_backup("laptop", paths, ME)
        assert time.monotonic() - started < 2
    finally:
        first.join(30)


def test_requested_backups_are_rate_limited_and_the_watchdogs_are_not(tmp_path):
    paths = vm(tmp_path, keep_last=7, requests_per_hour=4)
    made = [run_backup("shell", paths, ME) for _ in range(3)]  # at most half of keep_last: 3
    assert all(r.ok for r in made)
    with pytest.raises(BackupRefused, match=r"3 backups were asked for in the last hour.*next can start in 60 min"):
        run_backup("laptop", paths, ME)
    assert run_backup("idlewatch", paths, ME).ok
    assert len(list_backups(LocalStore(tmp_path / "store"), "app")) == 4


def test_a_requested_backup_gives_way_to_the_idle_action(tmp_path, monkeypatch):
    paths = vm(tmp_path)
    stopped_tar_stage(monkeypatch)
    box = []
    worker = threading.Thread(target=lambda: box.append(run_backup("shell", paths, ME)))
    worker.start()
    time.sleep(1)
    paths.action_state.write_text("{}")  # the act unit's first step
    started = time.monotonic()
    worker.join(30)
    assert box and box[0].error == "the backup was stopped: the idle action takes over"
    assert time.monotonic() - started < 5
    with pytest.raises(BackupRefused, match="being backed up and stopped by its idle action"):
        run_backup("laptop", paths, ME)


def test_ask_patiently_says_busy_once_and_asks_again(monkeypatch):
    answers = iter([[Reply(busy="a backup is already running")]] * 2 + [[Reply(result={"ok": True})]])
    monkeypatch.setattr(control, "ask", lambda *a, **k: iter(next(answers)))
    said: list[str] = []
    slept: list[float] = []
    replies = list(control.ask_patiently(ControlRequest("backup"), said=said.append, sleep=slept.append))
    assert said == ["a backup is already running"] and slept == [1.0, 2.0]
    assert replies == [Reply(result={"ok": True})]


def test_a_result_document_written_on_a_full_disk_is_only_logged(tmp_path, monkeypatch):
    paths = vm(tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backups, "write_text", full)
    result = run_backup("idlewatch", paths, ME)
    assert result.ok  # the backup is stored: a full disk does not make it fail (and be made again)
    assert json.loads(codec.dumps(result))["ok"] is True


def test_no_room_for_the_file_index_leaves_the_backup_good_and_says_so(tmp_path, caplog):
    paths = vm(tmp_path)
    paths.backup_index.parent.mkdir(parents=True, exist_ok=True)
    paths.backup_index.write_text("not a folder")  # as good as a full disk: the index cannot be made
    result = run_backup("idlewatch", paths, ME)
    assert result.ok
    assert "no room for its file index" in caplog.text and "the next backup is a full one" in caplog.text
