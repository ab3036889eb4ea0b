"""Permission prompts answered from the page, on a launched workspace (`permission_mode = "default"`,
a domain: simulated Hetzner cloud, real Caddy and login, the real Claude Code against the scripted
model). The model asks for a Bash call; the request shows on the page (HTTPS as the signed-in
user); Allow runs it and the model gets its output; Deny gives the model the refusal. A preview's
cross-origin Allow and the agent's own attempts (its shell, over SSH) answer nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import wait_until

from .web_helpers import Launched, Session, launch, root_on, sign_in

NAME = "permask"
ALLOWED = "touch allowed.txt && echo ALLOWED-$((6*7))"
DENIED = "touch denied.txt && echo NEVER"


@pytest.fixture(scope="module")
def ws(cli, web_lite_cloud, model, tmp_path_factory) -> Iterator[Launched]:
    _, dns = web_lite_cloud
    model.script = Script(
        rules=[
            Rule("RUN-ALLOWED", tool=ToolUse("Bash", {"command": ALLOWED, "description": "make allowed.txt"})),
            Rule("RUN-DENIED", tool=ToolUse("Bash", {"command": DENIED, "description": "make denied.txt"})),
        ]
    )
    cli.env["VMGEN_PERMISSION_MODE"] = "default"
    workspace = launch(cli, dns, tmp_path_factory.mktemp("repos"), NAME)
    yield workspace
    cli("destroy", NAME, "--yes", check=False)


@pytest.fixture(scope="module")
def user(ws) -> Session:
    reply, session = sign_in(ws.ip, ws.host, ws.password)
    assert session is not None, reply.status
    return session


def post(session: Session, path: str, body: dict, origin: str) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", "X-Vmgen-Action": "1", "Origin": origin}
    reply = session.get(session.host, path, headers, method="POST", body=json.dumps(body).encode())
    try:
        return reply.status, json.loads(reply.body or b"{}")
    except ValueError:  # the login service's own refusal is a line of text
        return reply.status, {"error": reply.body.decode(errors="replace")}


def pending(session: Session) -> list[dict]:
    state = json.loads(session.get(session.host, "/api/state").body)
    assert state["permissions"]["answerable"] is True
    return state["permissions"]["pending"]


def ask_agent(session: Session, text: str) -> dict:
    status, said = post(session, "/api/send", {"text": text}, f"https://{session.host}")
    assert status == 200, said
    asked = wait_until(lambda: pending(session), bool, 120)
    assert len(asked) == 1, f"the page shows {asked} instead of the one request"
    return asked[0]


def result_for(model, command_marker: str, cli, root) -> str:
    def results() -> list[str]:
        return [r.tool_result_text for r in model.requests if command_marker in r.tool_result_text]

    found = wait_until(results, bool, 180)
    if not found:  # what the agent's screen and root's control service said, for whoever reads this
        screen = cli.ssh(NAME, "tmux capture-pane -p -S -60 -t claude", check=False)
        journal = root("journalctl -u vmgen-control --no-pager -n 40 -o cat")
        raise AssertionError(f"no tool result with {command_marker!r}; the agent's screen:\n{screen}\nroot:\n{journal}")
    return found[0]


def test_allow_on_the_page_runs_the_command_and_deny_refuses_it(cli, ws, user, model, docker_client):
    root = root_on(docker_client, NAME)
    asked = ask_agent(user, "please RUN-ALLOWED")
    assert (asked["ask"]["tool"], asked["ask"]["command"]) == ("Bash", ALLOWED)

    # A preview (the agent's own app) posts an Allow: refused, and the request is still asked.
    status, said = post(user, "/api/permission", {"id": asked["id"], "decision": "allow"}, f"https://p3000.{ws.host}")
    assert status == 403 and [p["id"] for p in pending(user)] == [asked["id"]], said
    # The agent itself, in its shell: root's sockets answer nothing of it; its settings cannot
    # change vmgen's managed ones.
    tries = cli.ssh(NAME, AGENT_TRIES.replace("REQUEST_ID", asked["id"]), check=False)
    assert json.loads(tries.strip().splitlines()[-1]) == {
        "answer": {"refused": "only root may ask for answer"},
        "page ops": "Permission denied",
        "managed settings": "Permission denied",
    }

    status, said = post(user, "/api/permission", {"id": asked["id"], "decision": "allow"}, f"https://{ws.host}")
    assert status == 200, said
    assert result_for(model, "ALLOWED-", cli, root) == "ALLOWED-42"
    assert "allowed.txt" in cli.ssh(NAME, f"ls ~/work/{NAME}")
    status, said = post(user, "/api/permission", {"id": asked["id"], "decision": "allow"}, f"https://{ws.host}")
    assert status == 409 and "answered already" in said["error"]  # replayed: used up

    asked = ask_agent(user, "please RUN-DENIED")
    assert asked["ask"]["command"] == DENIED
    status, said = post(user, "/api/permission", {"id": asked["id"], "decision": "deny"}, f"https://{ws.host}")
    assert status == 200, said
    assert "denied this from the workspace page" in result_for(model, "denied", cli, root)
    assert "denied.txt" not in cli.ssh(NAME, f"ls ~/work/{NAME}")


AGENT_TRIES = r"""python3 - <<'EOF'
import json, os, socket
def ask(path, request):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    try:
        s.connect(path)
    except OSError as exc:
        return os.strerror(exc.errno)
    s.sendall(json.dumps(request).encode() + b"\n")
    return json.loads(s.makefile().readline())
said = {
    "answer": ask("/run/vmgen/control.sock", {"op": "answer", "request_id": "REQUEST_ID", "decision": "allow"}),
    "page ops": ask("/run/vmgen/page-ops.sock", {"op": "answer", "request_id": "REQUEST_ID", "decision": "allow"}),
}
try:
    open("/etc/claude-code/managed-settings.json", "a").close()
    said["managed settings"] = "written"
except OSError as exc:
    said["managed settings"] = os.strerror(exc.errno)
print(json.dumps(said))
EOF"""
