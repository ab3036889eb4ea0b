"""`cloud-init schema` for the tests without paying cloud-init's start at every call.

A launch, `vmgen render` and the render tests check the rendered user-data with the real
`cloud-init schema` (vmgen.laptop.builder.validate): a hundred times in the unit tests, and each
`cloud-init` process spends ~0.2 CPU-s importing cloud-init before a validation of ~0.03 s.

Here one process of cloud-init's own interpreter imports cloud-init's `main` once and forks for
each call. The `cloud-init` put first on the tests' PATH hands it its arguments, working
directory, environment and its stdin, stdout and stderr themselves (file descriptors over a Unix
socket); the fork takes them as its own, runs `main()` as cloud-init's console script does
(`sys.exit(main())`), and the shim exits with that code. What validates and what it prints are
cloud-init's own; should the server be gone, the shim runs the real command instead.

This file is also the server's program: `python3 cloud_init_forks.py SOCKET`, run by the
interpreter of cloud-init's console script (not the tests' virtualenv, which has no cloud-init).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

# The shim, as `cloud-init`: standard library only, started with -I -S (no site: ~20 ms).
SHIM = """#!{python} -IS
import json, os, socket, struct, sys

fds, targets = [], []
for target in (0, 1, 2):
    try:
        os.fstat(target)
    except OSError:
        continue
    fds.append(target)
    targets.append(target)
request = json.dumps(
    {{"argv": [{real!r}, *sys.argv[1:]], "cwd": os.getcwd(), "env": dict(os.environ), "fds": targets}}
).encode()
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    server.connect({socket_path!r})
except OSError:  # the server is gone: the real command
    os.execv({real!r}, [{real!r}, *sys.argv[1:]])
socket.send_fds(server, [struct.pack("!I", len(request)) + request], fds)
reply = b""
while len(reply) < 4:
    chunk = server.recv(4 - len(reply))
    if not chunk:
        sys.exit("cloud-init (the tests' fork server): the fork ended without an exit code")
    reply += chunk
sys.exit(struct.unpack("!i", reply)[0])
"""


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[Path | None]:
    """The folder of the `cloud-init` shim, for the front of PATH, while the server runs; None
    where cloud-init is not installed or is not a Python console script."""
    real = shutil.which("cloud-init")
    python = _interpreter(real) if real else None
    if real is None or python is None:
        yield None
        return
    socket_path = directory / "cloud-init.sock"
    # stdin stays a pipe from this process: the server ends when it reads EOF there, also if the
    # tests' process is killed without its clean-up.
    server = subprocess.Popen(
        [python, "-I", __file__, str(socket_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()  # blocks until the server listens, or ends
        if ready.strip() != "ready":
            yield None  # the tests run the real command
            return
        shim = directory / "bin" / "cloud-init"
        shim.parent.mkdir()
        shim.write_text(SHIM.format(python=python, socket_path=str(socket_path), real=real))
        shim.chmod(0o755)
        yield shim.parent
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _interpreter(script: str) -> str | None:
    """The Python of a console script's #! line."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    program = first[2:].split()
    if len(program) != 1 or "python" not in Path(program[0]).name:
        return None
    return program[0]


# --- the server, in cloud-init's interpreter ----------------------------------------------------


def serve(socket_path: str) -> None:
    from cloudinit.cmd.main import main  # type: ignore[import-not-found]  # the import every start pays

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(128)
    # Each fork is waited for, so that its CPU time counts in this process's children's (and in
    # the tests' process's, which waits for this one at the end), as a `cloud-init` process's would.
    signal.signal(signal.SIGCHLD, _reap)
    threading.Thread(target=_exit_at_eof, daemon=True).start()
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # cloud-init waits for its own children
            _run(connection, main)
        connection.close()


def _reap(_signal: int, _frame: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _exit_at_eof() -> None:
    # The descriptor, not sys.stdin: a fork must not inherit sys.stdin's lock held by this read.
    while os.read(0, 1 << 12):
        pass
    os._exit(0)


def _run(connection: socket.socket, main: Callable[[], object]) -> None:
    """In the fork: become the shim's process as far as cloud-init can tell, then run it."""
    code = 1
    try:
        data, fds, _flags, _address = socket.recv_fds(connection, 1 << 16, 3)
        (length,) = struct.unpack("!I", data[:4])
        data = data[4:]
        while len(data) < length:
            chunk = connection.recv(length - len(data))
            if not chunk:
                raise EOFError("the shim's request was cut short")
            data += chunk
        request = json.loads(data)
        given = dict(zip(request["fds"], fds, strict=True))
        for target in (0, 1, 2):
            if target in given:
                os.dup2(given[target], target)
                os.close(given[target])
            else:
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, target)
                os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["argv"]
        try:
            result = main()  # cloud-init's console script: sys.exit(main())
        except SystemExit as exit_:
            result = exit_.code
        if result is None:
            code = 0
        elif isinstance(result, int):
            code = result
        else:
            print(result, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit code 1
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            connection.sendall(struct.pack("!i", code))
        os._exit(code & 0xFF)


if __name__ == "__main__":
    serve(sys.argv[1])
