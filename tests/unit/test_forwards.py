"""`vmgen forward`: what it takes, a local port in use said before ssh starts, and background
forwards through a real sshd (the workspace side here is a loopback sshd; tests/e2e/
test_ssh_config.py forwards from a booted workspace) that --stop ends only while their recorded
pid is still that ssh."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_ssh import answers, free_port, sshd, target  # noqa: F401 - the real sshd fixtures
from vmgen.errors import PortInUse, UsageError
from vmgen.laptop.forwards import (
    PortPair,
    check_local_ports,
    forwards_dir,
    parse_listening,
    parse_ports,
    running_forwards,
    start_background,
    stop_background,
)


def test_ports_are_port_or_local_colon_remote() -> None:
    assert parse_ports(["3000", "5432:5433"]) == (PortPair(3000, 3000), PortPair(5432, 5433))
    for bad, words in (("x", "PORT or LOCAL:REMOTE"), ("70000", "1-65535"), ("0:80", "1-65535"), ("1:2:3", "PORT")):
        with pytest.raises(UsageError, match=words):
            parse_ports([bad])
    with pytest.raises(UsageError, match="at least one port"):
        parse_ports([])
    with pytest.raises(UsageError, match="once"):
        parse_ports(["3000", "3000:4000"])


def test_a_local_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"local port {port} is in use on this machine; pick another"):
            check_local_ports([PortPair(port, 3000)])
    check_local_ports([PortPair(port, 3000)])  # free again


def test_what_listens_on_the_vm_from_ss() -> None:
    output = (
        "LISTEN 0      4096       127.0.0.1:3001       0.0.0.0:*\n"
        "LISTEN 0      128          0.0.0.0:22         0.0.0.0:*\n"
        "LISTEN 0      4096   127.0.0.53%lo:53         0.0.0.0:*\n"
        "LISTEN 0      128             [::]:22            [::]:*\n"
        "LISTEN 0      511                *:3000             *:*\n"
        "garbage\n"
    )
    assert parse_listening(output) == {22: ["0.0.0.0", "[::]"], 53: ["127.0.0.53"], 3000: ["*"], 3001: ["127.0.0.1"]}


@pytest.fixture
def web_server() -> Iterator[int]:
    """A server on the 'workspace' side (this machine, behind the loopback sshd)."""

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"through the forward")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_a_background_forward_answers_is_listed_and_stops(target, web_server: int, tmp_path: Path) -> None:  # noqa: F811
    local = free_port()
    record = start_background(target, "box", [PortPair(local, web_server)], root=tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as answer:
            assert answer.read() == b"through the forward"
        assert [r.pid for r in running_forwards(tmp_path)] == [record.pid]
        assert stop_background("other", tmp_path) == []  # another workspace's: none
        assert [r.pid for r in stop_background("box", tmp_path)] == [record.pid]
        assert not answers(local) and running_forwards(tmp_path) == []
        assert list(forwards_dir(tmp_path).iterdir()) == []
    finally:
        subprocess.run(["kill", str(record.pid)], capture_output=True)


def test_a_recorded_pid_that_is_no_longer_the_forward_is_left_alone(target, web_server: int, tmp_path: Path) -> None:  # noqa: F811
    record = start_background(target, "box", [PortPair(free_port(), web_server)], root=tmp_path)
    subprocess.run(["kill", str(record.pid)], check=True)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # As if the kernel had given the forward's pid to another process since.
        path = forwards_dir(tmp_path) / f"{record.pid}.json"
        path.write_text(path.read_text().replace(f'"pid": {record.pid}', f'"pid": {stranger.pid}'))
        assert stop_background(None, tmp_path) == [] and running_forwards(tmp_path) == []
        assert stranger.poll() is None  # not killed
    finally:
        stranger.kill()
        stranger.wait()
