"""The bot, through python-telegram-bot: the setup (check the token, wait for /start) and the
poller that answers commands, Keep alive buttons, and Allow / Deny under permission prompts.

Why it runs here, on the laptop, and the VMs only send: the Bot API lets one getUpdates poller per
token (a second one ends the first with 409 Conflict), so one process must answer for every
workspace; what the commands do (`vmgen status`, `send`, `keepalive`, `backup`, `stop`, `list`)
is the laptop's already, over SSH with its pinned keys and its provider credentials, which no VM
holds; and a VM that polled would need a way to answer for the others. Root on each VM sends its
notifications with the token (sendMessage only); the poller here answers what the user does.

Only the chat and user that sent /start to the setup are answered: any other update is logged
and dropped, with no answer (a stranger learns nothing, not even that the bot listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from telegram import Bot, BotCommand, CallbackQuery, InlineKeyboardMarkup, Update
from telegram.error import Conflict, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from ...contract.notify import TELEGRAM_API
from ...contract.telegram import (
    BUTTON_LIFETIME_SECONDS,
    KEEPALIVE_DURATION,
    KEEPALIVE_PREFIX,
    PERMISSION_BUTTON_SECONDS,
    PERMISSION_PREFIX,
    PermissionButton,
    read_keepalive,
    read_permission,
)
from ...errors import TelegramUnavailable, VmgenError
from .commands import ALREADY, COMMANDS, EXPIRED, Refusal, Workspaces, perform, read_request, started
from .records import BotRecord, UsedButtons

log = logging.getLogger("vmgen.telegram")

POLL_SECONDS = 30  # getUpdates' long poll
SETUP_WAIT_SECONDS = 300.0
UPDATES = ["message", "callback_query"]
CONFLICT_LOG_SECONDS = 60.0
RUN_LOCK_FILE = "telegram-run.lock"


def api_base(api_url: str) -> str:
    """What python-telegram-bot takes as base_url (it appends the token)."""
    return f"{(api_url or TELEGRAM_API).rstrip('/')}/bot"


def failure(exc: TelegramError, token: str, doing: str) -> TelegramUnavailable:
    """One line for a failed call; the token never in it (it is part of every URL)."""
    text = str(exc).replace(token, "<token>") if token else str(exc)
    if isinstance(exc, InvalidToken):  # its text quotes the token: fixed words instead
        return TelegramUnavailable(f"Telegram refused the bot token ({doing}); check it with @BotFather")
    if isinstance(exc, Conflict):
        return TelegramUnavailable(
            f"another process polls this bot ({doing}: {text}); Telegram lets one poll a token: stop the other "
            "`vmgen telegram run`, or delete the bot's webhook"
        )
    return TelegramUnavailable(f"the Telegram Bot API failed ({doing}: {text})")


# --- setup -------------------------------------------------------------------------------------


async def setup_bot(
    token: str, api_url: str = "", say: Callable[[str], None] = print, wait: float = SETUP_WAIT_SECONDS
) -> BotRecord:
    """Check the token (getMe), then wait for /start in a private chat: that chat and its user are
    the only ones the bot will answer or write to."""
    bot = Bot(token, base_url=api_base(api_url))
    doing = "getMe"
    try:
        await bot.initialize()  # getMe
        say(f"bot @{bot.username} answers; now open https://t.me/{bot.username} and send it /start")
        doing = "getUpdates"
        offset: int | None = None
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0:
            updates = await bot.get_updates(offset=offset, timeout=int(min(POLL_SECONDS, max(1, left))))
            for update in updates:
                offset = update.update_id + 1
                message = update.message
                if (
                    message is not None
                    and message.from_user is not None
                    and message.chat.type == "private"
                    and (message.text or "").split("@")[0].split(" ")[0] == "/start"
                ):
                    await bot.get_updates(offset=offset, timeout=0)  # confirmed: `run` will not see it again
                    doing = "sendMessage"
                    await bot.send_message(
                        message.chat.id, "vmgen: this chat now gets your workspaces' notifications.\n/help: commands"
                    )
                    return BotRecord(token, message.chat.id, message.from_user.id, api_url)
                log.info("telegram setup: skipped an update that is no /start in a private chat")
        raise TelegramUnavailable(
            f"no /start reached @{bot.username} within {wait / 60:g} min; run `vmgen telegram setup` again"
        )
    except TelegramError as exc:
        raise failure(exc, token, doing) from None
    finally:
        with contextlib.suppress(TelegramError):
            await bot.shutdown()


# --- the poller --------------------------------------------------------------------------------


class BotLogic:
    """The handlers, with what they act on; one per running bot."""

    def __init__(
        self,
        record: BotRecord,
        workspaces: Workspaces,
        used: UsedButtons,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.record = record
        self.workspaces = workspaces
        self.used = used
        self.clock = clock

    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Every update passes here first: anything not from the recorded chat and user stops."""
        chat, user = update.effective_chat, update.effective_user
        if chat is not None and user is not None and (chat.id, user.id) == (self.record.chat_id, self.record.user_id):
            return
        what = "button press" if update.callback_query is not None else "message"
        log.warning(
            "telegram: ignored a %s from chat %s, user %s (not the chat `vmgen telegram setup` recorded)",
            what,
            chat.id if chat else "-",
            user.id if user else "-",
        )
        raise ApplicationHandlerStop

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.text is None:
            return
        replied = (message.reply_to_message.text or "") if message.reply_to_message else ""
        try:
            request = read_request(message.text, replied)
        except Refusal as refusal:
            await message.reply_text(str(refusal))
            return
        if request is None:
            await message.reply_text("reply to a message about a workspace to send it text; /help: commands")
            return
        if request.workspace and request.workspace not in self.workspaces.names():
            await message.reply_text(f"no workspace named {request.workspace!r} here (/list)")
            return
        if first := started(request):
            await message.reply_text(first)
        log.info("telegram: /%s %s", request.action, request.workspace)
        answer = await self._perform(lambda: perform(request, self.workspaces))
        # Named first, so that a reply to the answer goes to the same workspace.
        await message.reply_text(f"{request.workspace}: {answer}" if request.workspace else answer)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        permission = read_permission(self.record.token, query.data or "", self.workspaces.names())
        if permission is not None:
            await self._on_permission(query, context, permission)
            return
        button = read_keepalive(self.record.token, query.data or "", self.workspaces.names())
        if button is None:
            log.warning("telegram: a button press with data no workspace of this machine made")
            await query.answer("not a button of your workspaces here")
            return
        message = query.message
        sent_at = message.date.timestamp() if message is not None else 0.0
        if self.clock() - sent_at > BUTTON_LIFETIME_SECONDS:
            await query.answer(f"this button expired; /keepalive {button.workspace} {KEEPALIVE_DURATION}")
            return
        if not self.used.use(button.nonce):
            await query.answer("this button was used already")
            return
        log.info("telegram: Keep alive %s pressed for %s", KEEPALIVE_DURATION, button.workspace)
        # Answered at once (the phone shows a spinner until then, and Telegram drops a query left
        # unanswered for long); what the keepalive did follows as a message.
        await query.answer(f"keeping {button.workspace} alive for {KEEPALIVE_DURATION}…")
        answer = await self._perform(
            lambda: self.workspaces.keepalive(button.workspace, KEEPALIVE_DURATION, "from Telegram")
        )
        if message is not None:
            await context.bot.send_message(message.chat.id, f"{button.workspace}: {answer}")
            await _drop_callback_buttons(message, context, KEEPALIVE_PREFIX)

    async def _on_permission(
        self, query: CallbackQuery, context: ContextTypes.DEFAULT_TYPE, button: PermissionButton
    ) -> None:
        """Allow / Deny under root's message: a button root made (its HMAC checked), used once,
        no older than root holds a request; the answer goes to root signed with the workspace's
        key (the laptop's `answer_permission`), and the phone hears what came of it."""
        message = query.message
        sent_at = message.date.timestamp() if message is not None else 0.0
        if self.clock() - sent_at > PERMISSION_BUTTON_SECONDS:
            said = EXPIRED
        elif not self.used.use(f"{PERMISSION_PREFIX}.{button.request_id}"):
            said = ALREADY
        else:
            log.info("telegram: %s pressed for a permission prompt of %s", button.decision, button.workspace)
            said = await self._perform(
                lambda: self.workspaces.answer_permission(button.workspace, button.request_id, button.decision)
            )
        try:
            await query.answer(said[:200])
        except TelegramError as exc:
            log.info("telegram: the press's answer did not reach the phone: %s", exc)
        if message is not None:
            await _drop_callback_buttons(message, context, PERMISSION_PREFIX)

    async def _perform(self, action: Callable[[], str]) -> str:
        try:
            return await asyncio.to_thread(action)
        except VmgenError as exc:
            return f"error: {exc}"


async def _drop_callback_buttons(message: object, context: ContextTypes.DEFAULT_TYPE, prefix: str) -> None:
    """Used buttons go from the message: those whose callback data starts with `prefix` (a Keep
    alive, or Allow and Deny); the rest stay (Open)."""
    markup = getattr(message, "reply_markup", None)
    if markup is None:
        return
    keep = [
        [b for b in row if b.url or (b.callback_data and not str(b.callback_data).startswith(f"{prefix}."))]
        for row in markup.inline_keyboard
    ]
    if keep == [list(row) for row in markup.inline_keyboard]:
        return  # nothing of it left to take away (answered before)
    try:
        await context.bot.edit_message_reply_markup(
            chat_id=message.chat.id,  # type: ignore[attr-defined]
            message_id=message.message_id,  # type: ignore[attr-defined]
            reply_markup=InlineKeyboardMarkup([row for row in keep if row]) if any(keep) else None,
        )
    except TelegramError as exc:
        log.info("telegram: the used button stays on its message: %s", exc)


def build_application(logic: BotLogic) -> Application:  # type: ignore[type-arg]
    app = (
        ApplicationBuilder()
        .token(logic.record.token)
        .base_url(api_base(logic.record.api_url))
        .concurrent_updates(True)  # a backup taking minutes does not hold up /status
        .build()
    )
    app.add_handler(TypeHandler(Update, logic.gate), group=-1)
    app.add_handler(MessageHandler(filters.TEXT, logic.on_message))
    app.add_handler(CallbackQueryHandler(logic.on_button))
    return app


async def serve(logic: BotLogic, stop: asyncio.Event, on_ready: Callable[[str], None] = lambda _: None) -> None:
    """Poll until `stop` is set. TelegramUnavailable when the token is refused, or another
    `vmgen telegram run` polls on this machine already (a file lock says so at once). Another
    poller elsewhere (another machine, another program with the token) makes Telegram end one of
    the two polls with 409 Conflict: said in the log, at most once a minute, while polling goes
    on; stopping one of them on a conflict would have the other's next poll stop it too."""
    app = build_application(logic)
    token = logic.record.token
    fatal: list[TelegramUnavailable] = []
    conflict_said = [-CONFLICT_LOG_SECONDS]

    def polling_failed(exc: TelegramError) -> None:
        if isinstance(exc, InvalidToken):
            fatal.append(failure(exc, token, "getUpdates"))
            stop.set()
        elif isinstance(exc, Conflict):
            if time.monotonic() - conflict_said[0] >= CONFLICT_LOG_SECONDS:
                conflict_said[0] = time.monotonic()
                log.warning("telegram: %s", failure(exc, token, "getUpdates"))
        else:
            log.warning("telegram: getUpdates failed, trying again: %s", str(exc).replace(token, "<token>"))

    with _one_poller(logic.used.path.with_name(RUN_LOCK_FILE)):
        try:
            await app.initialize()  # getMe
        except TelegramError as exc:
            raise failure(exc, token, "getMe") from None
        try:
            try:
                await app.bot.set_my_commands([BotCommand(name, what[:256]) for name, what in COMMANDS.items()])
            except TelegramError as exc:
                log.info("telegram: the command menu stays as it was: %s", exc)
            assert app.updater is not None
            await app.updater.start_polling(
                timeout=POLL_SECONDS, allowed_updates=UPDATES, error_callback=polling_failed
            )
            await app.start()
            on_ready(app.bot.username)
            await stop.wait()
            await app.updater.stop()
            await app.stop()
        finally:
            await app.shutdown()
    if fatal:
        raise fatal[0]


@contextlib.contextmanager
def _one_poller(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TelegramUnavailable(
                "another `vmgen telegram run` answers this bot on this machine already (Telegram lets one "
                "process poll a bot)"
            ) from None
        yield
    finally:
        os.close(fd)


__all__ = ["BotLogic", "api_base", "build_application", "failure", "serve", "setup_bot"]
