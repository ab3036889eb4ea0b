"""Running something as the agent user, from root: the one way vmgen drops privileges.

Root on the VM does only what needs root. Whatever touches a path, socket or process that the
agent user controls (its home, its tmux server) runs as the agent instead: its uid, gid and no
other groups, a clean environment, no inherited file descriptors, working directory `/`.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Enough to run vmgen's own interpreter and the few tools it calls (tmux).
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class RunAs:
    """Whom a child process runs as. `uid == os.geteuid()` means: as we are (tests, laptops)."""

    user: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, user: str) -> RunAs:
        entry = pwd.getpwnam(user)
        return cls(user, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    @classmethod
    def current(cls) -> RunAs:
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment: nothing of root's leaks into a process the agent can inspect."""
        env = {"PATH": SAFE_PATH, "HOME": self.home, "USER": self.user, "LOGNAME": self.user, "LANG": "C.UTF-8"}
        return env | (extra or {})

    def popen_kwargs(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Keyword arguments for subprocess.Popen/run that start the child as this user."""
        kwargs: dict[str, Any] = {"env": self.environment(env), "close_fds": True, "cwd": "/"}
        if self.switches:
            kwargs |= {"user": self.uid, "group": self.gid, "extra_groups": [], "umask": 0o077}
        return kwargs


def run_as(
    who: RunAs, argv: Sequence[str], *, timeout: float, max_output: int = 64 << 10, stdin: int = subprocess.DEVNULL
) -> tuple[int, bytes]:
    """Run argv as `who`; (exit code, at most `max_output` bytes of stdout). The child is killed
    at the timeout: whatever it talks to (a tmux server the agent runs) cannot hold root up."""
    with subprocess.Popen(
        list(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **who.popen_kwargs()
    ) as proc:
        assert proc.stdout is not None
        try:
            out = _read_bounded(proc, max_output, timeout)
            code = proc.wait(timeout=max(0.1, timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return code, out


def _read_bounded(proc: subprocess.Popen[bytes], limit: int, timeout: float) -> bytes:
    import selectors
    import time

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            if not selector.select(left):
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                return b"".join(chunks)
            if size < limit:
                chunks.append(data[: limit - size])
            size += len(data)
