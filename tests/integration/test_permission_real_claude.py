"""The real Claude Code CLI in `default` permission mode, in a real tmux, against the scripted model,
with vmgen's PermissionRequest hook (in an isolated interpreter, as on the VM) and root's real
control daemon: the page's Allow runs the command and the model gets its output; Deny gives the
model the refusal; answered in the terminal instead, the request leaves the page and a late
answer is void. (On a booted workspace, with the managed settings and the page over HTTPS:
tests/e2e/test_permission_prompts.py.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_api import FakeAnthropicServer, RecordedRequest, Rule, Script, ToolUse  # noqa: E402
from tests.integration import test_watchdog_real_claude as real_claude  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from vmgen.contract.names import VmPaths  # noqa: E402
from vmgen.vmside import control  # noqa: E402
from vmgen.vmside.permissions import PermissionDesk  # noqa: E402
from vmgen.vmside.privileges import RunAs  # noqa: E402

COMMAND = "touch made-by-bash.txt && echo PERMITTED-$((40+2))"  # not read-only: Claude Code asks


def hook_command(run: Path) -> str:
    code = (
        "import sys; from pathlib import Path; from vmgen.contract.names import VmPaths; "
        f"from vmgen.vmside import permission_hook; permission_hook.main(VmPaths(run=Path({str(run)!r})))"
    )
    return f"{sys.prefix}/bin/python -I -c {json.dumps(code)}"


claude_bin = real_claude.claude_bin  # the pinned Claude Code (the fixture installs it if missing)
claude_in_tmux = real_claude.claude_in_tmux


@pytest.fixture
def agent(claude_bin: Path, tmp_path: Path) -> Iterator[tuple[PermissionDesk, FakeAnthropicServer, str, Path]]:
    """Claude Code asking for a Bash call, root's desk that holds the request, the tmux socket."""
    paths = VmPaths(run=tmp_path / "run")
    paths.run.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(paths.control_socket))
    listener.listen(16)
    desk = PermissionDesk(wait=60)
    daemon = control.ControlServer(listener, paths, RunAs.current(), allowed=frozenset({0}), desk=desk)
    stop = threading.Event()
    serving = threading.Thread(target=daemon.serve_forever, kwargs={"idle_exit": None, "stop": stop}, daemon=True)
    serving.start()
    hook = {"type": "command", "command": hook_command(paths.run), "timeout": 90}
    settings = {"hooks": {"PermissionRequest": [{"matcher": "*", "hooks": [hook]}]}}
    script = Script(rules=[Rule("RUN-IT", tool=ToolUse("Bash", {"command": COMMAND, "description": "make it"}))])
    command = [str(claude_bin), "--permission-mode", "default", "--settings", json.dumps(settings)]
    try:
        with claude_in_tmux(tmp_path, command, script) as (sock, api):
            subprocess.run(["tmux", "-S", sock, "send-keys", "-t", "agent:one", "-l", "please RUN-IT"], check=True)
            subprocess.run(["tmux", "-S", sock, "send-keys", "-t", "agent:one", "Enter"], check=True)
            yield desk, api, sock, tmp_path / "repo"
    finally:
        stop.set()
        serving.join(10)
        listener.close()


def tool_result(api: FakeAnthropicServer) -> RecordedRequest:
    results = wait_until(lambda: [r for r in api.requests if r.tool_result_for], bool, 60)
    assert results, "the model never got the tool's result"
    return results[0]


def asked(desk: PermissionDesk):
    (pending,) = wait_until(desk.pending, bool, 90) or [None]
    assert pending is not None, "the permission request never reached root"
    assert (pending.ask.tool, pending.ask.command) == ("Bash", COMMAND)
    return pending


def test_allow_from_the_page_runs_the_command(agent) -> None:
    desk, api, _, repo = agent
    assert desk.answer(asked(desk).id, "allow")
    assert tool_result(api).tool_result_text == "PERMITTED-42"
    assert (repo / "made-by-bash.txt").exists()


def test_deny_from_the_page_gives_the_model_the_refusal(agent) -> None:
    desk, api, _, repo = agent
    assert desk.answer(asked(desk).id, "deny")
    assert "denied this from the workspace page" in tool_result(api).tool_result_text
    assert not (repo / "made-by-bash.txt").exists()


def test_answered_in_the_terminal_the_request_leaves_the_page(agent) -> None:
    desk, api, sock, _ = agent
    pending = asked(desk)

    def screen() -> str:
        return subprocess.run(
            ["tmux", "-S", sock, "capture-pane", "-p", "-t", "agent:one"], capture_output=True, text=True
        ).stdout

    # Claude Code's own prompt is there meanwhile (drawn while the hook runs).
    assert "Do you want to proceed?" in wait_until(screen, lambda text: "Do you want to proceed?" in text, 20)

    def press_yes() -> str:  # the prompt takes no keys for a moment after it shows: press until it goes
        subprocess.run(["tmux", "-S", sock, "send-keys", "-t", "agent:one", "1"], check=True)
        return screen()

    assert "Do you want to proceed?" not in wait_until(press_yes, lambda text: "Do you want" not in text, 20, 1.0)
    assert tool_result(api).tool_result_text == "PERMITTED-42"
    assert wait_until(desk.pending, lambda left: not left, 20) == ()
    assert not desk.answer(pending.id, "deny")  # too late: void
