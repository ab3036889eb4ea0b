"""Permission prompts answered from the page, on a launched workspace (`permission_mode = "default"`,
a domain: simulated Hetzner cloud, real Caddy and login, the real Claude Code against the scripted
model). The model asks for a Bash call; the request shows on the page (HTTPS as the signed-in
user) and root tells a fake ntfy (tests/fakes/ntfy.py, a protected topic) with Allow / Deny buttons;
Allow pressed on the phone (its capability posted through the VM's Caddy, as ntfy's app does) runs
it and the model gets its output, and the page's Allow after it is void; Deny on the page gives the
model the refusal. A preview's cross-origin Allow and the agent's own attempts (its shell, over
SSH: root's sockets, and a button of its own posted to the workspace's hostname) answer nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.fakes.ntfy import FakeNtfy
from tests.polling import wait_until
from vmgen.contract.phone_actions import PHONE_PATH, answer_capability, read_capability
from vmgen.contract.signed import new_key

from .web_helpers import Launched, Session, https, launch, root_on, sign_in

NAME = "permask"
ALLOWED = "touch allowed.txt && echo ALLOWED-$((6*7))"
DENIED = "touch denied.txt && echo NEVER"
NTFY_TOPIC, NTFY_TOKEN = "vmgen-permask", "tk_test-token"


@pytest.fixture(scope="module")
def ntfy(web_lite_cloud) -> Iterator[FakeNtfy]:
    fake, _ = web_lite_cloud
    server = FakeNtfy(protected={NTFY_TOPIC: {NTFY_TOKEN}}, host="0.0.0.0", public_host=fake.gateway).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ws(cli, web_lite_cloud, ntfy, model, tmp_path_factory) -> Iterator[Launched]:
    _, dns = web_lite_cloud
    model.script = Script(
        rules=[
            Rule("RUN-ALLOWED", tool=ToolUse("Bash", {"command": ALLOWED, "description": "make allowed.txt"})),
            Rule("RUN-DENIED", tool=ToolUse("Bash", {"command": DENIED, "description": "make denied.txt"})),
        ]
    )
    cli.env["VMGEN_PERMISSION_MODE"] = "default"
    cli.env.update({"VMGEN_NOTIFY": f"ntfy:{ntfy.endpoint}/{NTFY_TOPIC}", "NTFY_TOKEN": NTFY_TOKEN})
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


def buttons_for(ntfy: FakeNtfy, request_id: str) -> dict[str, dict]:
    """The http buttons of root's ntfy message about this request, by label."""

    def found() -> dict[str, dict]:
        for message in ntfy.messages(NTFY_TOPIC):
            http = {a["label"]: a for a in message.get("actions", []) if a["action"] == "http"}
            if "Allow" in http and request_id in read_capability(http["Allow"]["body"])[1]:
                return http
        return {}

    return wait_until(found, bool, 60)


def press(ws: Launched, capability: str) -> tuple[int, dict]:
    """The phone's press: the capability POSTed to the workspace's hostname, no cookie."""
    reply = https(ws.ip, ws.host, PHONE_PATH, "POST", {"Content-Type": "text/plain"}, capability.encode())
    return reply.status, json.loads(reply.body or b"{}")


def test_allow_on_the_phone_runs_the_command_and_deny_on_the_page_refuses_it(cli, ws, user, model, ntfy, docker_client):
    root = root_on(docker_client, NAME)
    asked = ask_agent(user, "please RUN-ALLOWED")
    assert (asked["ask"]["tool"], asked["ask"]["command"]) == ("Bash", ALLOWED)
    buttons = buttons_for(ntfy, asked["id"])
    assert buttons["Allow"]["url"] == f"https://{ws.host}{PHONE_PATH}" and set(buttons) == {"Allow", "Deny"}
    assert "allowed.txt" not in json.dumps(ntfy.messages(NTFY_TOPIC))  # the agent's command stays on the page

    # A preview (the agent's own app) posts an Allow: refused, and the request is still asked.
    status, said = post(user, "/api/permission", {"id": asked["id"], "decision": "allow"}, f"https://p3000.{ws.host}")
    assert status == 403 and [p["id"] for p in pending(user)] == [asked["id"]], said
    # The agent itself, in its shell: root's sockets answer nothing of it; its settings cannot
    # change vmgen's managed ones.
    forged = answer_capability(new_key(), NAME, asked["id"], "allow", 0.0)  # the agent's own key
    tries = cli.ssh(
        NAME,
        AGENT_TRIES.replace("REQUEST_ID", asked["id"]).replace("HOST", ws.host).replace("FORGED", forged),
        check=False,
    )
    assert json.loads(tries.strip().splitlines()[-1]) == {
        "answer": {"refused": "only root may ask for answer"},
        "page ops": "Permission denied",
        "managed settings": "Permission denied",
        "a button of its own": [409, {"error": "the answer's signature does not match"}],
    }
    assert [p["id"] for p in pending(user)] == [asked["id"]]

    assert press(ws, buttons["Allow"]["body"]) == (200, {"done": "allow"})
    assert result_for(model, "ALLOWED-", cli, root) == "ALLOWED-42"
    assert "allowed.txt" in cli.ssh(NAME, f"ls ~/work/{NAME}")
    assert press(ws, buttons["Deny"]["body"])[0] == 409  # the other button, too late
    status, said = post(user, "/api/permission", {"id": asked["id"], "decision": "allow"}, f"https://{ws.host}")
    assert status == 409 and "answered already" in said["error"]  # the phone answered first

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
import ssl, http.client
context = ssl._create_unverified_context()
phone = http.client.HTTPSConnection("127.0.0.1", 443, timeout=20, context=context)
phone.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", 443), 20), server_hostname="HOST")
phone.request("POST", "/api/phone", body=b"FORGED", headers={"Host": "HOST"})
answer = phone.getresponse()
said["a button of its own"] = [answer.status, json.loads(answer.read())]
print(json.dumps(said))
EOF"""
