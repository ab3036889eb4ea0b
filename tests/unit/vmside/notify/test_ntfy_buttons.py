"""ntfy's buttons (vmside/notify/channels/ntfy.py), through the real channel and a fake ntfy server
(tests/fakes/ntfy.py, which parses `actions` as ntfy's server does): on a topic strangers may read,
only `view` buttons to the page; on one the server refuses to an anonymous reader, `http` buttons
whose capabilities root signed (Allow / Deny bound to the request, Keep alive); never the key or
the token in a message, and nothing without a domain."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.ntfy import FakeNtfy, parse_actions
from vmgen.contract.notify import NTFY_TOKEN_VARIABLE, NtfyTarget
from vmgen.contract.phone_actions import read_capability, verified_keepalive, verified_phone_answer
from vmgen.contract.signed import KEY_VARIABLE, new_key
from vmgen.vmside.notify.channels.ntfy import Capabilities, NtfyChannel, ntfy_body
from vmgen.vmside.notify.policy import action_notice, message_of, permission_notice, warning_notice

TOKEN = "tk_test-token"
TOPIC = "vmgen-app"
KEY = new_key()
LINK = "https://app.dev.example.com/"
PHONE = "https://app.dev.example.com/api/phone"
REQUEST = "Zq8mQ0x1_a-bcdefghijklmnopqrstuv"


@pytest.fixture
def protected() -> Iterator[FakeNtfy]:
    with FakeNtfy(protected={TOPIC: {TOKEN}}) as fake:
        yield fake


def send(ntfy: FakeNtfy, notice, token: str = TOKEN, link: str = LINK) -> dict:
    secrets = {NTFY_TOKEN_VARIABLE: token, KEY_VARIABLE: KEY} if token else {KEY_VARIABLE: KEY}
    NtfyChannel(NtfyTarget(ntfy.endpoint, TOPIC), secrets).send(message_of(notice, "app", link), 10)
    return ntfy.messages(TOPIC)[-1]


def labels(message: dict) -> list[tuple[str, str]]:
    return [(a["action"], a["label"]) for a in message.get("actions", [])]


def no_secret_in(message: dict) -> None:
    text = str(message)
    assert KEY not in text and TOKEN not in text


def test_a_protected_topic_gets_allow_and_deny_bound_to_the_request(protected: FakeNtfy) -> None:
    # Root asked the server without its token (with it, the topic would have been shown).
    message = send(protected, permission_notice("Bash", REQUEST))
    assert labels(message) == [("http", "Allow"), ("http", "Deny"), ("view", "Open")]
    allow, deny, open_ = message["actions"]
    assert open_["url"] == LINK + "#permissions" and open_["clear"] is True
    for action, decision in ((allow, "allow"), (deny, "deny")):
        assert (action["url"], action["method"], action["clear"]) == (PHONE, "POST", True)
        assert "headers" not in action  # a plain POST: nothing else to carry
        kind, text, mac = read_capability(action["body"])
        answer = verified_phone_answer(text, mac, KEY, "app")
        assert (kind, answer.request_id, answer.decision) == ("a", REQUEST, decision)
    no_secret_in(message)
    # The page's words, not the agent's: the tool's name only.
    assert message["message"] == "the agent asks to use Bash: Allow or Deny on the workspace page"


def test_a_protected_topic_gets_open_and_keep_alive_where_holding_off_means_something(protected: FakeNtfy) -> None:
    message = send(protected, warning_notice("will be deleted in 10 min", 1e9))
    assert labels(message) == [("view", "Open"), ("http", "Keep alive 1 h")]
    _, text, mac = read_capability(message["actions"][1]["body"])
    ticket = verified_keepalive(text, mac, KEY, "app", message["time"])
    assert ticket.workspace == "app"
    # Each message its own button: two messages, two nonces.
    again = send(protected, warning_notice("will be deleted in 5 min", 2e9))
    _, text2, mac2 = read_capability(again["actions"][1]["body"])
    assert verified_keepalive(text2, mac2, KEY, "app", again["time"]).nonce != ticket.nonce
    deleted = send(protected, action_notice("deleting", None, "app"))
    assert labels(deleted) == [("view", "Open")]
    no_secret_in(message)


def test_a_topic_anyone_may_read_gets_only_buttons_that_open_the_page() -> None:
    # The token is good, but the server lets anonymous users read the topic: no capability goes out.
    with FakeNtfy(tokens=(TOKEN,)) as public:
        message = send(public, permission_notice("Bash", REQUEST))
        assert labels(message) == [("view", "Allow / Deny")]
        assert message["actions"][0]["url"] == LINK + "#permissions"
        warning = send(public, warning_notice("will be deleted in 10 min", 1e9))
        assert labels(warning) == [("view", "Open")] and warning["actions"][0]["url"] == LINK
        # No token at all: the same, and the server is not even asked.
        bare = send(public, permission_notice("Bash", REQUEST), token="")
        assert labels(bare) == [("view", "Allow / Deny")]
        for sent in (message, warning, bare):
            assert "/api/phone" not in str(sent)
            no_secret_in(sent)


def test_without_a_domain_there_are_no_buttons(protected: FakeNtfy) -> None:
    message = send(protected, permission_notice("Bash", REQUEST), link="")
    assert "actions" not in message and "click" not in message


def test_the_topic_is_asked_once_in_a_while() -> None:
    asked: list[tuple[NtfyTarget, float]] = []
    now = [0.0]

    def refuses(target: NtfyTarget, timeout: float) -> bool:
        asked.append((target, timeout))
        return True

    channel = NtfyChannel(
        NtfyTarget("https://ntfy.example", TOPIC),
        {NTFY_TOKEN_VARIABLE: TOKEN, KEY_VARIABLE: KEY},
        refuses_strangers=refuses,
        clock=lambda: now[0],
    )
    assert channel.protected(5) and channel.protected(5) and len(asked) == 1
    now[0] = 601
    assert channel.protected(5) and len(asked) == 2


def test_the_body_is_what_ntfys_server_accepts_as_actions() -> None:
    """The JSON action format of server/actions.go (at most 3; view needs a url; http a url and a
    method that may carry a body), as the fake parses it."""
    message = message_of(permission_notice("Bash", REQUEST), "app", LINK)
    capabilities = Capabilities(PHONE, allow="a.e30." + "0" * 64, deny="a.e30." + "1" * 64)
    for body in (ntfy_body(TOPIC, message), ntfy_body(TOPIC, message, capabilities)):
        parsed = parse_actions(json.dumps(body["actions"]))
        assert [(a["action"], a["label"]) for a in parsed] == [(a["action"], a["label"]) for a in body["actions"]]
