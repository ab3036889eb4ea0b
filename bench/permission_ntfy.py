"""Latency of Allow pressed on an ntfy notification: from the press to vmgen's hook printing Claude
Code's decision, and from the hook asking to root's message with the buttons stored by the server.

    sudo .venv/bin/python bench/permission_ntfy.py [--runs N]

Real processes as tests/integration/test_permission_ntfy.py runs them: root's control daemon and
root's page socket on their sockets (their owners and modes as on a VM), vmgen's PermissionRequest
hook as another uid (setpriv), root's notifier publishing to a fake ntfy server (a protected topic:
root asks it, without the token, whether strangers may read it) over real HTTP, the page's HTTP
handler on the loopback where Caddy's /api/phone route would reach it, and the phone's press as
ntfy's Android app sends it (tests/fakes/ntfy.py `press`). Not in the number: Caddy and TLS in
front of the page, ntfy's servers and the phone's push. Root's 10 s gap between prompt messages is
lifted here (its clock is the bench's), so that each run gets its message, and so is the page's limit of
presses a minute. Root's page socket answers in a thread here; on a VM systemd starts an isolated
interpreter for each connection (`vmgen-page-ops@.service`), which this number leaves out too.
Median of N; target < 1 s. Needs root. Writes bench/results/permission_ntfy.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "permission_ntfy.json"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.fakes.ntfy import FakeNtfy, press
from tests.integration.test_permission_attacks import AGENT, CADDY_GID, PAGE_UID, start_hook, unix_listener
from tests.integration.test_permission_ntfy import TOKEN, TOPIC, root_knows

from vmgen.contract.names import VmPaths
from vmgen.contract.phone_actions import PHONE_PATH
from vmgen.vmside import control, pageops
from vmgen.vmside.permissions import PermissionDesk, PromptNotifier
from vmgen.vmside.web.server import WebSettings, make_handler, root_ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if os.getuid() != 0:
        sys.exit("runs the hook as another uid: run as root")
    with (
        tempfile.TemporaryDirectory(prefix="vmgen-bench-ntfy-") as shared,
        FakeNtfy(protected={TOPIC: {TOKEN}}) as ntfy,
    ):
        base = Path(shared)
        base.chmod(0o755)
        paths = VmPaths(home=base / "home", etc=base / "etc", state=base / "lib", run=base / "run")
        paths.run.mkdir(mode=0o755)
        paths.state.mkdir(mode=0o755)
        root_knows(paths, ntfy)
        ticks = itertools.count(step=100)
        desk = PermissionDesk(on_ask=PromptNotifier(paths, clock=lambda: float(next(ticks))))
        listener = unix_listener(paths.control_socket, AGENT.gid)
        daemon = control.ControlServer(listener, paths, AGENT, allowed=frozenset({0, AGENT.uid}), desk=desk)
        stop = threading.Event()
        serving = threading.Thread(target=daemon.serve_forever, kwargs={"idle_exit": None, "stop": stop}, daemon=True)
        serving.start()
        ops_listener = unix_listener(paths.page_ops_socket, PAGE_UID)
        context = pageops.Context(paths, AGENT)

        def answer(conn: socket.socket) -> None:  # systemd's Accept=yes: one root process a connection
            with conn:
                pageops.serve(conn, context, PAGE_UID)

        def page_ops() -> None:
            while True:
                try:
                    conn, _ = ops_listener.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=page_ops, daemon=True).start()
        page_listener = unix_listener(paths.page_socket, CADDY_GID)  # behind the login, as with a domain
        # The page's limit of presses a minute is lifted as the gap is (its clock is the bench's).
        page_ticks = itertools.count(step=100)
        settings = WebSettings(vm=paths, ops=root_ops(paths), clock=lambda: float(next(page_ticks)))
        page = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(settings))
        threading.Thread(target=page.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{page.server_address[1]}{PHONE_PATH}"
        to_phone: list[float] = []
        press_to_decision: list[float] = []
        try:
            for run in range(args.runs):
                asked = time.perf_counter()
                hook = start_hook(paths, f"make test-{run}")
                message = ntfy.wait_for_messages(TOPIC, run + 1, timeout=30)[run]
                to_phone.append(time.perf_counter() - asked)
                allow = next(a for a in message["actions"] if a["label"] == "Allow")
                pressed = time.perf_counter()
                status, said = press(allow, url)
                assert status == 200, said
                assert hook.stdout is not None
                out = hook.stdout.readline()
                press_to_decision.append(time.perf_counter() - pressed)
                assert json.loads(out)["hookSpecificOutput"]["decision"]["behavior"] == "allow", out
                hook.wait(10)
        finally:
            page.shutdown()
            page.server_close()
            stop.set()
            serving.join(10)
            for closing in (listener, ops_listener, page_listener):
                closing.close()

    result = {
        "runs": args.runs,
        "hook_asks_to_buttons_on_ntfy_median_s": round(statistics.median(to_phone), 3),
        "hook_asks_to_buttons_on_ntfy_max_s": round(max(to_phone), 3),
        "allow_pressed_to_hook_decision_median_s": round(statistics.median(press_to_decision), 3),
        "allow_pressed_to_hook_decision_max_s": round(max(press_to_decision), 3),
        "not_measured": "Caddy and TLS; the root interpreter systemd starts per page-ops connection; "
        "ntfy's servers and the phone's push",
        "target_s": 1.0,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
