"""Latency of a notification: from the agent's hook firing to the message reaching ntfy.

    .venv/bin/python bench/notify.py [--runs N]

Each run starts the real hook program (agent-event, as rendered for the VM) with a Stop event's
JSON on stdin, as Claude Code does; root's HookFollower thread (the one the watchdog service
starts) follows the events file and its Notifier publishes to a fake ntfy server
(tests/fakes/ntfy.py) over real HTTP. Measured: hook process start -> the message stored by the
server (median of N, target < 1 s), and the hook's own run time (it must stay fast: it only
appends a line). A UserPromptSubmit between runs re-arms the session, as a new turn does.
Writes bench/results/notify.json.
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

from tests.fakes.ntfy import FakeNtfy

from vmgen.contract.names import VmPaths
from vmgen.laptop.builder.render import agent_event_hook
from vmgen.vmside.notify.hooks import POLL_SECONDS, HookFollower
from vmgen.vmside.notify.sender import notifier_for

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
    result = {
        "runs": args.runs,
        "hook_to_ntfy_median_s": round(statistics.median(to_phone), 3),
        "hook_to_ntfy_max_s": round(max(to_phone), 3),
        "hook_run_median_s": round(statistics.median(hook_runs), 3),
        "poll_seconds": POLL_SECONDS,
        "target_s": 1.0,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
