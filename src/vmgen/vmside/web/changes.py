"""The agent's changes for the page: git run as the agent in its repository, bounded by root.

The repository is the agent's: its `.git/config` may name programs (core.fsmonitor, an external
diff, a textconv or filter driver, a pager, a signature checker), its `.git` may be a FIFO, its
diff may be 50 MB. So git never runs as root here: it runs as the agent (`RunAs`: its uid, no
groups, a clean environment), with what would start a program of the repository's turned off on
the command line (`core.fsmonitor=false`, `core.pager=cat`, `--no-ext-diff --no-textconv`,
`log.showSignature=false`), without taking the index lock (`GIT_OPTIONAL_LOCKS=0`: a look never
writes), in its own process group that root kills at a deadline of root's own clock, and read
to a size cap, past which it is killed too. What it printed is parsed by the pure functions of
gitparse.py; a clean filter (which git must run to compare a file) runs as the agent, and at worst
makes the view late, cut or timed out, which the view says.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ...contract.changes import DIFF_BUDGET, Changes, Commit
from ..privileges import RunAs
from .gitparse import budget_used, combine, parse_diff, parse_log, parse_status

DEADLINE = 10.0  # seconds for all of git's runs together
STATUS_MAX = 1 << 20
DIFF_MAX = 4 << 20
LOG_MAX = 256 << 10
ERROR_MAX = 4 << 10
UNTRACKED_SHOWN = 5  # new files whose content is shown (each one more git run), the first ones
UNTRACKED_MAX = 256 << 10
# git's empty tree: the diff's base before the first commit.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Nothing the repository's configuration names is started for a look at it.
SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.untrackedCache=false",
    "core.quotePath=false",
    "diff.external=",
    "log.showSignature=false",
    "color.ui=false",
)


PATCH_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv")


@dataclass(frozen=True)
class Run:
    code: int | None  # None: stopped (deadline or size cap)
    out: bytes
    err: bytes
    cut: str = ""  # "size" or "time" when it was stopped


def git_argv(repo: str, *args: str) -> list[str]:
    config = [part for item in SAFE_CONFIG for part in ("-c", item)]
    return ["git", *config, "-C", repo, *args]


def git_env(repo: str) -> dict[str, str]:
    return {
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        # No looking for a repository above the workspace's own folder.
        "GIT_CEILING_DIRECTORIES": str(PurePosixPath(repo).parent),
        "GIT_NO_REPLACE_OBJECTS": "1",
    }


def run_bounded(who: RunAs, argv: Sequence[str], env: dict[str, str], limit: int, deadline: float) -> Run:
    """Run argv as `who` and read its stdout until it ends, `limit` bytes were read, or the
    monotonic `deadline` passed; in the last two cases its process group is killed at once."""
    kwargs = who.popen_kwargs(env)
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        **kwargs,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    cut = ""
    open_pipes = 2
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while open_pipes:
            left = deadline - time.monotonic()
            if left <= 0:
                cut = "time"
                break
            for key, _ in selector.select(left):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                buffer: bytearray = key.data
                buffer += data
                if buffer is out and len(out) >= limit:
                    cut = "size"
                    break
                if buffer is err and len(err) > ERROR_MAX:
                    del err[ERROR_MAX:]
            if cut:
                break
    if cut:
        _kill(proc)
    code = None if cut else _wait(proc, deadline)
    proc.stdout.close()
    proc.stderr.close()
    if code is None and not cut:
        cut = "time"
    return Run(code, bytes(out[:limit]), bytes(err), cut)


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> int | None:
    try:
        return proc.wait(timeout=max(0.05, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        return None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The whole group (git's filters and hooks with it); a stopped process dies of SIGKILL too."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def read_changes(
    who: RunAs, repo: str, seconds: float = DEADLINE, limits: tuple[int, int, int] | None = None
) -> Changes:
    """The working tree against HEAD and the recent commits of `repo`, as `who` sees them."""
    status_max, diff_max, log_max = limits or (STATUS_MAX, DIFF_MAX, LOG_MAX)
    deadline = time.monotonic() + seconds
    env = git_env(repo)
    made_at = time.time()
    status_run = run_bounded(
        who,
        git_argv(repo, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--ignore-submodules"),
        env,
        status_max,
        deadline,
    )
    if status_run.cut == "time":
        return Changes(repo=repo, cut="time", error="git did not answer in time", made_at=made_at)
    if status_run.code not in (0, None):
        return Changes(repo=repo, error=_git_error(status_run.err), made_at=made_at)
    status = parse_status(status_run.out)
    cut = status_run.cut
    base = "HEAD" if status.head else EMPTY_TREE
    diff_run = run_bounded(
        who,
        git_argv(
            repo,
            "diff",
            base,
            "-M",
            "-z",
            "--raw",
            "--numstat",
            "-p",
            *PATCH_FLAGS,
            "--ignore-submodules",
            "--",
        ),
        env,
        diff_max,
        deadline,
    )
    cut = cut or diff_run.cut
    diffs = parse_diff(diff_run.out)
    # New files are no part of a diff against HEAD: the first few are shown as all added, each
    # by `git diff --no-index` against /dev/null (as the agent, within the same deadline).
    budget = DIFF_BUDGET - budget_used(diffs)
    for path in [f.path for f in status.files if f.state == "untracked"][:UNTRACKED_SHOWN]:
        if cut == "time" or budget <= 0 or path.startswith("/") or ".." in path.split("/"):
            continue
        new_run = run_bounded(
            who,
            git_argv(
                repo, "diff", "--no-index", "-z", "--raw", "--numstat", "-p", *PATCH_FLAGS, "--", "/dev/null", path
            ),
            env,
            UNTRACKED_MAX,
            deadline,
        )
        cut = "time" if new_run.cut == "time" else cut  # one cut at its size cap is said by its counts
        shown = parse_diff(new_run.out, budget)
        budget -= budget_used(shown)
        diffs += shown
    commits: list[Commit] = []
    if status.head and diff_run.cut != "time":
        log_run = run_bounded(
            who,
            git_argv(
                repo,
                "log",
                "-n",
                "10",
                "-z",
                "--no-color",
                "--no-renames",
                "--no-show-signature",
                "--format=%x1e%h%x1f%ct%x1f%s",
                "--name-only",
            ),
            env,
            log_max,
            deadline,
        )
        cut = cut or log_run.cut
        commits = parse_log(log_run.out)
    return combine(status, diffs, commits, repo, cut, made_at)


def _git_error(err: bytes) -> str:
    """git's own last line (`fatal: not a git repository ...`), cleaned."""
    from .gitparse import clean

    lines = [line for line in err.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return clean(lines[-1] if lines else "git failed", 200)[0]
