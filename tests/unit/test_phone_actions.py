"""The capabilities under ntfy's Allow, Deny and Keep alive buttons (contract.phone_actions): made
with the workspace's key only, bound to one request and one decision (or one nonce), expiring, and
not interchangeable with the laptop's signed answers or a budget grant."""

from __future__ import annotations

import json

import pytest

from vmgen.contract.budgetgrant import sign as sign_grant
from vmgen.contract.permission_answer import PermissionAnswer, signed_answer
from vmgen.contract.phone_actions import (
    ANSWER_PURPOSE,
    KEEPALIVE_BUTTON_SECONDS,
    KEEPALIVE_PURPOSE,
    MAX_CAPABILITY,
    KeepaliveTicket,
    answer_capability,
    keepalive_capability,
    read_capability,
    verified_keepalive,
    verified_phone_answer,
)
from vmgen.contract.signed import new_key, sign
from vmgen.errors import DocumentError

KEY = new_key()
REQUEST = "Zq8mQ0x1_a-bcdefghijklmnopqrstuv"
NOW = 1_800_000_000.0


def test_an_allow_button_carries_roots_signed_answer_for_that_request() -> None:
    capability = answer_capability(KEY, "app", REQUEST, "allow", NOW)
    assert len(capability) < MAX_CAPABILITY and KEY not in capability
    kind, text, mac = read_capability(capability)
    assert kind == "a"
    assert verified_phone_answer(text, mac, KEY, "app") == PermissionAnswer("app", REQUEST, "allow", NOW)


@pytest.mark.parametrize(
    "change",
    [
        lambda t, m: (t, sign(t, new_key(), ANSWER_PURPOSE)),  # the agent's own key
        lambda t, m: (t.replace('"deny"', '"allow"'), m),  # a Deny turned into an Allow
        lambda t, m: (t.replace(REQUEST, "Another_request_id_0123456789ab"), m),  # another request
        lambda t, m: (t.replace("1800000000.0", "1800000600.0"), m),  # a later time
        lambda t, m: (t, sign(t, KEY)),  # the right key, no purpose (the budget's)
        lambda t, m: (t, sign(t, KEY, KEEPALIVE_PURPOSE)),  # the right key, the keep-alive's purpose
    ],
)
def test_a_forged_or_altered_answer_button_is_refused(change) -> None:
    _, text, mac = read_capability(answer_capability(KEY, "app", REQUEST, "deny", NOW))
    forged_text, forged_mac = change(text, mac)
    with pytest.raises(DocumentError, match="signature does not match"):
        verified_phone_answer(forged_text, forged_mac, KEY, "app")


def test_a_laptops_answer_is_no_button_and_a_button_is_no_laptops_answer() -> None:
    from vmgen.contract.permission_answer import verified_answer

    answer = PermissionAnswer("app", REQUEST, "allow", NOW)
    text, laptop_mac = signed_answer(answer, KEY)
    with pytest.raises(DocumentError, match="signature does not match"):
        verified_phone_answer(text, laptop_mac, KEY, "app")
    _, text, button_mac = read_capability(answer_capability(KEY, "app", REQUEST, "allow", NOW))
    with pytest.raises(DocumentError, match="signature does not match"):
        verified_answer(text, button_mac, KEY, "app")
    with pytest.raises(DocumentError, match="signature does not match"):
        verified_phone_answer(text, sign_grant(text, KEY), KEY, "app")


def test_an_answer_button_for_another_workspace_is_refused() -> None:
    _, text, mac = read_capability(answer_capability(KEY, "api", REQUEST, "allow", NOW))
    with pytest.raises(DocumentError, match="not this workspace"):
        verified_phone_answer(text, mac, KEY, "app")


def test_a_keepalive_button_acts_for_its_workspace_within_its_lifetime() -> None:
    kind, text, mac = read_capability(keepalive_capability(KEY, "app", NOW, nonce="n" * 24))
    assert kind == "k"
    assert verified_keepalive(text, mac, KEY, "app", NOW + 60) == KeepaliveTicket("app", "n" * 24, NOW)
    with pytest.raises(DocumentError, match=r"^expired"):
        verified_keepalive(text, mac, KEY, "app", NOW + KEEPALIVE_BUTTON_SECONDS + 1)
    with pytest.raises(DocumentError, match=r"^expired"):  # issued in root's future: not by this root's clock
        verified_keepalive(text, mac, KEY, "app", NOW - 3600)
    with pytest.raises(DocumentError, match="not for this workspace"):
        verified_keepalive(text, mac, KEY, "api", NOW)
    with pytest.raises(DocumentError, match="older vmgen"):
        verified_keepalive(text, mac, "", "app", NOW)


def test_a_forged_or_altered_keepalive_button_is_refused() -> None:
    _, text, mac = read_capability(keepalive_capability(KEY, "app", NOW))
    later = json.dumps({**json.loads(text), "issued_at": NOW + 5 * 3600}, sort_keys=True, separators=(",", ":"))
    for forged_text, forged_mac in (
        (text, sign(text, new_key(), KEEPALIVE_PURPOSE)),
        (later, mac),  # made younger to outlive its lifetime
        (text, sign(text, KEY, ANSWER_PURPOSE)),
    ):
        with pytest.raises(DocumentError, match="signature does not match"):
            verified_keepalive(forged_text, forged_mac, KEY, "app", NOW)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",
        "x.eyJ9.0",
        "a..",
        "a.e30." + "0" * 63,
        "a.e30." + "G" * 64,
        "a.e30." + "0" * 64 + ".x",
        "a." + "A" * 2000,
    ],
)
def test_what_is_not_shaped_like_a_button_is_refused_before_root_is_asked(value: str) -> None:
    with pytest.raises(DocumentError, match="not a vmgen button"):
        read_capability(value)


def test_a_button_is_read_whitespace_aside() -> None:
    capability = answer_capability(KEY, "app", REQUEST, "allow", NOW)
    assert read_capability(f" {capability}\n") == read_capability(capability)
