"""Waiting for a workspace to be ready: SSH answers, cloud-init finished, the agent's session up."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..contract.names import VM
from ..errors import BootFailed
from .ssh import SSHTarget, run, stream

PHASES_LOG = str(VM.phases_log)
OUTPUT_LOG = str(VM.provision_log)
DONE_MARK = "@@vmgen-cloud-init"

# Remote script: follow vmgen's phase log while cloud-init works, then report its final status.
# `tail -F` waits for the log to appear; `cloud-init status --wait` waits for cloud-init (also
# while it has not started yet) and prints the final status itself. Each `cloud-init status` is a
# Python start (0.3 CPU-s): a loop asking it every second cost a boot about a second of CPU.
FOLLOW_SCRIPT = f"""
tail -n +1 -F {PHASES_LOG} 2>/dev/null &
follower=$!
final=$(cloud-init status --wait 2>/dev/null | sed -n 's/^status: //p')
kill $follower 2>/dev/null
wait $follower 2>/dev/null
# What the follower had not printed yet (a loaded machine); the reader drops what it saw.
cat {PHASES_LOG} 2>/dev/null
echo "{DONE_MARK} $final"
"""


@dataclass(frozen=True)
class Phase:
    name: str
    at: float  # epoch seconds on the workspace's clock


Progress = Callable[[str], None]


def wait_for_ssh(target_factory: Callable[[], SSHTarget | None], timeout: float, progress: Progress) -> SSHTarget:
    """Retry until `true` runs over SSH; the target is re-read because a port may appear late."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    last_error = ""
    while time.monotonic() < deadline:
        target = target_factory()
        if target is not None:
            # An attempt never runs past the deadline (a bake's short wait would take 15 s).
            attempt = max(1.0, min(15.0, deadline - time.monotonic()))
            try:
                result = run(target, ["true"], check=False, timeout=attempt)
            except subprocess.TimeoutExpired:
                # A loaded machine: sshd took the connection but has not answered yet.
                last_error = f"ssh connected but got no answer within {attempt:.0f}s"
                progress("waiting for SSH")
                continue
            if result.returncode == 0:
                return target
            last_error = result.stderr.decode(errors="replace").strip()
            if "REMOTE HOST IDENTIFICATION HAS CHANGED" in last_error or "Host key verification failed" in last_error:
                # sshd may answer with other keys for a moment before cloud-init installs ours.
                progress("waiting for the workspace's pinned host key")
        progress("waiting for SSH")
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 1.5, 3)
    raise BootFailed(
        f"SSH did not answer within {timeout:.0f}s" + (f" ({last_error.splitlines()[-1]})" if last_error else "")
    )


# Opens one stream of FOLLOW_SCRIPT's output lines on the machine (over SSH, or the engine's exec for
# a bake); closing the context ends it.
LineStream = Callable[[], AbstractContextManager[Iterable[bytes]]]


def follow_cloud_init(
    target: SSHTarget, timeout: float, progress: Progress, keep_log: Path | None = None
) -> list[Phase]:
    """Stream provisioning phases until cloud-init is done; raise BootFailed on error, with the
    failed phase's own output, and the whole log copied to `keep_log` on this machine (the
    workspace it came from is usually removed right after).

    The stream is opened again if it ends early: cloud-init may restart sshd while it
    configures the VM (on a baked image, where vmgen attaches before cloud-init gets that far)."""
    return follow_boot(lambda: ssh_lines(target), timeout, progress, lambda: output_tail(target, keep_log))


def follow_boot(open_lines: LineStream, timeout: float, progress: Progress, tail: Callable[[], str]) -> list[Phase]:
    """follow_cloud_init for any way of running FOLLOW_SCRIPT on the machine."""
    phases: list[Phase] = []
    seen: set[tuple[str, str, float]] = set()  # (kind, step, time): a reopened stream repeats the log
    final = ""
    deadline = time.monotonic() + timeout
    while not final and time.monotonic() < deadline:
        final = _follow_once(open_lines, deadline, phases, seen, progress)
        if not final:
            time.sleep(1)  # the stream ended (sshd restarted): open it again
    if final != "done":
        reason = f"cloud-init status: {final}" if final else f"cloud-init did not finish within {timeout:.0f}s"
        raise BootFailed(f"{reason}\n{tail()}")
    return phases


@contextmanager
def ssh_lines(target: SSHTarget) -> Iterator[Iterable[bytes]]:
    process = stream(target, ["bash", "-c", FOLLOW_SCRIPT])
    assert process.stdout is not None
    try:
        yield process.stdout
    finally:
        process.kill()
        process.wait()


def _follow_once(
    open_lines: LineStream, deadline: float, phases: list[Phase], seen: set[tuple[str, str, float]], progress: Progress
) -> str:
    """One stream of the phase log; cloud-init's final status, or "" if the stream ended."""
    with open_lines() as lines:
        for raw in lines:
            line = raw.decode(errors="replace").strip()
            if line.startswith(("vmgen-phase ", "vmgen-skip ")):
                kind, at, name = line.split(" ", 3)[:3]
                if (kind, name, float(at)) in seen:
                    continue
                seen.add((kind, name, float(at)))
                if kind == "vmgen-phase":
                    phases.append(Phase(name=name, at=float(at)))
                    progress(f"provisioning: {name}")
                else:
                    progress(f"provisioning: {name} (baked into the image: skipped)")
            elif line.startswith("vmgen-note "):
                # A step that failed without failing the launch says so in one line.
                at, _, text = line.removeprefix("vmgen-note ").partition(" ")
                key = ("vmgen-note", text, float(at) if at.replace(".", "", 1).isdigit() else 0.0)
                if key not in seen:
                    seen.add(key)
                    progress(f"provisioning: {text}")
            elif line.startswith(DONE_MARK):
                return line.removeprefix(DONE_MARK).strip()
            if time.monotonic() > deadline:
                break
    return ""


KEPT_LOG_BYTES = 4 << 20  # the end of a longer log is what explains a failure


def output_tail(target: SSHTarget, keep_log: Path | None = None, lines: int = 15) -> str:
    try:
        result = run(target, ["tail", "-c", str(KEPT_LOG_BYTES), OUTPUT_LOG], check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return "(could not read the provisioning log)"
    where = f"{OUTPUT_LOG} on the workspace"
    if keep_log is not None and result.stdout:
        try:
            keep_log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(keep_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(result.stdout)
            where = str(keep_log)
        except OSError:
            pass  # the report still says where the log is on the workspace
    text = result.stdout.decode(errors="replace")
    return failure_report(text.splitlines()[-400:], lines, where)


def failure_report(log_lines: list[str], lines: int = 15, whole_log: str = f"{OUTPUT_LOG} on the workspace") -> str:
    """Why provisioning failed, cause first: the phase it failed in and that phase's own output.
    The script stops at its first failing command, so the failing phase is the last one the log
    started; the lines of the phases before it (a firewall's chatter) say nothing about it."""
    relevant = relevant_tail(log_lines, len(log_lines))
    start = next((i for i in range(len(relevant) - 1, -1, -1) if relevant[i].startswith("vmgen-phase ")), None)
    if start is None:
        text = "\n".join(relevant[-lines:])
        return (
            f"last lines of {OUTPUT_LOG} (the whole log: {whole_log}):\n{text}"
            if text
            else "(nothing in the provisioning log: cloud-init failed before vmgen's script ran)"
        )
    phase = relevant[start].split(" ", 2)[2].strip()
    own = [line for line in relevant[start + 1 :] if not line.startswith("vmgen-skip ")][-lines:]
    shown = "\n".join(f"  {line}" for line in own) or "  (it printed nothing)"
    return f"failed in the provisioning phase {phase!r}:\n{shown}\n(the whole log: {whole_log})"


def wait_for_session(target: SSHTarget, session: str, timeout: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(target, ["tmux", "has-session", "-t", session], check=False, timeout=15).returncode == 0:
            return
        progress(f"waiting for the agent's tmux session {session!r}")
        time.sleep(1)
    raise BootFailed(
        f"the agent's tmux session {session!r} did not start within {timeout:.0f}s "
        "(see `vmgen ssh NAME -- journalctl -u vmgen-agent`)"
    )


def relevant_tail(log_lines: list[str], lines: int) -> list[str]:
    """The last lines before cloud-init's closing banner (host keys and tables say nothing)."""
    end = next(
        (i for i, line in enumerate(log_lines) if line.startswith("Cloud-init v.") and " finished at " in line),
        len(log_lines),
    )
    return log_lines[max(0, end - lines) : end]
