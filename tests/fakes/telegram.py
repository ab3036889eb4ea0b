"""A fake Telegram Bot API server at /bot<token>/<method>, over real HTTP, standard library only.

python-telegram-bot talks to it unchanged: ``Bot(TOKEN, base_url=fake.base_url)`` or
``ApplicationBuilder().token(TOKEN).base_url(fake.base_url)``. Tests play the user's side with
`user_says` (a command, text, or a reply to one of the bot's messages) and `press` (a callback_query from an
inline keyboard button), and read what the bot did with `sent`, `wait_for_sent` and `callback_answers`.

Shapes, from the Bot API reference (core.telegram.org/bots/api: "Making requests", getUpdates, Update,
Message, User, Chat, MessageEntity, CallbackQuery, InlineKeyboardMarkup, sendMessage, editMessageText,
answerCallbackQuery, setWebhook, deleteWebhook, getWebhookInfo, ResponseParameters) and python-telegram-bot
(22.8, telegram/request/_baserequest.py: how the status and `parameters.retry_after` become its exceptions;
_requestdata.py: parameters arrive form-encoded, non-strings JSON-encoded; tests/test_bot.py: the server's
"Chat not found", the rejected token):
- every answer is {"ok": true, "result": ..., ["description"]} or
  {"ok": false, "error_code": N, "description": "...", ["parameters": {"retry_after": s}]} with HTTP status N;
- a malformed token or an unknown method is 404 "Not Found", a well-formed wrong token 401 "Unauthorized";
- getUpdates: offset confirms every update below it (a negative one keeps the last -offset), limit 1-100,
  timeout long-polls; a second getUpdates while one waits ends the waiting one with 409 "Conflict: terminated
  by other getUpdates request; make sure that only one bot instance is running" (the new one carries on,
  so two pollers keep knocking each other out, as two bot processes on one token do); with a webhook set,
  409 "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the
  webhook first";
- the 400s a bot meets: "chat not found", "message text is empty", "message is too long" (4096),
  "message to edit not found", "message is not modified: ...", "query is too old and response timeout
  expired or query ID is invalid" (unknown or answered twice), "BUTTON_DATA_INVALID" (callback_data over
  64 bytes), "can't parse inline keyboard button: ...", "can't parse entities: ..." (MarkdownV2 reserved
  characters unescaped); 403 "Forbidden: bot was blocked by the user"; 429 "Too Many Requests: retry after
  N" with parameters.retry_after (injected with `fail_next`);
- answerCallbackQuery's text is 0-200 characters (the reference); longer is 400 "MESSAGE_TOO_LONG"
  (eternnoir/pyTelegramBotAPI#500);
- a URL button takes http(s) and tg URLs whose host has a dot: `http://localhost:8080/` is 400 (rubenlagus/
  TelegramBots#302: BUTTON_URL_INVALID; laravel-notification-channels/telegram#112: the newer wording
  "inline keyboard button URL is invalid", which this fake answers).
An editMessageText without reply_markup takes the inline keyboard away, as the real server does (not in the
reference; TelegramBots/Telegram.Bot#402, LasterAlex/teloxide_tests#31).
Not served: files (multipart uploads are read for their fields only), groups and channels, inline mode,
payments, the webhook's delivery (setWebhook is recorded, nothing is pushed).
"""

from __future__ import annotations

import copy
import email
import email.policy
import html
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.served import FakeHandler, ServedFake

Json = dict[str, Any]

BOT_ID = 7_000_000_001
TOKEN = f"{BOT_ID}:test-token-not-a-real-bot-token-000"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
# Parameters that are strings in the Bot API: PTB sends them as they are, everything else JSON-encoded.
STRING_PARAMS = {
    "text",
    "parse_mode",
    "callback_query_id",
    "url",
    "secret_token",
    "ip_address",
    "inline_message_id",
    "language_code",
    "business_connection_id",
    "message_effect_id",
}
CONFLICT_POLLER = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
MARKDOWN_V2_RESERVED = "_*[]()~`>#+-=|{}.!"
COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,32})?")


class BotApiError(Exception):
    def __init__(self, code: int, description: str, parameters: Json | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def body(self) -> Json:
        out: Json = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def bad_request(detail: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {detail}")


@dataclass(frozen=True)
class TelegramUser:
    id: int
    first_name: str = "Tester"
    username: str | None = "tester"
    language_code: str = "en"

    def json(self) -> Json:
        out: Json = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            out["username"] = self.username
        out["language_code"] = self.language_code
        return out

    def private_chat(self) -> Json:
        out: Json = {"id": self.id, "first_name": self.first_name}
        if self.username:
            out["username"] = self.username
        out["type"] = "private"
        return out


@dataclass(frozen=True)
class ApiCall:
    """One request to the Bot API as the server understood it."""

    method: str  # as the Bot API spells it, e.g. "sendMessage"
    params: Json
    status: int


@dataclass
class _Fault:
    method: str | None
    error: BotApiError
    times: int


class FakeTelegram(ServedFake):
    """One bot, `TOKEN`, and the private chats of the users who wrote to it."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        bot_username: str = "vmgen_test_bot",
        host: str = "127.0.0.1",
        port: int = 0,
        public_host: str | None = None,
    ) -> None:
        self.token = token
        self.bot: Json = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "vmgen test",
            "username": bot_username,
        }
        self.calls: list[ApiCall] = []
        self.callback_answers: dict[str, Json] = {}  # callback_query id -> the answer's parameters
        self.commands: list[Json] = []
        self.webhook_url = ""
        self._lock = threading.Condition()
        self._users: dict[int, TelegramUser] = {}
        self._chats: dict[int, Json] = {}
        self._blocked: set[int] = set()
        self._messages: dict[int, dict[int, Json]] = {}  # chat id -> message id -> message (both directions)
        self._from_bot: dict[int, list[int]] = {}  # chat id -> ids of the bot's messages, in order
        self._next_message_id: dict[int, int] = {}
        self._queries: dict[str, Json] = {}  # open callback queries
        self._updates: list[Json] = []  # unconfirmed
        self._next_update_id = 800_000_000 + secrets.randbelow(100_000)
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._waiting = 0  # getUpdates calls in progress
        self._stopping = False
        self._faults: list[_Fault] = []
        super().__init__(_Handler, host=host, port=port, public_host=public_host)

    @property
    def base_url(self) -> str:
        """What python-telegram-bot takes as `base_url` (it appends the token), like https://api.telegram.org/bot."""
        return f"{self.root_url}/bot"

    def _release_waiters(self) -> None:
        with self._lock:
            self._stopping = True  # waiting getUpdates return at once
            self._lock.notify_all()

    # --- the user's side, for tests ----------------------------------------------------------

    def user_says(self, text: str, *, user: TelegramUser | int = 1001, reply_to: Json | int | None = None) -> Json:
        """The user writes `text` in their private chat with the bot (a /command gets its bot_command entity);
        `reply_to` (a message or its id) makes it a reply. Returns the message as the bot will receive it."""
        with self._lock:
            person = self._user(user)
            chat = self._chats.setdefault(person.id, person.private_chat())
            message: Json = {
                "message_id": self._new_message_id(person.id),
                "from": person.json(),
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            match = COMMAND.match(text)
            if match:
                message["entities"] = [{"offset": 0, "length": match.end(), "type": "bot_command"}]
            if reply_to is not None:
                replied = self._message(person.id, reply_to if isinstance(reply_to, int) else reply_to["message_id"])
                message["reply_to_message"] = {k: v for k, v in replied.items() if k != "reply_to_message"}
            self._messages.setdefault(person.id, {})[message["message_id"]] = message
            self._push({"message": message})
            return copy.deepcopy(message)

    def press(
        self, message: Json | int, data: str | None = None, *, user: TelegramUser | int = 1001, forged: bool = False
    ) -> str:
        """The user presses the inline button carrying `data` (the first callback button when None) under one
        of the bot's messages in their chat. Returns the callback_query id. A button that is not on the message
        cannot be pressed in a real client; `forged=True` sends the data anyway (a hostile client)."""
        with self._lock:
            person = self._user(user)
            shown = self._message(person.id, message if isinstance(message, int) else message["message_id"])
            buttons = [
                b["callback_data"]
                for row in shown.get("reply_markup", {}).get("inline_keyboard", [])
                for b in row
                if "callback_data" in b
            ]
            if data is None:
                if not buttons:
                    raise ValueError(f"message {shown['message_id']} has no callback button")
                data = buttons[0]
            if data not in buttons and not forged:
                raise ValueError(f"message {shown['message_id']} has no button with callback_data {data!r}: {buttons}")
            query: Json = {
                "id": str(secrets.randbits(62)),
                "from": person.json(),
                "message": copy.deepcopy(shown),
                "chat_instance": str(-secrets.randbits(62)),
                "data": data,
            }
            self._queries[query["id"]] = query
            self._push({"callback_query": query})
            return str(query["id"])

    def open_chat(self, user: TelegramUser | int = 1001) -> Json:
        """The user has started the bot before (no update is queued): the bot may write to them."""
        with self._lock:
            person = self._user(user)
            return copy.deepcopy(self._chats.setdefault(person.id, person.private_chat()))

    def block(self, user: TelegramUser | int) -> None:
        """The user blocks the bot: sending to their chat is 403 from now on."""
        with self._lock:
            self._blocked.add(self._user(user).id)

    def sent(self, chat_id: int) -> list[Json]:
        """The bot's messages in a chat, oldest first, as the chat shows them now (edits applied)."""
        with self._lock:
            return [copy.deepcopy(self._messages[chat_id][i]) for i in self._from_bot.get(chat_id, [])]

    def wait_for_sent(self, chat_id: int, count: int = 1, timeout: float = 10.0) -> list[Json]:
        """Block until the bot has sent at least `count` messages to the chat (woken by each send)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._from_bot.get(chat_id, [])) >= count, timeout):
                got = len(self._from_bot.get(chat_id, []))
                raise AssertionError(
                    f"telegram chat {chat_id}: bot sent {got} message(s) in {timeout}s, wanted {count}"
                )
        return self.sent(chat_id)

    def wait_for_call(self, method: str, timeout: float = 10.0) -> ApiCall:
        """Block until the bot has called `method` (e.g. "answerCallbackQuery"); the first such call."""
        with self._lock:
            if not self._lock.wait_for(lambda: any(c.method == method for c in self.calls), timeout):
                raise AssertionError(f"telegram: no {method} call in {timeout}s")
            return next(c for c in self.calls if c.method == method)

    def wait_for_poller(self, timeout: float = 10.0) -> None:
        """Block until a getUpdates is in progress (the bot is polling)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._waiting > 0, timeout):
                raise AssertionError(f"telegram: nobody polled getUpdates in {timeout}s")

    def pending_updates(self) -> list[Json]:
        """Updates the bot has not confirmed yet."""
        with self._lock:
            return copy.deepcopy(self._updates)

    def fail_next(
        self,
        method: str | None = None,
        *,
        status: int = 429,
        retry_after: int = 1,
        description: str | None = None,
        count: int = 1,
    ) -> None:
        """The next `count` calls of `method` (any when None) fail: by default 429 with retry_after."""
        if status == 429:
            error = BotApiError(
                429, description or f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        else:
            error = BotApiError(status, description or "Internal Server Error")
        with self._lock:
            self._faults.append(_Fault(method.lower() if method else None, error, count))

    # --- the API -----------------------------------------------------------------------------

    def handle(self, http_method: str, target: str, content_type: str, raw: bytes) -> tuple[int, Json]:
        url = urlsplit(target)
        match = re.fullmatch(r"/bot([^/]*)/([A-Za-z]+)", url.path)
        if not match or not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", match.group(1)):
            return 404, BotApiError(404, "Not Found").body()
        if match.group(1) != self.token:
            return 401, BotApiError(401, "Unauthorized").body()
        name = match.group(2).lower()
        method = next((m for m in _METHODS if m.lower() == name), None)
        params: Json = {}
        try:
            params = _params(url.query, content_type, raw)
            if method is None:
                raise BotApiError(404, "Not Found")
            self._fault(name)
            result, description = getattr(self, f"_{_snake(method)}")(params)
            status, body = 200, {"ok": True, "result": result}
            if description:
                body["description"] = description
        except BotApiError as exc:
            status, body = exc.code, exc.body()
        with self._lock:
            self.calls.append(ApiCall(method or match.group(2), params, status))
            self._lock.notify_all()
        return status, body

    def _fault(self, name: str) -> None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method in (None, name):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    raise fault.error

    def _get_me(self, params: Json) -> tuple[Any, str | None]:
        return {
            **self.bot,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }, None

    def _get_updates(self, params: Json) -> tuple[Any, str | None]:
        offset, limit = _int(params, "offset", 0), _int(params, "limit", 100)
        timeout = max(0.0, float(params.get("timeout") or 0))
        if not 1 <= limit <= 100:
            limit = 100
        with self._lock:
            if self.webhook_url:
                raise BotApiError(409, CONFLICT_WEBHOOK)
            if "allowed_updates" in params and params["allowed_updates"] is not None:
                self._allowed_updates = list(params["allowed_updates"])
            if offset < 0:
                self._updates = self._updates[offset:]
            elif offset:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._poll_generation += 1
            generation = self._poll_generation
            self._waiting += 1
            self._lock.notify_all()  # a poller still waiting is now the other one: it gets the 409

            def ready() -> list[Json]:
                return [u for u in self._updates if self._wanted(u)][:limit]

            try:
                self._lock.wait_for(lambda: generation != self._poll_generation or self._stopping or ready(), timeout)
                if generation != self._poll_generation:
                    raise BotApiError(409, CONFLICT_POLLER)
                return copy.deepcopy(ready()), None
            finally:
                self._waiting -= 1

    def _wanted(self, update: Json) -> bool:
        kind = next(k for k in update if k != "update_id")
        return not self._allowed_updates or kind in self._allowed_updates

    def _send_message(self, params: Json) -> tuple[Any, str | None]:
        with self._lock:
            chat = self._chat(params.get("chat_id"))
            text = self._text(params)
            markup = _inline_keyboard(params.get("reply_markup"))
            message: Json = {
                "message_id": self._new_message_id(chat["id"]),
                "from": dict(self.bot),
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            reply_to = (params.get("reply_parameters") or {}).get("message_id") or params.get("reply_to_message_id")
            if reply_to:
                replied = self._messages.get(chat["id"], {}).get(int(reply_to))
                if replied is None:
                    raise bad_request("message to be replied not found")
                message["reply_to_message"] = {k: v for k, v in replied.items() if k != "reply_to_message"}
            if markup:
                message["reply_markup"] = markup
            self._messages.setdefault(chat["id"], {})[message["message_id"]] = message
            self._from_bot.setdefault(chat["id"], []).append(message["message_id"])
            return copy.deepcopy(message), None

    def _edit_message_text(self, params: Json) -> tuple[Any, str | None]:
        with self._lock:
            message = self._own_message(params, "edit")
            text, markup = self._text(params), _inline_keyboard(params.get("reply_markup"))
            if text == message["text"] and markup == message.get("reply_markup"):
                raise BotApiError(400, NOT_MODIFIED)
            message["text"] = text
            return self._edited(message, markup), None

    def _edit_message_reply_markup(self, params: Json) -> tuple[Any, str | None]:
        with self._lock:
            message = self._own_message(params, "edit")
            markup = _inline_keyboard(params.get("reply_markup"))
            if markup == message.get("reply_markup"):
                raise BotApiError(400, NOT_MODIFIED)
            return self._edited(message, markup), None

    def _delete_message(self, params: Json) -> tuple[Any, str | None]:
        with self._lock:
            message = self._own_message(params, "delete")
            chat_id = message["chat"]["id"]
            del self._messages[chat_id][message["message_id"]]
            self._from_bot[chat_id].remove(message["message_id"])
            return True, None

    def _answer_callback_query(self, params: Json) -> tuple[Any, str | None]:
        query_id = str(params.get("callback_query_id") or "")
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        with self._lock:
            if self._queries.pop(query_id, None) is None:
                raise BotApiError(400, QUERY_TOO_OLD)
            self.callback_answers[query_id] = dict(params)
            return True, None

    def _set_webhook(self, params: Json) -> tuple[Any, str | None]:
        url = str(params.get("url") or "")
        if url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            was = self.webhook_url
            self.webhook_url = url
            if params.get("drop_pending_updates"):
                self._updates.clear()
            self._lock.notify_all()
        if not url:
            return True, "Webhook was deleted" if was else "Webhook is already deleted"
        return True, "Webhook is already set" if was == url else "Webhook was set"

    def _delete_webhook(self, params: Json) -> tuple[Any, str | None]:
        return self._set_webhook({"url": "", "drop_pending_updates": params.get("drop_pending_updates")})

    def _get_webhook_info(self, params: Json) -> tuple[Any, str | None]:
        with self._lock:
            return {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }, None

    def _set_my_commands(self, params: Json) -> tuple[Any, str | None]:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            isinstance(c, dict)
            and re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", "")))
            and 1 <= len(str(c.get("description", ""))) <= 256
            for c in commands
        ):
            raise bad_request("BOT_COMMAND_INVALID")
        self.commands = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True, None

    def _get_my_commands(self, params: Json) -> tuple[Any, str | None]:
        return copy.deepcopy(self.commands), None

    def _delete_my_commands(self, params: Json) -> tuple[Any, str | None]:
        self.commands = []
        return True, None

    def _close(self, params: Json) -> tuple[Any, str | None]:
        return True, None

    # --- helpers (called with the lock held) -------------------------------------------------

    def _user(self, user: TelegramUser | int) -> TelegramUser:
        if isinstance(user, TelegramUser):
            self._users[user.id] = user
            return user
        return self._users.setdefault(user, TelegramUser(user))

    def _push(self, update: Json) -> None:
        self._updates.append({"update_id": self._next_update_id, **update})
        self._next_update_id += 1
        self._lock.notify_all()

    def _new_message_id(self, chat_id: int) -> int:
        self._next_message_id[chat_id] = self._next_message_id.get(chat_id, 0) + 1
        return self._next_message_id[chat_id]

    def _message(self, chat_id: int, message_id: int) -> Json:
        try:
            return self._messages[chat_id][message_id]
        except KeyError:
            raise ValueError(f"no message {message_id} in chat {chat_id}") from None

    def _chat(self, chat_id: Any) -> Json:
        try:
            chat = self._chats.get(int(chat_id))
        except (TypeError, ValueError):
            chat = None
        if chat is None:
            raise bad_request("chat not found")
        if chat["id"] in self._blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _text(self, params: Json) -> str:
        text = str(params.get("text") or "")
        mode = str(params.get("parse_mode") or "")
        if mode.upper() == "HTML":
            text = _html_text(text)
        elif mode == "MarkdownV2":
            text = _markdown_v2_text(text)
        elif mode:
            if mode != "Markdown":
                raise bad_request(f"unsupported parse_mode {mode}")
            text = re.sub(r"[*_`\[\]]", "", text)
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        return text

    def _own_message(self, params: Json, verb: str) -> Json:
        chat = self._chat(params.get("chat_id"))
        message_id = _int(params, "message_id", 0)
        if message_id not in self._from_bot.get(chat["id"], []):
            raise bad_request(f"message to {verb} not found")
        return self._messages[chat["id"]][message_id]

    def _edited(self, message: Json, markup: Json | None) -> Json:
        message["edit_date"] = int(time.time())
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)  # an edit without reply_markup takes the keyboard away
        return copy.deepcopy(message)


_METHODS = (
    "getMe",
    "getUpdates",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "close",
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _int(params: Json, key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {key} specified") from None


def _params(query: str, content_type: str, raw: bytes) -> Json:
    """The request's parameters from the query string and a JSON, form or multipart body, as the Bot API
    accepts them all; form values are JSON-decoded unless the parameter is a string."""
    fields: dict[str, str] = {k: v[-1] for k, v in parse_qs(query).items()}
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" and raw:
        try:
            body = json.loads(raw)
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if not isinstance(body, dict):
            raise bad_request("can't parse JSON object")
        return {**{k: _decode(k, v) for k, v in fields.items()}, **body}
    if kind == "application/x-www-form-urlencoded":
        fields.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
    elif kind == "multipart/form-data":
        parsed = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw, policy=email.policy.HTTP
        )
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and part.get_filename() is None:
                fields[name] = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return {k: _decode(k, v) for k, v in fields.items()}


def _decode(key: str, value: str) -> Any:
    if key in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _inline_keyboard(markup: Any) -> Json | None:
    """The reply_markup as the sent message carries it: inline keyboards only, checked as Telegram does."""
    if markup is None or markup == "":
        return None
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            raise bad_request("can't parse reply keyboard markup JSON object") from None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return None  # reply keyboards and keyboard removal are not part of the sent message
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request("can't parse inline keyboard button: Can't find field \"text\"")
            if not any(k in button for k in BUTTON_ACTIONS):
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")
            if "url" in button and not _button_url(str(button["url"])):
                raise bad_request("inline keyboard button URL is invalid")
    return {"inline_keyboard": [[dict(b) for b in row] for row in rows if row]}


def _button_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "tg":
        return bool(parts.netloc or parts.path)
    return parts.scheme in ("http", "https") and "." in (parts.hostname or "")


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_text(text: str) -> str:
    tags = {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
    for tag in re.findall(r"</?([A-Za-z-]+)", text):
        if tag.lower() not in tags:
            raise bad_request(f'can\'t parse entities: Unsupported start tag "{tag}"')
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return html.unescape("".join(parser.parts))


def _markdown_v2_text(text: str) -> str:
    """The plain text of a MarkdownV2 message; a reserved character without its backslash is the 400 that
    Telegram answers (the most common mistake of a bot that formats messages)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char in "*_~|`[]()":
            i += 1  # formatting (a link's URL is kept as text here: good enough for reading messages)
            continue
        if char in MARKDOWN_V2_RESERVED and not (char == ">" and (i == 0 or text[i - 1] == "\n")):
            raise bad_request(
                f"can't parse entities: Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        out.append(char)
        i += 1
    return "".join(out)


class _Handler(FakeHandler):
    def _serve(self) -> None:
        raw = self.read_body()
        status, body = self.fake.handle(self.command, self.path, self.headers.get("Content-Type", ""), raw)
        self.reply(status, "application/json", json.dumps(body).encode())

    do_GET = do_POST = _serve
