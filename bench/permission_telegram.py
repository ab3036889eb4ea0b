"""Latency of Allow pressed in Telegram: from the press to vmgen's hook printing Claude Code's
decision, and from the hook asking to root's message with the buttons reaching the chat.

    sudo .venv/bin/python bench/permission_telegram.py [--runs N]

Real processes as tests/integration/test_permission_telegram.py runs them: root's control daemon
on its socket (root:agent 0660), vmgen's PermissionRequest hook as another uid (setpriv), root's
Telegram channel and the laptop's bot (python-telegram-bot) against the fake Bot API over real
HTTP, the signed answer relayed to root's control socket by a process of the agent's uid. Not in
the number: the SSH hop the laptop takes to the VM (one connection; `vmgen status` measures one)
and Telegram's own servers. Root's 10 s gap between prompt messages is lifted here (its clock is
the bench's), so that each run gets its message. Median of N; target < 1 s. Needs root.
Writes bench/results/permission_telegram.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "permission_telegram.json"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram import FakeTelegram
from tests.integration.test_permission_attacks import AGENT, start_hook, unix_listener
from tests.integration.test_permission_telegram import USER, RelayingLaptop, root_knows
from tests.unit.telegram.test_bot import start_bot

from vmgen.contract.names import VmPaths
from vmgen.vmside import control
from vmgen.vmside.permissions import PermissionDesk, PromptNotifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if os.getuid() != 0:
        sys.exit("runs the hook as another uid: run as root")
    with tempfile.TemporaryDirectory(prefix="vmgen-bench-perm-") as shared, FakeTelegram() as fake:
        base = Path(shared)
        base.chmod(0o755)
        paths = VmPaths(home=base / "home", etc=base / "etc", state=base / "lib", run=base / "run")
        paths.run.mkdir(mode=0o755)
        fake.open_chat(USER)
        root_knows(paths, fake.root_url)
        ticks = itertools.count(step=100)
        desk = PermissionDesk(on_ask=PromptNotifier(paths, clock=lambda: float(next(ticks))))
        listener = unix_listener(paths.control_socket, AGENT.gid)
        daemon = control.ControlServer(listener, paths, AGENT, allowed=frozenset({0, AGENT.uid}), desk=desk)
        stop = threading.Event()
        serving = threading.Thread(target=daemon.serve_forever, kwargs={"idle_exit": None, "stop": stop}, daemon=True)
        serving.start()
        bot = start_bot(fake, base / "laptop", RelayingLaptop(paths=paths))
        to_chat: list[float] = []
        press_to_decision: list[float] = []
        try:
            for run in range(args.runs):
                asked = time.perf_counter()
                hook = start_hook(paths, f"make test-{run}")
                (message,) = fake.wait_for_sent(USER.id, run + 1, timeout=30)[run:]
                to_chat.append(time.perf_counter() - asked)
                pressed = time.perf_counter()
                fake.press(message, user=USER)  # Allow
                assert hook.stdout is not None
                out = hook.stdout.readline()
                press_to_decision.append(time.perf_counter() - pressed)
                assert json.loads(out)["hookSpecificOutput"]["decision"]["behavior"] == "allow", out
                hook.wait(10)
        finally:
            bot.end()
            stop.set()
            serving.join(10)
            listener.close()

    result = {
        "runs": args.runs,
        "hook_asks_to_buttons_in_chat_median_s": round(statistics.median(to_chat), 3),
        "hook_asks_to_buttons_in_chat_max_s": round(max(to_chat), 3),
        "allow_pressed_to_hook_decision_median_s": round(statistics.median(press_to_decision), 3),
        "allow_pressed_to_hook_decision_max_s": round(max(press_to_decision), 3),
        "not_measured": "the laptop's SSH hop to the VM; Telegram's servers",
        "target_s": 1.0,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
