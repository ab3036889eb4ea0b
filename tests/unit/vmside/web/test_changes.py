"""The changes view with a real git, as root's page socket makes it: git runs as the repository's
owner (`nobody` here, the agent on a VM), never as root; the programs a hostile `.git/config`
names are not started, a filter git must run runs as the owner; a 50 MB diff is cut at the size
cap and a git that hangs (a `.git` FIFO, a slow filter) is killed at root's deadline, and the page
says so and still answers. Then the page's own routes: the JSON, and the event stream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from vmgen.contract.changes import FILE_LINES, Changes
from vmgen.contract.names import VmPaths
from vmgen.vmside import pageops
from vmgen.vmside.privileges import RunAs
from vmgen.vmside.web.changes import DIFF_MAX, read_changes
from vmgen.vmside.web.server import STREAM_PATH, WebSettings, root_ops, serve

from .test_server import UnixHTTPConnection, serve_root

NOBODY = RunAs("nobody", 65534, 65534, "/nonexistent")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run git as another user")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout


GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "agent",
    "GIT_AUTHOR_EMAIL": "agent@example.com",
    "GIT_COMMITTER_NAME": "agent",
    "GIT_COMMITTER_EMAIL": "agent@example.com",
}


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder `nobody` can reach (pytest's tmp_path is root's only)."""
    work = Path(tempfile.mkdtemp(prefix="vmgen-changes-"))
    work.chmod(0o755)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def make_repo(parent: Path, name: str = "app") -> Path:
    """A repository with two commits and then an edited file, an added file and an untracked one."""
    repo = parent / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# app\n\nold words\n")
    (repo / "main.py").write_text("print('hi')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first commit")
    (repo / "main.py").write_text("print('hi')\nprint('more')\n")
    git(repo, "commit", "-qam", "main prints more")
    (repo / "README.md").write_text("# app\n\nnew words from the agent\n")
    (repo / "added.txt").write_text("staged\n")
    git(repo, "add", "added.txt")
    (repo / "scratch.txt").write_text("not in git\n")
    return repo


def test_the_working_tree_against_head_and_the_recent_commits(tmp_path):
    changes = read_changes(RunAs.current(), str(make_repo(tmp_path)))
    assert (changes.branch, changes.cut, changes.error) == ("main", "", "")
    by_path = {f.path: f for f in changes.files}
    assert {p: f.state for p, f in by_path.items()} == {
        "README.md": "modified",
        "added.txt": "added",
        "scratch.txt": "untracked",
    }
    readme = by_path["README.md"]
    assert (readme.added, readme.deleted) == (1, 1)
    assert [(line.kind, line.text) for line in readme.lines if line.kind in "+-"] == [
        ("-", "old words"),
        ("+", "new words from the agent"),
    ]
    # A new file is shown whole, as added.
    scratch = by_path["scratch.txt"]
    assert (scratch.added, [(line.kind, line.text) for line in scratch.lines][1:]) == (1, [("+", "not in git")])
    assert [c.subject for c in changes.commits] == ["main prints more", "first commit"]
    assert changes.commits[0].files == ("main.py",) and changes.commits[0].hash.startswith(changes.head)


def test_before_the_first_commit_and_outside_a_repository(tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    (fresh / "a.txt").write_text("a\n")
    git(fresh, "add", "a.txt")
    changes = read_changes(RunAs.current(), str(fresh))
    assert [(f.path, f.state, f.added) for f in changes.files] == [("a.txt", "added", 1)]
    assert changes.commits == () and changes.head == ""
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not a git repository" in read_changes(RunAs.current(), str(plain)).error


def test_the_first_new_files_are_shown_whole_binaries_named_and_the_rest_listed(tmp_path):
    repo = make_repo(tmp_path)
    (repo / "a-logo.png").write_bytes(b"\x89PNG\0\0binary")
    for i in range(8):
        (repo / f"new{i}.txt").write_text(f"new file {i}\n")
    changes = read_changes(RunAs.current(), str(repo))
    new = [f for f in changes.files if f.state == "untracked"]
    assert [f.path for f in new] == ["a-logo.png", *(f"new{i}.txt" for i in range(8)), "scratch.txt"]
    assert new[0].binary and new[0].lines == ()
    assert [f.path for f in new if f.lines] == ["new0.txt", "new1.txt", "new2.txt", "new3.txt"]


MARK = """#!/bin/sh
id -u > {marks}/{vector}-$(id -u)
cat
"""


def hostile_repo(shared: Path, clean_filter: bool = False) -> tuple[Path, Path]:
    """The agent's repository whose configuration names a program for every way git may start
    one (and, with `clean_filter`, a filter git must run to compare a file); each writes a mark
    named by the uid that ran it."""
    marks = shared / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    repo = make_repo(shared)
    config = []
    vectors = [
        ("fsmonitor", "core.fsmonitor"),
        ("pager", "core.pager"),
        ("external", "diff.external"),
        ("driver", "diff.evil.command"),
        ("textconv", "diff.evil.textconv"),
        ("gpg", "gpg.program"),
    ]
    if clean_filter:
        vectors.append(("filter", "filter.evil.clean"))
    for vector, key in vectors:
        script = shared / f"mark-{vector}"
        script.write_text(MARK.format(marks=marks, vector=vector))
        script.chmod(0o755)
        config.append((key, str(script)))
    for key, value in (*config, ("log.showSignature", "true"), ("pager.diff", "true"), ("pager.log", "true")):
        git(repo, "config", key, value)
    (repo / ".gitattributes").write_text("* diff=evil filter=evil\n" if clean_filter else "* diff=evil\n")
    subprocess.run(["chown", "-R", "65534:65534", str(repo)], check=True)
    return repo, marks


@needs_root
def test_a_hostile_git_config_starts_nothing_and_the_diff_is_still_shown(shared):
    repo, marks = hostile_repo(shared)
    changes = read_changes(NOBODY, str(repo))
    assert changes.error == "" and changes.cut == ""
    readme = next(f for f in changes.files if f.path == "README.md")
    assert ("+", "new words from the agent") in [(line.kind, line.text) for line in readme.lines]
    assert len(changes.commits) == 2
    assert sorted(p.name for p in marks.iterdir()) == []  # not as root, and not as the agent either


@needs_root
def test_a_filter_git_must_run_runs_as_the_repositorys_owner_never_as_root(shared):
    repo, marks = hostile_repo(shared, clean_filter=True)
    changes = read_changes(NOBODY, str(repo))
    assert "README.md" in {f.path for f in changes.files}
    ran = {p.name for p in marks.iterdir()}
    assert ran and ran <= {"filter-65534"}  # git needed the filter: it ran as the owner, only


def test_a_50_mb_diff_is_cut_at_the_size_cap_and_says_so(tmp_path):
    repo = make_repo(tmp_path)
    line = "x" * 99 + "\n"
    with open(repo / "README.md", "w") as f:
        f.writelines(line * 1024 for _ in range(512))  # 50 MiB
    changes = read_changes(RunAs.current(), str(repo), seconds=60)
    assert changes.cut == "size"
    readme = next(f for f in changes.files if f.path == "README.md")
    assert len(readme.lines) == FILE_LINES and readme.lines_left_out > 0
    assert len(json.dumps(Changes.from_result(json.loads(json.dumps(_value(changes)))).files[0].path)) < 100
    assert DIFF_MAX < 50 << 20


def _value(changes: Changes) -> dict:
    from vmgen.contract import codec

    return codec.to_value(changes)


def hanging_repo(parent: Path) -> Path:
    """A repository whose index is a FIFO: git opens it and waits for a writer forever."""
    repo = make_repo(parent)
    (repo / ".git/index").unlink()
    os.mkfifo(repo / ".git/index")
    return repo


def test_a_git_that_hangs_on_a_fifo_is_stopped_at_roots_deadline(tmp_path):
    repo = hanging_repo(tmp_path)
    changes = read_changes(RunAs.current(), str(repo), seconds=1.5)
    assert (changes.cut, changes.error) == ("time", "git did not answer in time")


def test_a_slow_filter_is_killed_with_its_git_at_the_deadline(tmp_path):
    repo = make_repo(tmp_path)
    token = f"vmgen-slow-filter-{time.monotonic_ns()}"
    git(repo, "config", "filter.slow.clean", f"sleep 3600; : {token}")
    (repo / ".gitattributes").write_text("* filter=slow\n")
    (repo / "README.md").write_text("changed again\n")
    changes = read_changes(RunAs.current(), str(repo), seconds=1.5)
    assert changes.cut == "time"
    left = [p for p in psutil.process_iter(["cmdline"]) if token in " ".join(p.info["cmdline"] or [])]
    assert left == []  # the filter's shell went with git's process group


# --- through root's page socket and the page's server --------------------------------------------


@pytest.fixture
def page_with(tmp_path):
    """The page's server and root's page socket (both real, in threads) for the repository named."""
    servers = []

    def start(repo: Path, git_seconds: float = 10.0) -> VmPaths:
        vm = VmPaths(home=tmp_path / "home", etc=tmp_path / "etc", state=tmp_path / "lib", run=tmp_path / "run")
        for folder in (vm.etc, vm.state, vm.run):
            folder.mkdir(exist_ok=True)
        vm.workspace_info.write_text(json.dumps({"name": "app", "repo_dir": str(repo)}))
        context = pageops.Context(vm, RunAs.current(), git_seconds=git_seconds)
        root = serve_root(vm, context, os.getuid())
        server = serve(WebSettings(vm=vm, ops=root_ops(vm)), vm.page_socket)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, root))
        return vm

    yield start
    for server, root in servers:
        server.shutdown()
        server.server_close()
        root.close()


def get(vm: VmPaths, path: str, headers: dict | None = None) -> tuple[int, dict]:
    conn = UnixHTTPConnection(vm.page_socket)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    status, body = response.status, json.loads(response.read())
    conn.close()
    return status, body


def test_the_page_shows_the_changes_root_made(page_with, tmp_path):
    vm = page_with(make_repo(tmp_path))
    status, changes = get(vm, "/api/changes")
    assert status == 200 and changes["branch"] == "main"
    assert {f["path"] for f in changes["files"]} == {"README.md", "added.txt", "scratch.txt"}


def test_the_page_answers_and_says_git_timed_out(page_with, tmp_path):
    vm = page_with(hanging_repo(tmp_path), git_seconds=1.5)
    status, changes = get(vm, "/api/changes")
    assert status == 200 and changes["cut"] == "time" and changes["error"] == "git did not answer in time"


def test_the_event_stream_sends_the_changes_and_again_when_the_tree_changes(page_with, tmp_path):
    repo = make_repo(tmp_path)
    vm = page_with(repo)
    conn = UnixHTTPConnection(vm.page_socket)
    conn.request("GET", STREAM_PATH, headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    first = next_event(response)
    assert "scratch.txt" in {f["path"] for f in first["files"]}
    (repo / "later.txt").write_text("the agent goes on\n")
    second = next_event(response)
    assert "later.txt" in {f["path"] for f in second["files"]}
    conn.close()


def next_event(response) -> dict:
    """The next `changes` event's document (heartbeats and the retry line skipped)."""
    event = ""
    while True:
        line = response.fp.readline().decode()
        if not line:
            raise AssertionError("the stream ended")
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: ") and event == "changes":
            return json.loads(line[6:])
