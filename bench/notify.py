"""Latency of a notification: from the agent's hook firing to the message reaching ntfy; and of
an answer: from Allow pressed on the page to the tool starting.

    .venv/bin/python bench/notify.py [--runs N]

Each run starts the real hook program (agent-event, as rendered for the VM) with a Stop event's
JSON on stdin, as Claude Code does; root's HookFollower thread (the one the watchdog service
starts) follows the events file and its Notifier publishes to a fake ntfy server
(tests/fakes/ntfy.py) over real HTTP. Measured: hook process start -> the message stored by the
server (median of N, target < 1 s), and the hook's own run time (it must stay fast: it only
appends a line). A UserPromptSubmit between runs re-arms the session, as a new turn does.

Allow: the real Claude Code (`default` permission mode, in tmux, against the scripted model)
asks for a Bash call that writes the time it starts; vmgen's PermissionRequest hook (python -I)
asks root's control daemon, and the page's Allow goes through root's page socket as the page
sends it (the page server's request to root; the HTTPS hop through Caddy and the login before it
is not in this number). Measured: that request leaving -> the command's first line running
(median of N, target < 1 s). Writes bench/results/notify.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "notify.json"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.fakes.ntfy import FakeNtfy
from tests.integration.test_permission_real_claude import hook_command
from tests.integration.test_watchdog_real_claude import CLAUDE, claude_in_tmux
from tests.polling import wait_until

from vmgen.contract.names import VmPaths
from vmgen.contract.pageops import PageRequest
from vmgen.laptop.builder.render import agent_event_hook
from vmgen.vmside import control, pageops
from vmgen.vmside.notify.hooks import POLL_SECONDS, HookFollower
from vmgen.vmside.notify.sender import notifier_for
from vmgen.vmside.permissions import PermissionDesk
from vmgen.vmside.privileges import RunAs
from vmgen.vmside.web.server import root_ops

TOPIC = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeNtfy() as ntfy:
        paths = VmPaths(
            state=Path(tmp) / "state", run=Path(tmp) / "run", etc=Path(tmp) / "etc", home=Path(tmp) / "home"
        )
        script = Path(tmp) / "agent-event"
        script.write_text(agent_event_hook(paths))
        notifier = notifier_for("bench", (f"ntfy:{ntfy.endpoint}/{TOPIC}",), {}, paths)
        follower = HookFollower(paths.hook_events, notifier, uid_of=os.getuid, since=0)
        follower.start()

        def hook(event: str) -> float:
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-IS", str(script), event], input='{"session_id": "s1"}', text=True, check=True
            )
            return time.perf_counter() - started

        to_phone, hook_runs = [], []
        for run in range(args.runs):
            hook("UserPromptSubmit")
            time.sleep(POLL_SECONDS * 2)  # the new turn seen before its end
            started = time.perf_counter()
            hook_runs.append(hook("Stop"))
            ntfy.wait_for_messages(TOPIC, run + 1, timeout=30)
            to_phone.append(time.perf_counter() - started)
        follower.stop()
    allow_to_tool = allow_latencies(args.runs)
    result = {
        "runs": args.runs,
        "hook_to_ntfy_median_s": round(statistics.median(to_phone), 3),
        "hook_to_ntfy_max_s": round(max(to_phone), 3),
        "hook_run_median_s": round(statistics.median(hook_runs), 3),
        "allow_to_tool_start_median_s": round(statistics.median(allow_to_tool), 3),
        "allow_to_tool_start_max_s": round(max(allow_to_tool), 3),
        "poll_seconds": POLL_SECONDS,
        "target_s": 1.0,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def started_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def tool_results(api) -> int:
    return len([r for r in api.requests if r.tool_result_for])


def allow_latencies(runs: int) -> list[float]:
    """Allow on the page -> the tool's command running, with the real Claude Code (see the docstring)."""
    import socket
    import threading

    latencies: list[float] = []
    # Claude Code may still write below its home for a moment after its tmux server is gone.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        paths = VmPaths(run=Path(tmp) / "run")
        paths.run.mkdir()
        sockets = []
        for path in (paths.control_socket, paths.page_ops_socket, paths.page_socket):
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(path))
            path.chmod(0o600)  # the page's socket: nobody else's to reach (as behind the login)
            listener.listen(16)
            sockets.append(listener)
        desk = PermissionDesk(wait=60)
        daemon = control.ControlServer(sockets[0], paths, RunAs.current(), allowed=frozenset({0}), desk=desk)
        stop = threading.Event()
        threading.Thread(target=daemon.serve_forever, kwargs={"idle_exit": None, "stop": stop}, daemon=True).start()
        context = pageops.Context(paths, RunAs.current())

        def page_ops() -> None:
            while True:
                try:
                    conn, _ = sockets[1].accept()
                except OSError:
                    return
                with conn:
                    pageops.serve(conn, context, os.getuid())

        threading.Thread(target=page_ops, daemon=True).start()
        settings = {"hooks": {"PermissionRequest": [{"matcher": "*", "hooks": [
            {"type": "command", "command": hook_command(paths.run), "timeout": 90}
        ]}]}}  # fmt: skip
        command = "date +%s.%N >> started.txt"  # a redirection: Claude Code asks
        script = Script(rules=[Rule("RUN-IT", tool=ToolUse("Bash", {"command": command, "description": "time"}))])
        argv = [str(CLAUDE), "--permission-mode", "default", "--settings", json.dumps(settings)]
        with claude_in_tmux(Path(tmp), argv, script) as (sock, api):
            started = Path(tmp) / "repo" / "started.txt"
            for run in range(runs):
                for keys in (["-l", f"please RUN-IT {run}"], ["Enter"]):
                    subprocess.run(["tmux", "-S", sock, "send-keys", "-t", "agent:one", *keys], check=True)
                (asked,) = wait_until(desk.pending, bool, 60)
                pressed = time.time()
                root_ops(paths)(PageRequest("answer", request_id=asked.id, decision="allow"))
                lines = wait_until(lambda: started_lines(started), lambda v: len(v) > run, 30)  # noqa: B023
                latencies.append(float(lines[run]) - pressed)
                wait_until(lambda: tool_results(api), lambda v: v > run, 30)  # noqa: B023 - waited for here
        stop.set()
        for listener in sockets:
            listener.close()
    return latencies


if __name__ == "__main__":
    main()
