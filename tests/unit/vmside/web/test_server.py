"""The workspace page's server over real HTTP: the page, the state it assembles (watchdog,
leases, last backup, activity from a Claude Code transcript), and actions that refuse
cross-site requests."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.polling import wait_until
from vmgen.contract.control import decode_request, progress_line
from vmgen.contract.names import VmPaths
from vmgen.vmside.web.activity import activity_of
from vmgen.vmside.web.server import WebSettings, serve

TRANSCRIPT = [
    {"type": "user", "timestamp": "2026-11-25T10:00:00Z", "message": {"role": "user", "content": "please add HELLO.md"}},
    {"type": "assistant", "timestamp": "2026-11-25T10:00:02Z", "message": {"role": "assistant", "content": [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "/home/agent/work/app/HELLO.md"}}]}},
    {"type": "user", "timestamp": "2026-11-25T10:00:03Z", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}},
    {"type": "assistant", "timestamp": "2026-11-25T10:00:04Z", "message": {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "ls -la"}},
        {"type": "text", "text": "I created HELLO.md."}]}},
    {"type": "summary", "summary": "bookkeeping"},
]


def test_activity_shows_messages_tools_and_files_not_tool_results():
    items = [(a.kind, a.text) for a in activity_of(TRANSCRIPT)]
    assert items == [("you", "please add HELLO.md"), ("agent", "Sure."), ("file", "Write /home/agent/work/app/HELLO.md"),
                     ("tool", "Bash ls -la"), ("agent", "I created HELLO.md.")]
    assert activity_of(TRANSCRIPT, limit=2)[-1].text == "I created HELLO.md."


@pytest.fixture
def page(tmp_path):
    home = tmp_path / "home"
    project = home / ".claude/projects/-home-agent-work-app"
    project.mkdir(parents=True)
    (project / "s1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in TRANSCRIPT))
    vm = VmPaths(home=home, etc=tmp_path / "etc", state=tmp_path / "lib", run=tmp_path / "run")
    for folder in (vm.etc, vm.state, vm.run):
        folder.mkdir()
    vm.workspace_info.write_text(json.dumps({"name": "app", "repo_dir": "/home/agent/work/app"}))
    vm.web_links.write_text(json.dumps({"code_url": "https://code.app.dev.example.com/"}))
    vm.watchdog_state.write_text(json.dumps({
        "agent": {"state": "waiting"},
        "verdict": {"busy": False, "reasons": ["agent waiting at its prompt"], "idle_for_seconds": 120.0,
                    "next_action": "poweroff", "action_at": time.time() + 600}}))
    settings = WebSettings(port=0, session=f"vmgen-test-{time.monotonic_ns()}", vm=vm)
    server = serve(settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", settings
    server.shutdown()


def call(url: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read().decode(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


ACTION = {"X-Vmgen-Action": "1"}


def test_the_page_is_small_and_served(page):
    url, _ = page
    status, html = call(url, "/")
    assert status == 200 and "<title>vmgen workspace</title>" in html
    assert len(html.encode()) < 50 * 1024


def test_state_gathers_agent_watchdog_and_activity(page):
    url, _ = page
    status, state = call(url, "/api/state")
    assert status == 200
    assert state["workspace"] == "app" and state["agent"]["state"] == "waiting"
    assert state["verdict"]["next_action"] == "poweroff" and state["backup"] is None
    assert state["web"]["code_url"] == "https://code.app.dev.example.com/"
    assert [a["text"] for a in state["activity"]][-1] == "I created HELLO.md."


def test_state_says_what_will_happen_and_the_backup_it_was_restored_from(page):
    url, settings = page
    deadline = time.time() + 28 * 60
    settings.vm.watchdog_state.write_text(json.dumps({
        "agent": {"state": "waiting"},
        "boot_id": "an earlier boot", "history": {}, "updated_at": time.time(),
        "verdict": {"busy": False, "reasons": [], "idle_since": time.time() - 120, "idle_for_seconds": 120.0,
                    "next_action": "none", "action_at": deadline, "deadline": deadline,
                    "action": "backup-then-delete", "condition": "idle", "left_seconds": 28 * 60 + 20}}))
    settings.vm.restore_result.write_text(json.dumps(
        {"ok": True, "backup_id": "20261202T120000Z-ab12", "workspace": "app", "finished_at": time.time()}))
    state = call(url, "/api/state")[1]
    assert state["action_words"] == "backs up and deletes itself"  # not "none in 28m"
    # The page says the verdict as `vmgen status` does (from the seconds left the VM measured).
    assert state["said"]["next"] == "backs up and deletes itself in 28 min unless something happens"
    assert state["said"]["now"] == "idle for 2 min"
    assert state["backup"] is None and state["restored"]["backup_id"] == "20261202T120000Z-ab12"
    html = call(url, "/")[1]
    assert "said.next" in html and "restored from" in html


def test_keepalive_adds_a_lease_the_watchdog_reads(page):
    url, settings = page
    status, result = call(url, "/api/keepalive", {"hours": 4}, ACTION)
    assert status == 200 and result["until"] > time.time() + 4 * 3600 - 60
    assert json.loads(settings.vm.leases.read_text())[0]["reason"] == "from the workspace page"
    assert call(url, "/api/state")[1]["leases"][0]["until"] == result["until"]
    assert call(url, "/api/keepalive", {"hours": 100}, ACTION)[0] == 400


def test_backup_now_asks_root_on_its_control_socket(page):
    url, settings = page
    assert call(url, "/api/backup", {}, ACTION)[0] == 503  # nobody listens: said so, not pretended
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(settings.vm.control_socket))
    listener.listen()
    asked: list = []

    def root() -> None:  # what root's control service answers first
        conn, _ = listener.accept()
        with conn:
            asked.append(decode_request(conn.recv(4096).split(b"\n")[0]))
            conn.sendall(progress_line("archiving, compressing, encrypting, uploading, verifying"))

    thread = threading.Thread(target=root, daemon=True)
    thread.start()
    status, result = call(url, "/api/backup", {}, ACTION)
    thread.join(10)
    listener.close()
    assert status == 200 and result == {"started": True}
    assert asked[0].op == "backup" and asked[0].trigger == "page"


def test_backup_now_says_when_root_is_busy(page):
    from vmgen.contract.control import busy_line

    url, settings = page
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(settings.vm.control_socket))
    listener.listen()

    def root() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(busy_line("a backup is already running (asked for by laptop 3s ago)"))

    thread = threading.Thread(target=root, daemon=True)
    thread.start()
    status, result = call(url, "/api/backup", {}, ACTION)
    thread.join(10)
    listener.close()
    assert status == 409 and "a backup is already running" in json.dumps(result)


def test_cross_site_requests_are_refused(page):
    url, settings = page
    assert call(url, "/api/keepalive", {"hours": 1})[0] == 403  # no custom header: a plain form post
    assert call(url, "/api/keepalive", {"hours": 1}, {**ACTION, "Origin": "https://evil.example"})[0] == 403
    assert not settings.vm.leases.exists()


def test_send_types_into_the_agents_pane(page):
    url, settings = page
    subprocess.run(["tmux", "new-session", "-d", "-s", settings.session, "cat"], check=True)
    try:
        status, _ = call(url, "/api/send", {"text": "hello from the page\nsecond line"}, ACTION)
        assert status == 200
        shown = wait_until(lambda: subprocess.run(["tmux", "capture-pane", "-p", "-t", settings.session],
                                                  capture_output=True, text=True).stdout,
                           lambda text: "hello from the page second line" in text, timeout=10)
        assert "hello from the page second line" in shown
    finally:
        subprocess.run(["tmux", "kill-session", "-t", settings.session], check=False)
    assert call(url, "/api/send", {"text": "  "}, ACTION)[0] == 400


def test_send_without_a_session_says_so(page):
    url, _ = page
    status, result = call(url, "/api/send", {"text": "anyone there?"}, ACTION)
    assert status == 503 and result["error"] == "the agent's session is not running"
