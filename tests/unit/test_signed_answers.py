"""The signed messages the laptop sends root through the agent (contract.signed): a permission
answer from the phone passes only with the workspace's key, for its workspace, unaltered, and a
signature made for one kind of message (the budget's grant) never passes for another; the Allow
/ Deny callback data names one request and one decision, and nothing else passes for it."""

from __future__ import annotations

import json

import pytest

from tests.fakes.telegram import TOKEN
from vmgen.contract.budgetgrant import sign as sign_grant
from vmgen.contract.permission_answer import PermissionAnswer, answer_text, signed_answer, verified_answer
from vmgen.contract.signed import matches, new_key, sign
from vmgen.contract.telegram import (
    MAX_CALLBACK_DATA,
    keepalive_data,
    permission_data,
    read_keepalive,
    read_permission,
)
from vmgen.errors import DocumentError

KEY = new_key()
REQUEST = "Zq8mQ0x1_a-bcdefghijklmnopqrstuv"  # 32 characters, as root's token_urlsafe(24)
ANSWER = PermissionAnswer("app", REQUEST, "allow", 1_700_000_000.0)


def test_an_answer_signed_with_the_workspaces_key_is_taken() -> None:
    text, mac = signed_answer(ANSWER, KEY)
    assert verified_answer(text, mac, KEY, "app") == ANSWER
    assert verified_answer(text, mac.upper() + "\n", KEY, "app") == ANSWER  # hex, as sent


@pytest.mark.parametrize(
    "change",
    [
        lambda t, m: (t, sign(t, new_key(), "vmgen permission answer")),  # another key (the agent's own)
        lambda t, m: (t.replace(REQUEST, REQUEST[::-1]), m),  # the request id altered
        lambda t, m: (t.replace('"allow"', '"deny"'), m),  # the decision turned
        lambda t, m: (t.replace("1700000000.0", "1800000000.0"), m),  # a later time
        lambda t, m: (t, sign(t, KEY)),  # the right key, but signed as another kind (no purpose)
        lambda t, m: (t, ""),
        lambda t, m: (t + " " * 2000, m),
    ],
)
def test_a_forged_or_altered_answer_is_refused(change) -> None:
    text, mac = change(*signed_answer(ANSWER, KEY))
    with pytest.raises(DocumentError, match="signature does not match"):
        verified_answer(text, mac, KEY, "app")


def test_an_answer_for_another_workspace_or_without_a_key_is_refused() -> None:
    text, mac = signed_answer(ANSWER, KEY)
    with pytest.raises(DocumentError, match="not this workspace"):
        verified_answer(text, mac, KEY, "api")
    with pytest.raises(DocumentError, match="older vmgen"):
        verified_answer(text, mac, "", "app")
    bad = PermissionAnswer("app", "short", "allow", 1.0)
    with pytest.raises(DocumentError, match="no request id"):
        verified_answer(*signed_answer(bad, KEY), KEY, "app")


def test_a_budget_grants_signature_never_passes_as_an_answer_nor_the_reverse() -> None:
    text = answer_text(ANSWER)
    with pytest.raises(DocumentError):
        verified_answer(text, sign_grant(text, KEY), KEY, "app")
    answer_mac = signed_answer(ANSWER, KEY)[1]
    assert not matches(text, answer_mac, KEY)  # checked as the budget checks its grants
    assert sign_grant("x", KEY) == sign("x", KEY)
    assert not matches("x", sign("x", KEY), "not hex")


def test_the_allow_and_deny_buttons_name_one_request_and_one_decision() -> None:
    allow = permission_data(TOKEN, "app", REQUEST, "allow")
    deny = permission_data(TOKEN, "app", REQUEST, "deny")
    assert len(allow.encode()) <= MAX_CALLBACK_DATA and len(deny.encode()) <= MAX_CALLBACK_DATA
    found = read_permission(TOKEN, allow, ["api", "app"])
    assert found is not None and (found.workspace, found.request_id, found.decision) == ("app", REQUEST, "allow")
    assert read_permission(TOKEN, deny, ["app"]).decision == "deny"  # type: ignore[union-attr]
    prefix, _, request_id, mac = deny.split(".")
    assert read_permission(TOKEN, f"{prefix}.a.{request_id}.{mac}", ["app"]) is None  # a Deny turned into an Allow
    assert read_permission(TOKEN, f"{prefix}.d.{REQUEST[::-1]}.{mac}", ["app"]) is None  # another request
    assert read_permission(TOKEN, deny, ["api"]) is None  # not one of this laptop's workspaces
    assert read_permission(TOKEN.replace("test", "evil"), deny, ["app"]) is None  # made without the token
    assert read_permission(TOKEN, keepalive_data(TOKEN, "app"), ["app"]) is None
    assert read_keepalive(TOKEN, allow, ["app"]) is None  # nor the other way round
    assert read_permission(TOKEN, "p1.x." + REQUEST + "." + mac, ["app"]) is None


def test_the_answer_text_is_canonical() -> None:
    assert json.loads(answer_text(ANSWER)) == {
        "workspace": "app",
        "request_id": REQUEST,
        "decision": "allow",
        "issued_at": 1_700_000_000.0,
    }


def test_the_laptop_signs_what_it_relays_and_the_phone_hears_roots_verdict() -> None:
    from vmgen.errors import VmgenError
    from vmgen.laptop.telegram.commands import deliver_answer

    relayed: list[tuple[str, str]] = []

    def relay(text: str, mac: str) -> None:
        relayed.append((text, mac))

    assert deliver_answer("app", REQUEST, "allow", KEY, relay, clock=lambda: 5.0) == "Allowed"
    assert verified_answer(*relayed[0], KEY, "app") == PermissionAnswer("app", REQUEST, "allow", 5.0)
    assert deliver_answer("app", REQUEST, "deny", KEY, relay) == "Denied"

    def refusing(reason: str):
        def relay(text: str, mac: str) -> None:
            raise VmgenError(f"app: refused: {reason}")

        return relay

    assert deliver_answer("app", REQUEST, "allow", KEY, refusing("no such request: answered already")) == (
        "already answered"
    )
    assert deliver_answer("app", REQUEST, "allow", KEY, refusing("expired: the answer was not signed")) == "expired"
    gone = deliver_answer("app", REQUEST, "allow", KEY, refusing("ssh: connect to host 192.0.2.1 port 22: timed out"))
    assert gone.startswith("not delivered (app: refused: ssh: connect") and gone.endswith("or in the terminal")
    assert len(gone) <= 200  # answerCallbackQuery's limit
    before = len(relayed)
    assert "older vmgen" in deliver_answer("app", REQUEST, "allow", "", relay)
    assert len(relayed) == before  # nothing relayed without the workspace's key
