"""A git source is checked from this machine before anything is made, against a real git server
(git's dumb HTTP protocol, served from a folder): a host that does not exist, a repository the
server does not have and a branch the repository does not have are refused; a server that wants
credentials this machine does not have, or does not answer, is not (the VM may get further)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from vmgen.errors import SourceNotFound
from vmgen.laptop.sourcecheck import check_git_source
from vmgen.laptop.spec import GitSource


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class WantsPassword(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


def serve(handler) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[str]:
    """A repository `app.git` with the branches main and dev."""
    work = tmp_path / "work"
    git = ["git", "-C", str(work), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README.md").write_text("# app\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "initial"], check=True)
    subprocess.run([*git, "branch", "dev"], check=True)
    served = tmp_path / "served"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "app.git")], check=True)
    subprocess.run(["git", "-C", str(served / "app.git"), "update-server-info"], check=True)
    yield from serve(partial(Quiet, directory=str(served)))


def test_a_repository_that_answers_with_its_branch_passes(git_server: str) -> None:
    assert check_git_source(GitSource(f"{git_server}/app.git")) == ""
    assert check_git_source(GitSource(f"{git_server}/app.git", "dev")) == ""


def test_a_branch_the_repository_does_not_have_is_refused_with_the_ones_it_has(git_server: str) -> None:
    with pytest.raises(SourceNotFound, match=r"no branch or tag 'deve' \(its branches: dev, main\)"):
        check_git_source(GitSource(f"{git_server}/app.git", "deve"))


def test_a_repository_the_server_does_not_have_is_refused(git_server: str) -> None:
    with pytest.raises(SourceNotFound, match="no such repository"):
        check_git_source(GitSource(f"{git_server}/ap.git"))


def test_a_host_that_does_not_exist_is_refused() -> None:
    with pytest.raises(SourceNotFound, match=r"the host 'nohost\.invalid' does not exist"):
        check_git_source(GitSource("https://nohost.invalid/me/app.git"))


def test_a_private_name_this_machine_cannot_resolve_is_a_note_the_workspace_may_resolve_it() -> None:
    # docker's name for the host, resolved inside a workspace only; a name with no dot is a LAN's.
    for url in ("http://host.docker.internal:1/app.git", "https://gitserver/me/app.git"):
        note = check_git_source(GitSource(url), timeout=5)
        assert "the workspace will try" in note, (url, note)


def test_a_server_that_wants_credentials_this_machine_lacks_is_a_note_not_a_refusal() -> None:
    for url in serve(WantsPassword):
        note = check_git_source(GitSource(f"{url}/private/app.git"))
        assert "could not check" in note and "the workspace will try" in note


def test_a_server_that_does_not_answer_or_refuses_connections_is_a_note(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never answers
        port = silent.getsockname()[1]
        assert "did not answer this machine within 1s" in check_git_source(
            GitSource(f"http://127.0.0.1:{port}/app.git"), timeout=1
        )
    assert "could not check" in check_git_source(GitSource(f"http://127.0.0.1:{port}/app.git"))  # closed now
