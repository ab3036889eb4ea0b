"""The laptop's bot (`vmgen telegram run`'s logic) polling the fake Bot API (tests/fakes/telegram.py)
through python-telegram-bot, as the phone's user meets it: each command answered by the laptop's
functions (here a recording stand-in for them, `Laptop`), only from the chat the setup recorded,
and the Keep alive button under root's own notification used once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from telegram import Bot

from tests.fakes.telegram import TOKEN, FakeTelegram, TelegramUser
from vmgen.contract.notify import TELEGRAM_CHAT_VARIABLE, TELEGRAM_TOKEN_VARIABLE
from vmgen.contract.telegram import BUTTON_LIFETIME_SECONDS, keepalive_data
from vmgen.errors import TelegramUnavailable, WorkspaceNotRunning
from vmgen.laptop.telegram.bot import BotLogic, serve
from vmgen.laptop.telegram.records import BotRecord, UsedButtons
from vmgen.vmside.notify.policy import warning_notice
from vmgen.vmside.notify.sender import notifier_for

USER = TelegramUser(5151, "Sam", "sam")
STRANGER = TelegramUser(6666, "Eve", "eve")


@dataclass
class Laptop:
    """Stands in for the laptop's functions (laptop/cli/telegram_cmd.LaptopWorkspaces): records each
    call and answers as they do."""

    workspaces: tuple[str, ...] = ("app", "api")
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def names(self) -> list[str]:
        return list(self.workspaces)

    def list(self) -> str:
        self.calls.append(("list",))
        return "\n".join(f"{name}: running (docker)" for name in self.workspaces)

    def status(self, name: str) -> str:
        self.calls.append(("status", name))
        if name == "api":
            raise WorkspaceNotRunning("workspace 'api' is stopped; start it with `vmgen start api`")
        return "working; agent working; backs up and deletes itself 30 min after it goes idle"

    def send(self, name: str, text: str) -> str:
        self.calls.append(("send", name, text))
        return "sent"

    def keepalive(self, name: str, duration: str, reason: str) -> str:
        self.calls.append(("keepalive", name, duration, reason))
        return f"kept alive for {duration}"

    def backup(self, name: str) -> str:
        self.calls.append(("backup", name))
        return "backed up: b-1, 1.0 KiB in 2s"

    def stop(self, name: str) -> str:
        self.calls.append(("stop", name))
        return "stopped: its disk is kept"

    def answer_permission(self, name: str, request_id: str, decision: str) -> str:
        self.calls.append(("answer", name, request_id, decision))
        return "Allowed" if decision == "allow" else "Denied"


@dataclass
class Running:
    laptop: Laptop
    fake: FakeTelegram
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    failed: list[BaseException]

    def ask(self, text: str, *, user: TelegramUser = USER, reply_to: dict | None = None, answers: int = 1) -> list[str]:
        """The user writes `text`; the texts of the bot's next `answers` messages."""
        before = len(self.fake.sent(user.id))
        self.fake.user_says(text, user=user, reply_to=reply_to)
        sent = self.fake.wait_for_sent(user.id, before + answers)
        return [m["text"] for m in sent[before:]]

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def start_bot(fake: FakeTelegram, tmp_path: Path, laptop: Laptop, clock=time.time) -> Running:
    record = BotRecord(TOKEN, USER.id, USER.id, fake.root_url)
    logic = BotLogic(record, laptop, UsedButtons(tmp_path / "used.json", clock), clock)
    ready = threading.Event()
    holder: dict = {}
    failed: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
            await serve(logic, holder["stop"], lambda _: ready.set())

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30) and not failed, failed
    fake.wait_for_poller()
    return Running(laptop, fake, thread, holder["loop"], holder["stop"], failed)


@pytest.fixture
def bot(telegram: FakeTelegram, tmp_path: Path) -> Iterator[Running]:
    running = start_bot(telegram, tmp_path, Laptop())
    yield running
    running.end()


def test_each_command_is_answered_by_the_laptops_functions(bot: Running) -> None:
    assert bot.ask("/list") == ["app: running (docker)\napi: running (docker)"]
    assert bot.ask("/status app") == [
        "app: working; agent working; backs up and deletes itself 30 min after it goes idle"
    ]
    assert bot.ask("/status api") == ["api: error: workspace 'api' is stopped; start it with `vmgen start api`"]
    assert bot.ask("/send app add a HELLO.md please") == ["app: sent"]
    assert bot.ask("/keepalive app 2h") == ["app: kept alive for 2h"]
    assert bot.ask("/backup app", answers=2) == ["app: backing up…", "app: backed up: b-1, 1.0 KiB in 2s"]
    assert bot.ask("/stop app", answers=2) == ["app: stopping…", "app: stopped: its disk is kept"]
    assert bot.laptop.calls == [
        ("list",),
        ("status", "app"),
        ("status", "api"),
        ("send", "app", "add a HELLO.md please"),
        ("keepalive", "app", "2h", "from Telegram"),
        ("backup", "app"),
        ("stop", "app"),
    ]


def test_a_reply_to_a_workspaces_message_is_sent_to_it(bot: Running) -> None:
    [answer] = bot.ask("/status app")
    shown = bot.fake.sent(USER.id)[-1]
    assert answer.startswith("app: ")
    assert bot.ask("run the tests", reply_to=shown) == ["app: sent"]
    assert bot.laptop.calls[-1] == ("send", "app", "run the tests")


def test_bad_usage_is_answered_with_how_to_ask_and_does_nothing(bot: Running) -> None:
    assert bot.ask("/keepalive app forever") == [
        (
            "invalid duration 'forever': use e.g. 3h, 90m, 1h30m\n"
            "/keepalive <ws> <duration>: hold off the idle watchdog, e.g. 2h"
        )
    ]
    assert bot.ask("/status nope") == ["no workspace named 'nope' here (/list)"]
    assert bot.ask("/send app") == [
        "/send <ws> <text>: type text into the agent's pane (or reply to a message about <ws>)"
    ]
    assert bot.ask("/reboot app")[0].startswith("unknown command /reboot\n/list ")
    assert bot.ask("hello")[0].startswith("reply to a message about a workspace")
    assert bot.laptop.calls == []


def test_a_command_from_another_chat_is_ignored_and_logged(bot: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "vmgen.telegram")
    bot.fake.user_says("/stop app", user=STRANGER)
    bot.fake.user_says("/backup app", user=STRANGER)
    assert bot.ask("/list")  # the user's own message after them is answered: the stranger's were read
    assert bot.fake.sent(STRANGER.id) == []
    assert bot.laptop.calls == [("list",)]
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert (
        ignored
        == [
            (
                f"telegram: ignored a message from chat {STRANGER.id}, user {STRANGER.id} "
                "(not the chat `vmgen telegram setup` recorded)"
            )
        ]
        * 2
    )


def roots_warning(fake: FakeTelegram, tmp_path: Path) -> dict:
    """Root's notifier on the VM sends the idle warning to the user's chat (the real channel)."""
    fake.open_chat(USER)
    secrets = {TELEGRAM_TOKEN_VARIABLE: TOKEN, TELEGRAM_CHAT_VARIABLE: str(USER.id)}
    notifier = notifier_for("app", (f"telegram:{fake.root_url}",), secrets, queued=False)
    notifier.send_now(warning_notice("idle: will back up and delete itself in 10 min", 600.0), timeout=10)
    return fake.sent(USER.id)[-1]


def test_keep_alive_under_roots_message_works_once(bot: Running, tmp_path: Path) -> None:
    warning = roots_warning(bot.fake, tmp_path)
    query = bot.fake.press(warning, user=USER)
    bot.fake.wait_for_call("answerCallbackQuery")
    assert bot.fake.callback_answers[query]["text"] == "keeping app alive for 1h…"
    confirmation = bot.fake.wait_for_sent(USER.id, 2)[-1]
    assert confirmation["text"] == "app: kept alive for 1h"
    bot.fake.wait_for_call("editMessageReplyMarkup")
    assert [
        [b["text"] for b in row] for row in bot.fake.sent(USER.id)[0].get("reply_markup", {}).get("inline_keyboard", [])
    ] == []
    # The same data again (a replayed press): answered, nothing done.
    data = warning["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    again = bot.fake.press(warning["message_id"], data, user=USER, forged=True)
    wait_for_answer(bot.fake, again)
    assert bot.fake.callback_answers[again]["text"] == "this button was used already"
    assert bot.laptop.calls == [("keepalive", "app", "1h", "from Telegram")]


def wait_for_answer(fake: FakeTelegram, query: str) -> None:
    with fake._lock:
        assert fake._lock.wait_for(lambda: query in fake.callback_answers, 10)


def test_a_button_a_stranger_presses_or_nobody_made_does_nothing(
    bot: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "vmgen.telegram")
    warning = roots_warning(bot.fake, tmp_path)
    # The stranger cannot see the user's message: a hostile client sends its data from their own chat.
    bot.fake.open_chat(STRANGER)
    data = warning["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    stranger_copy = bot.fake.user_says("hi", user=STRANGER)  # some message of theirs to hang the press on
    bot.fake.press(stranger_copy, data, user=STRANGER, forged=True)
    # The user's own client, with data no root of theirs made (another workspace name's MAC).
    forged = bot.fake.press(warning, keepalive_data(TOKEN, "elsewhere"), user=USER, forged=True)
    wait_for_answer(bot.fake, forged)
    assert bot.fake.callback_answers[forged]["text"] == "not a button of your workspaces here"
    assert bot.laptop.calls == []
    assert any(f"ignored a button press from chat {STRANGER.id}" in r.getMessage() for r in caplog.records)


def test_an_old_button_has_expired(telegram: FakeTelegram, tmp_path: Path) -> None:
    running = start_bot(telegram, tmp_path, Laptop(), clock=lambda: time.time() + BUTTON_LIFETIME_SECONDS + 60)
    try:
        warning = roots_warning(telegram, tmp_path)
        query = telegram.press(warning, user=USER)
        wait_for_answer(telegram, query)
        assert telegram.callback_answers[query]["text"] == "this button expired; /keepalive app 1h"
        assert running.laptop.calls == []
    finally:
        running.end()


def test_a_refused_token_or_a_failing_bot_api_is_one_clear_line(telegram: FakeTelegram, tmp_path: Path) -> None:
    telegram.fail_next("getMe", status=500)
    logic = BotLogic(BotRecord(TOKEN, USER.id, USER.id, telegram.root_url), Laptop(), UsedButtons(tmp_path / "u"))
    with pytest.raises(TelegramUnavailable) as failed:
        asyncio.run(serve(logic, asyncio.Event()))
    assert str(failed.value) == "the Telegram Bot API failed (getMe: Internal Server Error)"
    wrong = BotRecord("7000000001:test-token-wrong", USER.id, USER.id, telegram.root_url)
    with pytest.raises(TelegramUnavailable) as refused:
        asyncio.run(serve(BotLogic(wrong, Laptop(), UsedButtons(tmp_path / "u")), asyncio.Event()))
    assert str(refused.value) == "Telegram refused the bot token (getMe); check it with @BotFather"
    assert "test-token" not in str(refused.value)


def test_one_poller_per_machine_and_another_elsewhere_is_said(
    bot: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "vmgen.telegram")
    logic = BotLogic(
        BotRecord(TOKEN, USER.id, USER.id, bot.fake.root_url), Laptop(), UsedButtons(tmp_path / "used.json")
    )
    with pytest.raises(TelegramUnavailable, match=r"^another `vmgen telegram run` answers this bot on this machine"):
        asyncio.run(serve(logic, asyncio.Event()))

    async def poll_elsewhere() -> None:  # another program with the token, on another machine
        async with Bot(TOKEN, base_url=bot.fake.base_url) as other:
            await other.get_updates(timeout=0)

    asyncio.run(poll_elsewhere())
    assert bot.ask("/list") == ["app: running (docker)\napi: running (docker)"]  # the bot polls on
    assert any(
        r.getMessage().startswith("telegram: another process polls this bot (getUpdates: Conflict: terminated by")
        for r in caplog.records
    )
