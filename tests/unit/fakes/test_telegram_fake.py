"""The fake Telegram Bot API, driven by python-telegram-bot's own Bot and Application as vmgen's bot will be."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import requests
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram import TOKEN, FakeTelegram, TelegramUser

ALICE = TelegramUser(4242, "Alice", "alice")
KEYBOARD = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("Allow", callback_data="allow:r1"),
            InlineKeyboardButton("Deny", callback_data="deny:r1"),
        ],
        [InlineKeyboardButton("Open", url="https://ws1.example.com/")],
    ]
)


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def bot(fake: FakeTelegram, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=fake.base_url)


def test_get_me_and_a_rejected_token(telegram: FakeTelegram) -> None:
    async def run() -> None:
        async with bot(telegram) as b:
            me = await b.get_me()
            assert (me.id, me.is_bot, me.username) == (7_000_000_001, True, "vmgen_test_bot")
        with pytest.raises(InvalidToken, match="was rejected by the server"):
            async with bot(telegram, "7000000001:wrong-token"):
                pass

    asyncio.run(run())
    wrong = requests.post(f"{telegram.base_url}7000000001:wrong/getMe", timeout=5)
    assert (wrong.status_code, wrong.json()) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    malformed = requests.post(f"{telegram.base_url}not-a-token/getMe", timeout=5)
    assert (malformed.status_code, malformed.json()["description"]) == (404, "Not Found")
    assert requests.post(f"{telegram.base_url}{TOKEN}/noSuchMethod", timeout=5).status_code == 404


def test_send_a_keyboard_and_read_what_the_chat_shows(telegram: FakeTelegram) -> None:
    telegram.user_says("/start", user=ALICE)

    async def run() -> None:
        async with bot(telegram) as b:
            sent = await b.send_message(
                ALICE.id, "ws1 wants to run: <code>rm -rf build</code>", parse_mode="HTML", reply_markup=KEYBOARD
            )
            assert sent.chat.id == ALICE.id and sent.from_user is not None and sent.from_user.is_bot
            assert sent.text == "ws1 wants to run: rm -rf build"
            assert sent.reply_markup == KEYBOARD
            edited = await b.edit_message_text("ws1: allowed", chat_id=ALICE.id, message_id=sent.message_id)
            assert isinstance(edited, type(sent)) and edited.text == "ws1: allowed" and edited.reply_markup is None
            with pytest.raises(BadRequest, match="Message is not modified"):
                await b.edit_message_text("ws1: allowed", chat_id=ALICE.id, message_id=sent.message_id)
            with pytest.raises(BadRequest, match="Message to edit not found"):
                await b.edit_message_text("x", chat_id=ALICE.id, message_id=999)

    asyncio.run(run())
    [shown] = telegram.sent(ALICE.id)
    assert shown["text"] == "ws1: allowed" and "reply_markup" not in shown and "edit_date" in shown


def test_the_errors_a_sending_bot_meets(telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # PTB 22's RetryAfter.retry_after as a timedelta, without a warning
    telegram.open_chat(ALICE)

    async def run() -> None:
        async with bot(telegram) as b:
            with pytest.raises(BadRequest, match="Chat not found"):
                await b.send_message(999, "hello")
            with pytest.raises(BadRequest, match="Message text is empty"):
                await b.send_message(ALICE.id, " ")
            with pytest.raises(BadRequest, match="Message is too long"):
                await b.send_message(ALICE.id, "x" * 4097)
            with pytest.raises(BadRequest, match="Button_data_invalid"):
                await b.send_message(
                    ALICE.id,
                    "x",
                    reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Allow", callback_data="a" * 65)]]),
                )
            with pytest.raises(BadRequest, match="Inline keyboard button url is invalid"):
                await b.send_message(
                    ALICE.id,
                    "x",
                    reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Open", url="http://localhost:8080/")]]),
                )
            with pytest.raises(BadRequest, match=r"character '\.' is reserved"):
                await b.send_message(ALICE.id, "Backup done.", parse_mode="MarkdownV2")
            telegram.fail_next("sendMessage", retry_after=3)
            with pytest.raises(RetryAfter) as flood:
                await b.send_message(ALICE.id, "flood")
            assert flood.value.retry_after == dt.timedelta(seconds=3)
            assert (await b.send_message(ALICE.id, r"Backup done\.", parse_mode="MarkdownV2")).text == "Backup done."
            telegram.block(ALICE)
            with pytest.raises(Forbidden, match="bot was blocked by the user"):
                await b.send_message(ALICE.id, "hello")

    asyncio.run(run())
    assert [m["text"] for m in telegram.sent(ALICE.id)] == ["Backup done."]
    assert [c.status for c in telegram.calls if c.method == "sendMessage"] == [
        *[400] * 6,
        429,
        200,
        403,
    ]


def test_get_updates_offsets_and_long_polling(telegram: FakeTelegram) -> None:
    async def run() -> None:
        async with bot(telegram) as b:
            assert await b.get_updates(timeout=0) == ()
            threading.Timer(0.1, telegram.user_says, args=("/list",)).start()
            [update] = await b.get_updates(timeout=10)  # woken by the message, not by the timeout
            assert update.message is not None and update.message.text == "/list"
            assert update.message.entities[0].type == "bot_command"
            telegram.user_says("second")
            again = await b.get_updates(timeout=0)
            assert [u.update_id for u in again] == [update.update_id, update.update_id + 1]  # not confirmed yet
            assert [u.message.text for u in await b.get_updates(offset=update.update_id + 1) if u.message] == ["second"]
            await b.get_updates(offset=update.update_id + 2, timeout=0)
            assert telegram.pending_updates() == []

    asyncio.run(run())


def test_two_pollers_conflict_as_two_bot_processes_do(telegram: FakeTelegram) -> None:
    async def run() -> None:
        async with bot(telegram) as first, bot(telegram) as second:
            waiting = asyncio.create_task(first.get_updates(timeout=10))
            await asyncio.to_thread(telegram.wait_for_poller)
            later = await second.get_updates(timeout=0)
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await waiting
            assert later == ()

    asyncio.run(run())


def test_a_webhook_blocks_polling_until_deleted(telegram: FakeTelegram) -> None:
    async def run() -> None:
        async with bot(telegram) as b:
            with pytest.raises(BadRequest, match="an https url must be provided"):
                await b.set_webhook("http://insecure.example/")
            assert await b.set_webhook("https://hook.example/tg")
            assert (await b.get_webhook_info()).url == "https://hook.example/tg"
            with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
                await b.get_updates()
            assert await b.delete_webhook()
            assert await b.get_updates() == ()

    asyncio.run(run())
    raw = requests.post(f"{telegram.base_url}{TOKEN}/deleteWebhook", timeout=5).json()
    assert raw == {"ok": True, "result": True, "description": "Webhook is already deleted"}


def test_an_application_answers_commands_replies_and_button_presses(telegram: FakeTelegram) -> None:
    """The whole loop PTB's Application runs: getMe, deleteWebhook, long-polled getUpdates, handlers, answers."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, "ws1 is waiting", reply_markup=KEYBOARD)

    async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.reply_to_message is not None
        await update.message.reply_text(f"sent to ws1: {update.message.text}", do_quote=True)

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer("Allowed")
        await query.edit_message_text(f"ws1: {query.data}")

    async def run() -> None:
        app: Application = ApplicationBuilder().token(TOKEN).base_url(telegram.base_url).build()
        app.add_handler(CommandHandler("start", start))
        app.add_handler(MessageHandler(filters.REPLY & filters.TEXT, reply))
        app.add_handler(CallbackQueryHandler(pressed))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=5)
            telegram.user_says("/start", user=ALICE)
            [prompt] = await asyncio.to_thread(telegram.wait_for_sent, ALICE.id, 1)
            query_id = telegram.press(prompt, "allow:r1", user=ALICE)
            await asyncio.to_thread(telegram.wait_for_call, "editMessageText")
            telegram.user_says("run the tests", user=ALICE, reply_to=prompt)
            await asyncio.to_thread(telegram.wait_for_sent, ALICE.id, 2)
            await app.updater.stop()
            await app.stop()
        assert telegram.callback_answers[query_id]["text"] == "Allowed"

    asyncio.run(run())
    prompt, answer = telegram.sent(ALICE.id)
    assert prompt["text"] == "ws1: allow:r1" and "reply_markup" not in prompt
    assert answer["text"] == "sent to ws1: run the tests" and answer["reply_to_message"]["from"]["id"] == ALICE.id
    assert [c.method for c in telegram.calls][:2] == ["getMe", "deleteWebhook"]
    assert telegram.pending_updates() == []  # the Updater's last getUpdates confirmed them all


def test_callback_queries_are_single_use_and_buttons_must_exist(telegram: FakeTelegram) -> None:
    telegram.open_chat(ALICE)

    async def run() -> None:
        async with bot(telegram) as b:
            sent = await b.send_message(ALICE.id, "ws1 is waiting", reply_markup=KEYBOARD)
            with pytest.raises(ValueError, match="no button with callback_data 'allow:r2'"):
                telegram.press(sent.message_id, "allow:r2", user=ALICE)
            query_id = telegram.press(sent.message_id, "allow:r2", user=ALICE, forged=True)
            [update] = await b.get_updates()
            assert update.callback_query is not None and update.callback_query.data == "allow:r2"
            assert update.callback_query.from_user.id == ALICE.id
            with pytest.raises(BadRequest, match="Message_too_long"):
                await b.answer_callback_query(query_id, "x" * 201)
            assert await b.answer_callback_query(query_id, "x" * 200)
            with pytest.raises(BadRequest, match="Query is too old"):
                await b.answer_callback_query(query_id)

    asyncio.run(run())


def test_parameters_arrive_as_json_form_multipart_or_query(telegram: FakeTelegram) -> None:
    """The Bot API takes all four; PTB sends forms (non-strings JSON-encoded), other clients JSON."""
    telegram.open_chat(ALICE)
    url = f"{telegram.base_url}{TOKEN}/sendMessage"
    markup = '{"inline_keyboard": [[{"text": "Open", "url": "https://ws1.example.com/"}]]}'
    as_json = requests.post(url, json={"chat_id": ALICE.id, "text": "1"}, timeout=5).json()
    as_form = requests.post(url, data={"chat_id": str(ALICE.id), "text": "2", "reply_markup": markup}, timeout=5)
    as_multipart = requests.post(url, files={"chat_id": (None, str(ALICE.id)), "text": (None, "3")}, timeout=5)
    as_query = requests.get(url, params={"chat_id": str(ALICE.id), "text": "4"}, timeout=5)
    assert as_json["ok"] and as_form.json()["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "Open"
    assert as_multipart.json()["ok"] and as_query.json()["ok"]
    assert [m["text"] for m in telegram.sent(ALICE.id)] == ["1", "2", "3", "4"]
    assert requests.post(url, data=b"{", headers={"Content-Type": "application/json"}, timeout=5).status_code == 400
