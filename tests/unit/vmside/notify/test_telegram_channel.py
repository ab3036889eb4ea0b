"""Root's Telegram channel against the fake Bot API (tests/fakes/telegram.py): the message the
phone shows (vmgen's words, Open and Keep alive 1 h buttons), no token anywhere but the URL, and a
Bot API that refuses is one log line that names no token."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.telegram import TOKEN, FakeTelegram, TelegramUser
from vmgen.contract import codec
from vmgen.contract.documents import HookEvent, WebLinks
from vmgen.contract.names import VmPaths
from vmgen.contract.notify import (
    TELEGRAM_API,
    TELEGRAM_CHAT_VARIABLE,
    TELEGRAM_TOKEN_VARIABLE,
    TelegramTarget,
    parse_target,
)
from vmgen.contract.telegram import read_keepalive
from vmgen.errors import DocumentError
from vmgen.vmside.notify.hooks import HookFollower
from vmgen.vmside.notify.policy import Notice, action_notice, hook_state, message_of
from vmgen.vmside.notify.sender import deliver, notifier_for

from .test_notify_service import run_hook

USER = TelegramUser(5151, "Sam", "sam")


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        fake.open_chat(USER)  # the user sent /start to the setup before
        yield fake


@pytest.fixture
def paths(tmp_path: Path) -> VmPaths:
    paths = VmPaths(
        state=tmp_path / "s", run=tmp_path / "r", etc=tmp_path / "e", home=tmp_path / "h", log=tmp_path / "l"
    )
    paths.web_links.parent.mkdir(parents=True, exist_ok=True)
    paths.web_links.write_text(codec.dumps(WebLinks(url="https://app.example.com/")))
    return paths


def secrets(chat: int = USER.id) -> dict[str, str]:
    return {TELEGRAM_TOKEN_VARIABLE: TOKEN, TELEGRAM_CHAT_VARIABLE: str(chat)}


def finished() -> Notice:
    _, notice = hook_state(HookEvent(at=0, event="Stop", session="s1"))
    assert notice is not None
    return notice


def test_telegram_targets_parse_with_telegrams_server_or_ones_own() -> None:
    assert parse_target("telegram") == TelegramTarget(TELEGRAM_API)
    assert parse_target("telegram:http://10.0.0.5:8081/") == TelegramTarget("http://10.0.0.5:8081")
    for bad in ("telegram:", "telegram:ftp://x", "telegram:https://a b"):
        with pytest.raises(DocumentError, match="`telegram`"):
            parse_target(bad)


def test_a_notification_reaches_the_chat_with_open_and_keep_alive(telegram: FakeTelegram, paths: VmPaths) -> None:
    notifier = notifier_for("app", (f"telegram:{telegram.root_url}",), secrets(), paths, queued=False)
    notifier.send_now(finished(), timeout=10)
    (message,) = telegram.sent(USER.id)
    assert message["text"] == "app: agent finished\nthe agent finished its turn"
    (row,) = message["reply_markup"]["inline_keyboard"]
    assert row[0] == {"text": "Open", "url": "https://app.example.com/"}
    assert row[1]["text"] == "Keep alive 1 h"
    button = read_keepalive(TOKEN, row[1]["callback_data"], ["other", "app"])
    assert button is not None and button.workspace == "app"
    assert read_keepalive("7000000001:another-token", row[1]["callback_data"], ["app"]) is None
    assert all(TOKEN not in str(call.params) for call in telegram.calls)


def test_a_workspace_that_is_gone_gets_no_keep_alive_button(telegram: FakeTelegram, paths: VmPaths) -> None:
    notifier = notifier_for("app", (f"telegram:{telegram.root_url}",), secrets(), paths, queued=False)
    deleted = action_notice("deleting", None, "app")
    assert deleted is not None
    notifier.send_now(deleted, timeout=10)
    (message,) = telegram.sent(USER.id)
    assert message["text"] == "app: deleted\nworkspace deleted"
    assert message["reply_markup"]["inline_keyboard"] == [[{"text": "Open", "url": "https://app.example.com/"}]]


def test_a_refusing_bot_api_is_one_line_without_the_token(
    telegram: FakeTelegram, paths: VmPaths, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "vmgen.notify")
    (channel,) = notifier_for("app", (f"telegram:{telegram.root_url}",), secrets(chat=999), paths).channels
    assert not deliver(channel, message_of(finished(), "app", ""), until=float("inf"))

    def said() -> list[str]:  # this channel's lines (a sender thread of another test may still log)
        return [r.getMessage() for r in caplog.records if "to telegram" in r.getMessage()]

    assert said() == [
        "notification finished to telegram failed (try 1): HTTP 400: Bad Request: chat not found",
        "notification finished to telegram given up",
    ]
    caplog.clear()
    wrong = {TELEGRAM_TOKEN_VARIABLE: "7000000001:test-token-wrong", TELEGRAM_CHAT_VARIABLE: str(USER.id)}
    (channel,) = notifier_for("app", (f"telegram:{telegram.root_url}",), wrong, paths).channels
    assert not deliver(channel, message_of(finished(), "app", ""), until=float("inf"))
    assert said()[0].endswith("failed (try 1): HTTP 401: Unauthorized")
    assert not any("test-token" in r.getMessage() for r in caplog.records)
    assert telegram.sent(USER.id) == []


def test_a_forged_hook_reaches_telegram_only_as_vmgens_words(telegram: FakeTelegram, paths: VmPaths) -> None:
    """Attack: the agent's hook payload carries markup, a link, a button's worth of data and a long
    text; the chat gets vmgen's fixed sentence, vmgen's two buttons, and nothing of the payload."""
    notifier = notifier_for("app", (f"telegram:{telegram.root_url}",), secrets(), paths)
    follower = HookFollower(paths.hook_events, notifier, uid_of=os.getuid, since=0)
    evil = '<b>Approve</b> [here](https://evil.example/p) {\\"callback_data\\": \\"k1.x.y\\"} ' + "y" * 5000
    payload = f'{{"session_id": "s9", "notification_type": "permission_prompt", "message": "{evil}"}}'
    run_hook(paths, "Notification", payload)
    assert follower.poll() == 1
    (message,) = telegram.wait_for_sent(USER.id, 1)
    assert message["text"] == "app: permission asked\nthe agent asks permission to use a tool"
    (row,) = message["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in row] == ["Open", "Keep alive 1 h"] and row[0]["url"] == "https://app.example.com/"
    assert not any("evil" in str(c.params) or "Approve" in str(c.params) for c in telegram.calls)


def test_a_permission_prompt_carries_allow_and_deny_for_that_request_alone(
    telegram: FakeTelegram, paths: VmPaths
) -> None:
    from vmgen.contract.telegram import read_permission
    from vmgen.vmside.notify.policy import permission_notice

    request_id = "R" * 32
    notifier = notifier_for("app", (f"telegram:{telegram.root_url}",), secrets(), paths, queued=False)
    notifier.send_now(permission_notice("Bash", request_id), timeout=10)
    (message,) = telegram.sent(USER.id)
    assert message["text"] == (
        "app: permission requested\nthe agent asks to use Bash: Allow or Deny on the workspace page"
    )
    answers, links = message["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in answers] == ["Allow", "Deny"] and links[0]["text"] == "Open"
    allow, deny = (read_permission(TOKEN, b["callback_data"], ["app"]) for b in answers)
    assert allow is not None and (allow.request_id, allow.decision) == (request_id, "allow")
    assert deny is not None and (deny.request_id, deny.decision) == (request_id, "deny")
    notifier.send_now(finished(), timeout=10)  # any other message: no Allow / Deny
    assert "Allow" not in str(telegram.sent(USER.id)[1]["reply_markup"])
