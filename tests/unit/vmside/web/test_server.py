"""The workspace page's server on its unix socket, and root's page socket behind it (both real, in
threads): the page, the state it assembles (the watchdog's, the last backup, the agent's leases and
activity as root reads them), and actions that refuse cross-site requests and reach the agent only
through root, with root's own deadlines."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_until
from vmgen.contract.control import decode_request, progress_line
from vmgen.contract.documents import WatchSettings
from vmgen.contract.names import VmPaths
from vmgen.contract.pageops import PageRequest, encode_request
from vmgen.contract.phone_actions import KEEPALIVE_BUTTON_SECONDS, PHONE_PATH, keepalive_capability
from vmgen.contract.signed import KEY_VARIABLE, new_key
from vmgen.vmside import pageops
from vmgen.vmside.agentfs import AgentFiles
from vmgen.vmside.privileges import RunAs
from vmgen.vmside.web.activity import activity_of, recent_activity
from vmgen.vmside.web.server import WebSettings, root_ops, serve

TRANSCRIPT = [
    {
        "type": "user",
        "timestamp": "2026-11-25T10:00:00Z",
        "message": {"role": "user", "content": "please add HELLO.md"},
    },
    {
        "type": "assistant",
        "timestamp": "2026-11-25T10:00:02Z",
        "message": {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Sure."},
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "Write",
                    "input": {"file_path": "/home/agent/work/app/HELLO.md"},
                },
            ],
        },
    },
    {
        "type": "user",
        "timestamp": "2026-11-25T10:00:03Z",
        "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    },
    {
        "type": "assistant",
        "timestamp": "2026-11-25T10:00:04Z",
        "message": {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "ls -la"}},
                {"type": "text", "text": "I created HELLO.md."},
            ],
        },
    },
    {"type": "summary", "summary": "bookkeeping"},
]


def test_activity_shows_messages_tools_and_files_not_tool_results():
    items = [(a.kind, a.text) for a in activity_of(TRANSCRIPT)]
    assert items == [
        ("you", "please add HELLO.md"),
        ("agent", "Sure."),
        ("file", "Write /home/agent/work/app/HELLO.md"),
        ("tool", "Bash ls -la"),
        ("agent", "I created HELLO.md."),
    ]
    assert activity_of(TRANSCRIPT, limit=2)[-1].text == "I created HELLO.md."


def test_activity_skips_whatever_is_not_shaped_like_a_transcript():
    """Root reads this for the page: the agent may write anything into its transcript."""
    hostile = [
        [],
        "text",
        7,
        None,
        {"type": "user", "message": ["not", "a", "dict"]},
        {"type": "user", "message": {"content": {"not": "a list"}}},
        {
            "type": "assistant",
            "message": {
                "content": [
                    7,
                    None,
                    {"type": "text", "text": 3},
                    {"type": "tool_use", "name": {"x": 1}, "input": ["y"]},
                ]
            },
        },
        {"type": "user", "timestamp": 1e300, "message": {"content": "a\x1b[31mred\x07 line " + "x" * 1000}},
    ]
    items = activity_of(hostile)
    assert [(a.kind, a.text) for a in items[:1]] == [("tool", "?")]
    assert items[-1].kind == "you" and "\x1b" not in items[-1].text and len(items[-1].text) == 280


def test_a_transcript_reached_through_a_link_is_not_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "s1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in TRANSCRIPT))
    projects = tmp_path / ".claude/projects"
    projects.mkdir(parents=True)
    (projects / "-home-agent-work-app").symlink_to(elsewhere)
    files = AgentFiles(os.getuid())
    assert recent_activity(files, tmp_path / ".claude", "/home/agent/work/app") == []
    (projects / "-home-agent-work-app").unlink()
    (projects / "-home-agent-work-app").mkdir()
    os.mkfifo(projects / "-home-agent-work-app/s2.jsonl")  # would block whoever opens it
    assert recent_activity(files, tmp_path / ".claude", "/home/agent/work/app") == []


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("app.dev.example.com", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(self.path))


def serve_root(vm: VmPaths, context: pageops.Context, page_uid: int) -> socket.socket:
    """Root's page socket, answering as systemd's Accept=yes service would: one serve() a connection."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(vm.page_ops_socket))
    listener.listen()

    def answer(conn: socket.socket) -> None:
        pageops.serve(conn, context, page_uid)
        conn.close()

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


@pytest.fixture
def page(tmp_path):
    home = tmp_path / "home"
    project = home / ".claude/projects/-home-agent-work-app"
    project.mkdir(parents=True)
    (project / "s1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in TRANSCRIPT))
    (home / ".vmgen").mkdir()
    vm = VmPaths(home=home, etc=tmp_path / "etc", state=tmp_path / "lib", run=tmp_path / "run", venv=Path(sys.prefix))
    for folder in (vm.etc, vm.state, vm.run):
        folder.mkdir()
    vm.workspace_info.write_text(json.dumps({"name": "app", "repo_dir": "/home/agent/work/app"}))
    vm.web_links.write_text(json.dumps({"code_url": "https://code.app.dev.example.com/"}))
    vm.watchdog_state.write_text(
        json.dumps(
            {
                "agent": {"state": "waiting"},
                "verdict": {
                    "busy": False,
                    "reasons": ["agent waiting at its prompt"],
                    "idle_for_seconds": 120.0,
                    "next_action": "poweroff",
                    "action_at": time.time() + 600,
                },
            }
        )
    )
    context = pageops.Context(vm, RunAs.current(), session=f"vmgen-test-{time.monotonic_ns()}", tmux_seconds=2)
    root = serve_root(vm, context, os.getuid())
    server = serve(WebSettings(vm=vm, ops=root_ops(vm)), vm.page_socket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield vm, context
    server.shutdown()
    server.server_close()
    root.close()


def call(vm: VmPaths, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, Any]:
    """The status and the decoded JSON answer (the text when it is not JSON: the page itself)."""
    conn = UnixHTTPConnection(vm.page_socket)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(
        "POST" if data is not None else "GET",
        path,
        body=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    response = conn.getresponse()
    raw, status = response.read().decode(), response.status
    conn.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


ACTION = {"X-Vmgen-Action": "1"}


def test_the_page_is_small_and_served(page):
    vm, _ = page
    status, html = call(vm, "/")
    assert status == 200 and "<title>vmgen workspace</title>" in html
    assert len(html.encode()) < 50 * 1024


def test_state_gathers_agent_watchdog_and_activity(page):
    vm, _ = page
    status, state = call(vm, "/api/state")
    assert status == 200
    assert state["workspace"] == "app" and state["agent"]["state"] == "waiting"
    assert state["verdict"]["next_action"] == "poweroff" and state["backup"] is None
    assert state["web"]["code_url"] == "https://code.app.dev.example.com/"
    assert [a["text"] for a in state["activity"]][-1] == "I created HELLO.md."


def test_state_says_what_will_happen_and_the_backup_it_was_restored_from(page):
    vm, _ = page
    deadline = time.time() + 28 * 60
    vm.watchdog_state.write_text(
        json.dumps(
            {
                "agent": {"state": "waiting"},
                "boot_id": "an earlier boot",
                "history": {},
                "updated_at": time.time(),
                "verdict": {
                    "busy": False,
                    "reasons": [],
                    "idle_since": time.time() - 120,
                    "idle_for_seconds": 120.0,
                    "next_action": "none",
                    "action_at": deadline,
                    "deadline": deadline,
                    "action": "backup-then-delete",
                    "condition": "idle",
                    "left_seconds": 28 * 60 + 20,
                },
            }
        )
    )
    vm.restore_result.write_text(
        json.dumps({"ok": True, "backup_id": "20261202T120000Z-ab12", "workspace": "app", "finished_at": time.time()})
    )
    state = call(vm, "/api/state")[1]
    assert state["action_words"] == "backs up and deletes itself"  # not "none in 28m"
    # The page says the verdict as `vmgen status` does (from the seconds left the VM measured).
    assert state["said"]["next"] == "backs up and deletes itself in 28 min unless something happens"
    assert state["said"]["now"] == "idle for 2 min"
    assert state["backup"] is None and state["restored"]["backup_id"] == "20261202T120000Z-ab12"
    html = call(vm, "/")[1]
    assert "said.next" in html and "restored from" in html


def test_keepalive_adds_a_lease_the_watchdog_reads(page):
    vm, _ = page
    status, result = call(vm, "/api/keepalive", {"hours": 4}, ACTION)
    assert status == 200 and result["until"] > time.time() + 4 * 3600 - 60
    assert json.loads(vm.leases.read_text())[0]["reason"] == "from the workspace page"
    time.sleep(2.1)  # the page asks root for leases and activity at most every 2 s
    assert abs(call(vm, "/api/state")[1]["leases"][0]["until"] - result["until"]) < 5
    assert call(vm, "/api/keepalive", {"hours": 100}, ACTION)[0] == 400
    assert call(vm, "/api/keepalive", {"hours": True}, ACTION)[0] == 400


def test_backup_now_asks_root_on_its_control_socket(page):
    vm, _ = page
    assert call(vm, "/api/backup", {}, ACTION)[0] == 503  # nobody listens: said so, not pretended
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(vm.control_socket))
    listener.listen()
    asked: list = []

    def root() -> None:  # what root's control service answers first
        conn, _ = listener.accept()
        with conn:
            asked.append(decode_request(conn.recv(4096).split(b"\n")[0]))
            conn.sendall(progress_line("archiving, compressing, encrypting, uploading, verifying"))

    thread = threading.Thread(target=root, daemon=True)
    thread.start()
    status, result = call(vm, "/api/backup", {}, ACTION)
    thread.join(10)
    listener.close()
    assert status == 200 and result == {"started": True}
    assert asked[0].op == "backup" and asked[0].trigger == "page"


def test_backup_now_says_when_root_is_busy(page):
    from vmgen.contract.control import busy_line

    vm, _ = page
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(vm.control_socket))
    listener.listen()

    def root() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(busy_line("a backup is already running (asked for by laptop 3s ago)"))

    thread = threading.Thread(target=root, daemon=True)
    thread.start()
    status, result = call(vm, "/api/backup", {}, ACTION)
    thread.join(10)
    listener.close()
    assert status == 409 and "a backup is already running" in json.dumps(result)


def test_cross_site_requests_are_refused(page):
    vm, _ = page
    assert call(vm, "/api/keepalive", {"hours": 1})[0] == 403  # no custom header: a plain form post
    assert call(vm, "/api/keepalive", {"hours": 1}, {**ACTION, "Origin": "https://evil.example"})[0] == 403
    assert not vm.leases.exists()


def test_send_types_into_the_agents_pane(page):
    vm, context = page
    subprocess.run(["tmux", "new-session", "-d", "-s", context.session, "cat"], check=True)
    try:
        status, _ = call(vm, "/api/send", {"text": "hello from the page\nsecond line"}, ACTION)
        assert status == 200
        shown = wait_until(
            lambda: (
                subprocess.run(
                    ["tmux", "capture-pane", "-p", "-t", context.session], capture_output=True, text=True
                ).stdout
            ),
            lambda text: "hello from the page second line" in text,
            timeout=10,
        )
        assert "hello from the page second line" in shown
    finally:
        subprocess.run(["tmux", "kill-session", "-t", context.session], check=False)
    assert call(vm, "/api/send", {"text": "  "}, ACTION)[0] == 400


def test_send_without_a_session_says_so(page):
    vm, _ = page
    status, result = call(vm, "/api/send", {"text": "anyone there?"}, ACTION)
    assert status == 503 and result["error"] == "the agent's session is not running"


def test_a_stopped_tmux_server_does_not_hold_root(page, tmp_path):
    """The agent can stop any process of its uid: root's tmux client is killed at its deadline."""
    vm, context = page
    socket_path = tmp_path / "tmux.sock"
    subprocess.run(["tmux", "-S", str(socket_path), "new-session", "-d", "-s", context.session, "cat"], check=True)
    server_pid = int(
        subprocess.run(
            ["tmux", "-S", str(socket_path), "display", "-p", "#{pid}"], capture_output=True, text=True, check=True
        ).stdout
    )
    os.kill(server_pid, 19)  # SIGSTOP
    try:
        stuck = pageops.Context(vm, RunAs.current(), session=context.session, tmux_seconds=1)
        request = PageRequest("send", text="hello?")
        started = time.monotonic()
        with pytest.raises(pageops.Refused, match="not running"):
            pageops.send(request, _with_tmux_socket(stuck, socket_path))
        assert time.monotonic() - started < 5
    finally:
        os.kill(server_pid, 18)  # SIGCONT
        subprocess.run(["tmux", "-S", str(socket_path), "kill-server"], check=False)


def _with_tmux_socket(context: pageops.Context, path: Path) -> pageops.Context:
    """The same context, its tmux clients pointed at this server (TMUX_TMPDIR cannot name a file)."""
    import dataclasses

    return dataclasses.replace(context, tmux_socket=str(path))


ASK = """import socket, sys
conn = socket.socket(socket.AF_UNIX)
conn.connect(sys.argv[1])
conn.sendall(sys.argv[2].encode())
print(conn.recv(4096).decode())
"""


def test_root_answers_only_the_pages_user(tmp_path):
    """The kernel says who connected: anyone else than the page's user (and root) is refused."""
    vm = VmPaths(home=tmp_path, etc=tmp_path, state=tmp_path, run=tmp_path)
    with tempfile.TemporaryDirectory(prefix="vmgen-test-ops-") as shared:  # pytest's own is root's
        Path(shared).chmod(0o755)
        asked_by_another(Path(shared), vm)


def asked_by_another(tmp_path: Path, vm: VmPaths) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "ops.sock"))
    (tmp_path / "ops.sock").chmod(0o777)
    listener.listen()
    # Root may always ask: as root, the stranger is `nobody` (with the system's python: this one
    # may live in root's home).
    other = ["runuser", "-u", "nobody", "--", "/usr/bin/python3"] if os.getuid() == 0 else [sys.executable]
    page_uid = RunAs.lookup("nobody").uid + 1 if os.getuid() == 0 else os.getuid() + 1
    client = subprocess.Popen(
        [*other, "-I", "-c", ASK, str(tmp_path / "ops.sock"), encode_request(PageRequest("activity")).decode()],
        stdout=subprocess.PIPE,
        text=True,
    )
    listener.settimeout(20)
    conn, _ = listener.accept()
    with conn, listener:
        pageops.serve(conn, pageops.Context(vm, RunAs.current()), page_uid=page_uid)
    assert json.loads(client.communicate(timeout=20)[0]) == {"refused": "only the workspace page may ask"}


def press(vm: VmPaths, capability: str) -> tuple[int, Any]:
    """An ntfy button as the phone presses it: a plain POST of its capability, no header of the page's."""
    conn = UnixHTTPConnection(vm.page_socket)
    conn.request("POST", PHONE_PATH, body=capability.encode())
    response = conn.getresponse()
    status, raw = response.status, response.read()
    conn.close()
    return status, json.loads(raw)


def test_an_ntfy_keep_alive_button_writes_one_lease_once(page):
    vm, _ = page
    key = new_key()
    vm.watch_settings.write_text(WatchSettings(name="app").to_toml())
    vm.secrets.write_text(f"{KEY_VARIABLE}={key}\n")
    button = keepalive_capability(key, "app", time.time())
    status, result = press(vm, button)
    assert status == 200 and result["done"] == "keepalive" and result["until"] > time.time() + 3600 - 60
    assert [lease["reason"] for lease in json.loads(vm.leases.read_text())] == ["from the phone"]
    # Pressed again (a replay of the same request): refused, no second lease.
    assert press(vm, button) == (409, {"error": "already used: each button acts once"})
    # Made with another key (the agent's own), for another workspace, or too old: refused.
    refused = [
        press(vm, keepalive_capability(new_key(), "app", time.time())),
        press(vm, keepalive_capability(key, "api", time.time())),
        press(vm, keepalive_capability(key, "app", time.time() - KEEPALIVE_BUTTON_SECONDS - 60)),
    ]
    assert [r[1]["error"] for r in refused] == [
        "the button's signature does not match",
        "the button is not for this workspace",
        "expired: the button is older than its lifetime",
    ]
    assert len(json.loads(vm.leases.read_text())) == 1
