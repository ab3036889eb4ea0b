"""`vmgen` for the end-to-end tests without paying its imports at every call.

The tests run the real CLI as a program, about 1,300 times a run, and each `python -m vmgen`
spends ~0.2 CPU-s importing vmgen and its libraries (click, rich, the Docker SDK, hcloud, boto3)
before it does anything: a sixth of the suite's CPU on two cores. Here one server process per test
process imports them once and forks for each call; the fork takes the caller's arguments, working
directory, environment and standard streams (file descriptors over a Unix socket), runs vmgen's
`__main__` as `python -m vmgen` does, and reports its exit code. What runs is vmgen's own code in a
process of its own; only the imports were done before the fork.

Not forked (a new interpreter, as before): a call whose PYTHONPATH differs from the server's (a
build of vmgen of the test's own), any call when the server is not there, and every call when
VMGEN_TEST_NO_FORKS is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# The server: imports, then one fork per connection. Single-threaded (a fork copies one thread);
# SIGCHLD ignored, so the kernel reaps the forks; each fork sends its pid, then its exit code.
SERVER = r"""
import atexit, contextlib, json, os, runpy, signal, socket, struct, sys, traceback

import vmgen.cli  # noqa: F401 - and with it click, rich, the settings
for module in ("workspaces", "launching", "backups", "watchdog", "access", "images", "cost_cmd", "web"):
    __import__(f"vmgen.laptop.cli.{module}")
for provider in ("docker", "hetzner", "aws", "ssh"):
    __import__(f"vmgen.laptop.providers.{provider}")

path = sys.argv[1]
main = os.path.join(os.path.dirname(vmgen.cli.__file__), "__main__.py")
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(64)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
sys.stdout.write("ready\n")
sys.stdout.flush()


def receive(conn):
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    size = struct.unpack("!I", head)[0]
    body = b""
    while len(body) < size:
        body += conn.recv(size - len(body))
    return json.loads(body), fds


def child(conn, request, fds):
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # vmgen waits for its own subprocesses
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [main, *request["argv"]]
    conn.sendall(struct.pack("!i", os.getpid()))
    code = 0
    try:
        runpy.run_module("vmgen", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        conn.sendall(struct.pack("!i", code))
    os._exit(code)


while True:
    conn, _ = listener.accept()
    try:
        request, fds = receive(conn)
    except Exception:
        conn.close()
        continue
    if os.fork() == 0:
        child(conn, request, fds)
    for fd in fds:
        os.close(fd)
    conn.close()
"""


class VmgenForks:
    """This test process's server, started on first use with the environment of that call."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.path = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.pythonpath: str | None = None
        self.lock = threading.Lock()

    def _start(self, env: dict[str, str]) -> bool:
        self.pythonpath = env.get("PYTHONPATH")
        self.folder = Path(tempfile.mkdtemp(prefix="vmgen-forks-"))  # a short path: a socket's has ~104 bytes
        self.path = str(self.folder / "s")
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, self.path],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
        )
        assert self.process.stdout is not None
        return self.process.stdout.readline() == b"ready\n"

    def usable(self, env: dict[str, str]) -> bool:
        if os.environ.get("VMGEN_TEST_NO_FORKS"):  # every call a new interpreter, as a user's are
            return False
        with self.lock:
            if self.process is None and not self._start(env):
                self.close()
                return False
            return self.process is not None and self.process.poll() is None and env.get("PYTHONPATH") == self.pythonpath

    def run(
        self, argv: list[str], env: dict[str, str], cwd: Path, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """As subprocess.run([python, -m, vmgen, *argv], capture_output=True, text=True) would."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            socket.send_fds(conn, [struct.pack("!I", len(request))], [stdin_r, out_w, err_w])
            conn.sendall(request)
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        outputs: dict[int, bytes] = {}

        def drain(fd: int) -> None:
            with os.fdopen(fd, "rb") as stream:
                outputs[fd] = stream.read()

        readers = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (out_r, err_r)]
        for reader in readers:
            reader.start()
        with os.fdopen(stdin_w, "wb") as feed, contextlib.suppress(BrokenPipeError):
            if input is not None:
                feed.write(input.encode())
        conn.settimeout(timeout)
        pid = 0
        try:
            said = _exactly(conn, 4)
            pid = struct.unpack("!i", said)[0] if len(said) == 4 else 0
            answer = _exactly(conn, 4) if pid else b""
            code = struct.unpack("!i", answer)[0] if len(answer) == 4 else -signal.SIGKILL  # it was killed
        except TimeoutError:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(["vmgen", *argv], timeout) from None
        finally:
            conn.close()
        for reader in readers:
            reader.join()
        return subprocess.CompletedProcess(
            ["vmgen", *argv], code, outputs[out_r].decode(errors="replace"), outputs[err_r].decode(errors="replace")
        )

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        if self.folder is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                self.folder.rmdir()
            self.folder = None


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
