"""The processes of a backup or restore pipeline, and how the parent runs and hears from them.

Each CPU stage runs in its own interpreter (`python -c ... child_main`) so it has its own GIL:
as threads of one process, the Python tar stage and pyrage's 8 KiB Python callbacks queued for
the GIL and the pipeline ran at half the shell's speed. Stages are joined by OS pipes, which
bound the memory. A child reports its result or error as one JSON line on an inherited pipe.

On the VM the stages that touch the agent's home (tar on the way out, untar on the way in) run
as the agent user (`run_as`): root never reads or writes below that home itself. Such a child
is the agent's to tamper with, so its report is read with a size cap and checked by the caller
like any other input from the agent's side."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import zstandard

import vmgen
from vmgen import errors
from vmgen.backup import archive, crypto, diskwriter, extract, index
from vmgen.errors import ArchiveError, BackupError

if TYPE_CHECKING:
    from vmgen.backup.store import Readable

CHUNK = 1 << 20
ZSTD_LEVEL = 3  # what `zstd` does by default
_F_SETPIPE_SZ = 1031  # Linux; the fcntl module of 3.11 does not export it
_CHILD_ENTRY = "import sys; from vmgen.backup.stages import child_main; child_main(sys.argv[1:])"
REPORT_MAX = 1 << 20  # a report is a few KiB; a child the agent controls may send anything
REPORT_GRACE = 2.0  # seconds after a child's exit that its report may still take to arrive


class RunAs(Protocol):
    """Whom a stage runs as: on the VM the agent user (`vmside.privileges.RunAs`), handed in by
    the caller, so that this library knows nothing of the VM's users."""

    def popen_kwargs(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Keyword arguments for subprocess.Popen that start the child as this user."""
        ...


def pipe() -> tuple[int, int]:
    r, w = os.pipe()
    # 1 MiB instead of 64 KiB: fewer context switches between stages, still bounded.
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _F_SETPIPE_SZ, CHUNK)
    return r, w


class Stage(threading.Thread):
    """Waits for one child process; keeps its reported result or rebuilds its error."""

    def __init__(self, kind: str, proc: subprocess.Popen[bytes], report: BinaryIO) -> None:
        super().__init__(name=f"backup-{kind}", daemon=True)
        self.kind, self.proc, self.report = kind, proc, report
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        raw = self._read_report()
        code = self.proc.wait()
        try:
            report = json.loads(raw)
            ok = report["ok"]
        except (ValueError, TypeError, KeyError):
            self.error = BackupError(f"the {self.kind} stage died (exit status {code})")
            return
        if ok is True:
            self.result = report.get("result")
        else:
            self.error = rebuild_error(self.kind, str(report.get("type")), str(report.get("message"))[:2000])

    def _read_report(self) -> bytes:
        """The report, up to REPORT_MAX (the rest is read and dropped: the child must not block).
        It ends at EOF, when the child exits; if something the child left behind still holds the
        pipe (a stage as the agent can leave a process), at most REPORT_GRACE after the exit."""
        fd, chunks, size, exited = self.report.fileno(), [], 0, None
        with self.report:
            while exited is None or time.monotonic() - exited < REPORT_GRACE:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    data = os.read(fd, 1 << 16)
                    if not data:
                        break
                    if size < REPORT_MAX:
                        chunks.append(data[: REPORT_MAX - size])
                        size += len(chunks[-1])
                if exited is None and self.proc.poll() is not None:
                    exited = time.monotonic()
        return b"".join(chunks)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def rebuild_error(kind: str, type_name: str, message: str) -> BaseException:
    if type_name == "BrokenPipeError":
        return BrokenPipeError(message)
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, BackupError):
        return cls(message)
    return BackupError(f"the {kind} stage failed: {type_name}: {message}")


def root_error(stages: Iterable[Stage]) -> BaseException | None:
    """The cause, not its echoes: the most upstream error that is not a broken pipe (which
    only says that a neighbour stopped)."""
    errors = [s.error for s in stages if s.error is not None]
    return next((e for e in errors if not isinstance(e, BrokenPipeError)), errors[0] if errors else None)


def spawn(
    kind: str,
    params: dict[str, Any],
    stdin: int,
    stdout: int,
    run_as: RunAs | None = None,
) -> Stage:
    """Start a `kind` child with `params`; each param named *_fd that holds a descriptor is
    inherited by the child (and nothing else but stdin and stdout), so what a job is told to
    read or write is exactly what it can."""
    report_r, report_w = os.pipe()
    params = dict(params, report_fd=report_w)
    inherited = tuple(v for k, v in params.items() if k.endswith("_fd") and isinstance(v, int))
    # The child must import this very vmgen, whether installed, editable or from a source tree.
    package_root = str(Path(vmgen.__file__).resolve().parents[1])
    if run_as is None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        options: dict[str, Any] = {"env": env}
    else:  # a clean environment and nothing inherited but the pipes
        options = run_as.popen_kwargs({"PYTHONPATH": package_root})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_ENTRY, kind, json.dumps(params)],
            stdin=stdin,
            stdout=stdout,
            pass_fds=inherited,
            **options,
        )
    finally:
        os.close(report_w)
    stage = Stage(kind, proc, open(report_r, "rb"))  # noqa: SIM115 - the stage closes it when it ends
    stage.start()
    return stage


def finish(stages: list[Stage], failed: bool) -> None:
    if failed:  # the caller's error is the one to report: stop the children now
        for stage in stages:
            stage.kill()
    for stage in stages:
        stage.join()


# ----- the children -----


def child_main(args: list[str]) -> None:
    kind, params = args[0], json.loads(args[1])
    code = 0
    try:
        text = json.dumps({"ok": True, "result": _JOBS[kind](params)})
    except BaseException as e:  # noqa: BLE001 - whatever it is, the parent learns it from the report
        text, code = json.dumps({"ok": False, "type": type(e).__name__, "message": str(e)}), 1
    with os.fdopen(params["report_fd"], "w") as report:
        report.write(text)
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter shutdown: a read-ahead thread may still be inside zstd's C code when a stage
    # fails, and finalization would free what it uses under it (seen: the untar stage died of
    # SIGSEGV after refusing a hostile archive). Every file the job wrote is closed by now.
    os._exit(code)


def _job_tar(params: dict[str, Any]) -> dict[str, Any]:
    """The archive on stdout: an increment if given the previous index (`previous_fd`); the
    index of what it saw on `index_fd` if given one."""
    previous = index.load(params["previous_fd"]) if params.get("previous_fd") is not None else None
    entries = index.IndexWriter.to_fd(params.get("index_fd"))
    with open(1, "wb", buffering=CHUNK) as out:
        compressed = archive.CountingWriter(out)
        # threads=1: compression runs on a zstd worker thread beside the Python tar code.
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=1)
        # zstandard's type hints ask for an IO[bytes]; the writer only calls write() (and flush() if any).
        with cctx.stream_writer(compressed, closefd=False, write_size=CHUNK) as z:  # type: ignore[arg-type]
            summary, plain = archive.write_tree(Path(params["root"]), z, params["excludes"], previous, entries)
    entries.close()
    return {"summary": asdict(summary), "plaintext_bytes": plain, "compressed_bytes": compressed.count}


def _job_encrypt(params: dict[str, Any]) -> dict[str, Any]:
    """The age file on stdout, and its digest: hashed here, where its bytes are made."""
    digest, size = crypto.encrypt_stdio(params["recipient"])
    return {"sha256": digest, "bytes": size}


def _job_decrypt(params: dict[str, Any]) -> dict[str, Any]:
    """The plaintext on stdout, and the sha256 and size of the whole object read on stdin:
    also when decryption failed (the rest is read and hashed then), so the parent can tell a
    damaged object from a wrong key or a broken archive. Stops only if stdin fails."""
    with os.fdopen(params["secret_fd"], "rb") as f:
        identity = crypto.parse_identity(f.read().decode())
    src = crypto.stdin_source()
    error = None
    try:
        crypto.decrypt_stdio(identity, src)
    except (BackupError, BrokenPipeError) as e:  # a damaged object, or the untar stage stopped
        error = {"type": type(e).__name__, "message": str(e)}
        src.drain()
    return {"sha256": src.sha.hexdigest(), "bytes": src.size, "error": error}


def _job_untar(params: dict[str, Any]) -> int:
    """Extract one backup of a chain into the staging folder (made by the chain's first, its
    full backup); each waits for the parent to have verified its download (one byte "1" on
    go_fd). The last one then moves the staged tree into place, and indexes it first (on
    `index_fd`, if given) for the next increment; any failure throws the staged tree away.
    Runs as the restoring user."""
    target, staging = Path(params["target"]), Path(params["staging"])
    if params["first"]:
        extract.make_staging(target, staging, params["merge"])
    elif not staging.is_dir() or staging.is_symlink():
        raise BackupError(f"the restore's staging folder {staging} is gone")
    keep_staging = False
    try:
        count = _extract_stdin(staging, increment=not params["first"])
        with os.fdopen(params["go_fd"], "rb") as go:
            if go.read(1) != b"1":
                raise BackupError("the restore was called off before anything was moved into place")
        if not params["last"]:
            keep_staging = True
            return count
        extract.keep_current(target, staging, params["keep"])
        if params.get("index_fd") is not None:
            entries = index.IndexWriter.to_fd(params["index_fd"])
            # The kept files are the new VM's, in no backup yet: the next one takes them.
            index.walk(str(staging), frozenset(params["keep"]), entries)
            entries.close()
        extract.move_into_place(staging, target)
    finally:
        if not keep_staging:
            _remove_staging(staging)
    return count


def _job_discard(params: dict[str, Any]) -> None:
    """A chain's restore failed between two backups: its staged tree goes."""
    _remove_staging(Path(params["staging"]))


def _remove_staging(staging: Path) -> None:
    """The staged tree, also its folders of mode 000 (shutil.rmtree cannot list them)."""
    with contextlib.suppress(OSError):
        diskwriter.remove_tree(str(staging))


def _extract_stdin(dest: Path, increment: bool) -> int:
    src = open(0, "rb", buffering=0)  # noqa: SIM115 - closed below, and only once nothing reads it
    z = zstandard.ZstdDecompressor().stream_reader(src, read_size=CHUNK, closefd=False)
    # Decompression (GIL released) runs on a thread ahead of the Python tar code, like
    # `zstd -d | tar -x`.
    ahead = _ReadAhead(z)
    try:
        count = extract.extract_stream(ahead, dest, increment)
        while ahead.read(CHUNK):  # the tar end padding: drain so age can finish cleanly
            pass
    except BaseException as e:
        # The reader thread may be inside z.read (zstd's C code) right now: z and stdin stay
        # open, since freeing them under it crashes the process (SIGSEGV); the child exits
        # without interpreter shutdown (child_main).
        ahead.close()
        if isinstance(e, zstandard.ZstdError):
            raise ArchiveError(f"the archive is not a valid zstd stream: {e}") from e
        raise
    ahead.join()  # it has read the end: nothing uses z any more
    z.close()  # type: ignore[no-untyped-call]  # zstandard leaves close() unannotated
    src.close()
    return count


class _ReadAhead:
    """Reads `src` on a thread into a small bounded queue (4 chunks of 1 MiB). read() hands
    out those chunks as they are, without copying them into a buffer."""

    def __init__(self, src: Readable) -> None:
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=4)
        self._left = b""
        self._eof = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(src,), daemon=True)
        self._thread.start()

    def _fill(self, src: Readable) -> None:
        try:
            while not self._stop.is_set():
                data = src.read(CHUNK)
                self._chunks.put(data)
                if not data:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the reader, raised on its thread
            self._chunks.put(e)

    def read(self, n: int) -> bytes:
        if self._eof:
            return b""
        if not self._left:
            item = self._chunks.get()
            if isinstance(item, BaseException):
                raise item
            self._left, self._eof = item, not item
        if n >= len(self._left):
            data, self._left = self._left, b""
        else:
            data, self._left = self._left[:n], self._left[n:]
        return data

    def join(self) -> None:
        self._thread.join()

    def close(self) -> None:
        # Unblock a filler waiting on a full queue; it is a daemon thread of a child process
        # that is about to exit, so it is not joined (it may be blocked reading stdin).
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self._chunks.get_nowait()


_JOBS = {
    "tar": _job_tar,
    "encrypt": _job_encrypt,
    "decrypt": _job_decrypt,
    "untar": _job_untar,
    "discard": _job_discard,
}
