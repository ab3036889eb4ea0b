"""A fake ntfy server (publishing, and the poll side of subscribing) over real HTTP, standard library only.

Shapes and rules come from ntfy's own server (github.com/binwiederhier/ntfy, read at 81a486a, 2025-07):
- server/types.go: the message JSON (id of 12 [a-zA-Z0-9], time, expires, event "message", topic and the
  omitempty fields title, message, priority, tags, click, actions, attachment) and the publish-as-JSON body.
- server/server.go: the routes (PUT/POST /<topic>, GET /<topic>/publish|send|trigger, PUT/POST / with a JSON
  body, GET /<topics>/json?poll=1), parsePublishParams (every parameter as a header under its X- and plain
  names, or as a query parameter: title/t, priority/prio/p, tags/tag/ta, click, actions/action, message/m),
  an empty body published as "triggered", a body over the 4096-byte message limit turned into an attachment
  (or refused with 40014 when attachments are off), parseSince, sendOldMessages.
- server/errors.go: the error JSON {"code", "http", "error", "link"} and its codes; maybeAuthenticate and
  authorizeTopic: a wrong token is 401 (40101) on any route, before the topic is looked at; an anonymous or
  unauthorised user on a protected topic is 403 (40301). server_middleware.go: 429 (42901) when the
  visitor's request bucket (burst 60, one more every 5 s) is empty.
- server/actions.go: the "simple" and JSON action formats, at most 3 actions, view/broadcast/http.
- util/util.go: ParsePriority (1-5, min/low/default/high/max/urgent).
- The phone's side of a button (`press`): the Android app's UserActionWorker (binwiederhier/ntfy-android,
  app/src/main/java/io/heckel/ntfy/msg/UserActionWorker.kt, read at 018d3a8) sends an `http` action as its
  method (POST when none), headers and body to its url and counts a 2xx answer as done (clearing the
  notification only then, with `clear`); a `view` action only opens its url.

    with FakeNtfy(protected={"alerts": {"tk_test"}}) as ntfy:
        requests.post(f"{ntfy.endpoint}/alerts", data="hi", headers={"Authorization": "Bearer tk_test"})
        ntfy.messages("alerts")  # what a phone subscribed to the topic received

"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.served import FakeHandler, ServedFake

Json = dict[str, Any]

MESSAGE_SIZE_LIMIT = 4096  # DefaultMessageSizeLimit
CACHE_DURATION = 12 * 3600  # DefaultCacheDuration: a message's `expires` is its time plus this
ATTACHMENT_EXPIRY = 3 * 3600  # DefaultAttachmentExpiryDuration
EMPTY_MESSAGE_BODY = "triggered"
REQUEST_BURST, REQUEST_REPLENISH = 60, 5.0  # DefaultVisitorRequestLimitBurst / ...Replenish (seconds)
ACTIONS_MAX = 3
TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
_ALNUM = string.ascii_letters + string.digits
_DOCS = "https://ntfy.sh/docs/publish/"


@dataclass(frozen=True)
class NtfyError(Exception):
    code: int
    http: int
    error: str
    link: str = ""

    def body(self) -> Json:
        out: Json = {"code": self.code, "http": self.http, "error": self.error}
        if self.link:
            out["link"] = self.link
        return out

    def wrap(self, detail: str) -> NtfyError:
        return NtfyError(self.code, self.http, f"{self.error}; {detail}", self.link)


# The errors of server/errors.go this fake can answer.
BAD_REQUEST = NtfyError(40000, 400, "invalid request")
PRIORITY_INVALID = NtfyError(40007, 400, "invalid priority parameter", _DOCS + "#message-priority")
SINCE_INVALID = NtfyError(
    40008, 400, "invalid since parameter", "https://ntfy.sh/docs/subscribe/api/#fetch-cached-messages"
)
TOPIC_INVALID = NtfyError(40009, 400, "invalid request: topic invalid")
ATTACHMENTS_DISALLOWED = NtfyError(
    40014, 400, "invalid request: attachments not allowed", "https://ntfy.sh/docs/config/#attachments"
)
ACTIONS_INVALID = NtfyError(40018, 400, "invalid request: actions invalid", _DOCS + "#action-buttons")
JSON_INVALID = NtfyError(40024, 400, "invalid request: request body must be valid JSON")
NOT_FOUND = NtfyError(40401, 404, "page not found")
UNAUTHORIZED = NtfyError(40101, 401, "unauthorized", _DOCS + "#authentication")
FORBIDDEN = NtfyError(40301, 403, "forbidden", _DOCS + "#authentication")
ATTACHMENT_TOO_LARGE = NtfyError(41301, 413, "attachment too large, or bandwidth limit reached", _DOCS + "#limitations")
JSON_TOO_LARGE = NtfyError(41303, 413, "JSON body too large")
TOO_MANY_REQUESTS = NtfyError(42901, 429, "limit reached: too many requests", _DOCS + "#limitations")
DAILY_QUOTA = NtfyError(42908, 429, "limit reached: daily message quota reached", _DOCS + "#limitations")

_PRIORITIES = {
    "1": 1,
    "min": 1,
    "2": 2,
    "low": 2,
    "3": 3,
    "default": 3,
    "4": 4,
    "high": 4,
    "5": 5,
    "max": 5,
    "urgent": 5,
}


@dataclass(frozen=True)
class Published:
    """One publish request as the server saw it, for tests that check what a notifier sent."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int


class FakeNtfy(ServedFake):
    """An ntfy server. `protected` maps a topic to the access tokens that may publish to and read it;
    every other topic is open to anyone, as on a server with `auth-default-access: read-write`."""

    def __init__(
        self,
        *,
        protected: dict[str, set[str]] | None = None,
        tokens: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        public_host: str | None = None,
        message_size_limit: int = MESSAGE_SIZE_LIMIT,
        attachment_size_limit: int | None = None,
        request_burst: int | None = None,
        daily_message_limit: int | None = None,
    ) -> None:
        self.protected = {topic: set(allowed) for topic, allowed in (protected or {}).items()}
        # Tokens the server knows: those of `protected`, and `tokens` (valid users with no grant).
        self.tokens = set(tokens).union(*self.protected.values()) if self.protected else set(tokens)
        self.message_size_limit = message_size_limit
        self.attachment_size_limit = attachment_size_limit  # None: attachments off (no attachment-cache-dir)
        self.request_burst = request_burst  # None: no request limit (a visitor-request-limit-exempt-hosts)
        self.daily_message_limit = daily_message_limit
        self.published: list[Published] = []
        self._lock = threading.Condition()
        self._messages: dict[str, list[Json]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # visitor (ip or token) -> (tokens, last refill)
        self._sent_today: dict[str, int] = {}
        self._faults: list[NtfyError] = []
        self._delay = 0.0
        self._unhang = threading.Event()
        super().__init__(_Handler, host=host, port=port, public_host=public_host)

    @property
    def endpoint(self) -> str:
        """The server's base URL, as a user writes it in `ntfy:<server>/<topic>`."""
        return self.root_url

    # --- the subscriber's side, and knobs, for tests -------------------------------------------

    def messages(self, topic: str) -> list[Json]:
        """Every message published to `topic`, oldest first, as a subscriber receives them."""
        with self._lock:
            return copy.deepcopy(self._messages.get(topic, []))

    def wait_for_messages(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[Json]:
        """Block until `topic` holds at least `count` messages (woken by each publish); return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._messages.get(topic, [])) >= count, timeout):
                got = len(self._messages.get(topic, []))
                raise AssertionError(f"ntfy topic {topic!r}: {got} message(s) after {timeout}s, wanted {count}")
            return copy.deepcopy(self._messages[topic])

    def fail_next(self, count: int = 1, error: NtfyError = TOO_MANY_REQUESTS) -> None:
        """The next `count` requests get `error` (e.g. TOO_MANY_REQUESTS, ATTACHMENT_TOO_LARGE) unprocessed."""
        with self._lock:
            self._faults.extend([error] * count)

    def hang(self, seconds: float) -> None:
        """Answer every request only after `seconds` (0: at once again): a server that hangs, for notifiers'
        timeouts. A request still hanging when the fake stops is answered then."""
        self._delay = seconds

    def _release_waiters(self) -> None:
        self._unhang.set()

    # --- the API -----------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, client: str
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; `headers` has lower-cased names."""
        if self._delay:
            self._unhang.wait(self._delay)
        status, content_type, body = self._answer(method, target, headers, raw, client)
        if method in ("PUT", "POST") or target.split("?")[0].endswith(("/publish", "/send", "/trigger")):
            with self._lock:
                self.published.append(Published(method, target, dict(headers), raw, status))
        return status, content_type, body

    def _answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, client: str
    ) -> tuple[int, str, bytes]:
        url = urlsplit(target)
        query = {k.lower(): v[0] for k, v in parse_qs(url.query).items()}
        try:
            with self._lock:
                if self._faults:
                    raise self._faults.pop(0)
            token = self._authenticate(headers, query)
            path = url.path
            if method in ("PUT", "POST") and path == "/":
                path, headers, raw = self._from_json(raw, headers)
            publish = (method in ("PUT", "POST") and TOPIC.fullmatch(path[1:]) is not None) or (
                method == "GET" and re.fullmatch(r"/[-_A-Za-z0-9]{1,64}/(publish|send|trigger)", path) is not None
            )
            if publish:
                topic = path[1:].split("/")[0]
                self._limit(token or client)
                self._authorize([topic], token)
                message = self._publish(topic, headers, query, raw)
                return 200, "application/json", (json.dumps(message) + "\n").encode()
            poll = re.fullmatch(r"/([-_A-Za-z0-9]{1,64}(?:,[-_A-Za-z0-9]{1,64})*)/json", path)
            if method == "GET" and poll:
                topics = poll.group(1).split(",")
                self._limit(token or client)
                self._authorize(topics, token)
                return 200, "application/x-ndjson; charset=utf-8", self._poll(topics, headers, query)
            if method == "GET" and path == "/v1/health":
                return 200, "application/json", b'{"healthy":true}\n'
            raise NOT_FOUND
        except NtfyError as exc:
            return exc.http, "application/json", (json.dumps(exc.body()) + "\n").encode()

    def _authenticate(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        """The access token the request authenticates with; None for anonymous (no or another scheme)."""
        value = headers.get("authorization", "").strip()
        if query.get("auth") or query.get("authorization"):
            try:
                padded = query.get("auth") or query["authorization"]
                value = base64.urlsafe_b64decode(padded + "=" * (-len(padded) % 4)).decode().strip()
            except ValueError:
                raise UNAUTHORIZED from None
        scheme, _, credential = value.partition(" ")
        if scheme.lower() not in ("bearer", "basic") or not credential:
            return None
        credential = credential.strip()
        if scheme.lower() == "basic":  # ntfy reads Basic with an empty user name as a token in the password
            try:
                user, _, password = base64.b64decode(credential).decode().partition(":")
            except ValueError:
                raise UNAUTHORIZED from None
            if user:
                raise UNAUTHORIZED  # this fake has access tokens only, no user:password accounts
            credential = password
        if credential not in self.tokens:
            raise UNAUTHORIZED
        return credential

    def _authorize(self, topics: list[str], token: str | None) -> None:
        for topic in topics:
            allowed = self.protected.get(topic)
            if allowed is not None and token not in allowed:
                raise FORBIDDEN

    def _limit(self, visitor: str) -> None:
        if self.request_burst is None:
            return
        with self._lock:
            now = time.monotonic()
            left, last = self._buckets.get(visitor, (float(self.request_burst), now))
            left = min(float(self.request_burst), left + (now - last) / REQUEST_REPLENISH)
            if left < 1:
                self._buckets[visitor] = (left, now)
                raise TOO_MANY_REQUESTS
            self._buckets[visitor] = (left - 1, now)

    def _from_json(self, raw: bytes, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        """Publishing as JSON to the root URL: the body becomes the headers of a plain publish."""
        if len(raw) > self.message_size_limit * 2:
            raise JSON_TOO_LARGE
        try:
            body = json.loads(raw)
        except ValueError:
            raise JSON_INVALID from None
        if not isinstance(body, dict):
            raise JSON_INVALID
        topic = str(body.get("topic") or "")
        if not TOPIC.fullmatch(topic):
            raise TOPIC_INVALID
        converted = {k: v for k, v in headers.items() if k in ("authorization", "content-length")}
        for field, header in (
            ("title", "x-title"),
            ("click", "x-click"),
            ("icon", "x-icon"),
            ("attach", "x-attach"),
            ("filename", "x-filename"),
        ):
            if body.get(field):
                converted[header] = str(body[field])
        if body.get("priority"):
            converted["x-priority"] = str(body["priority"])
        if body.get("tags"):
            converted["x-tags"] = ",".join(str(t) for t in body["tags"])
        if body.get("markdown"):
            converted["x-markdown"] = "yes"
        if body.get("actions"):
            converted["x-actions"] = json.dumps(body["actions"])
        return f"/{topic}", converted, str(body.get("message") or EMPTY_MESSAGE_BODY).encode()

    def _publish(self, topic: str, headers: dict[str, str], query: dict[str, str], raw: bytes) -> Json:
        def param(*names: str) -> str:
            for name in names:
                value = headers.get(name, "").strip()
                if name == "priority" and re.fullmatch(r"u=\d(, *i)?", value):
                    value = ""  # RFC 9218's Priority header (added by proxies) is not ntfy's
                if value:
                    return value
            return next((query[n].strip() for n in names if query.get(n, "").strip()), "")

        now = int(time.time())
        message: Json = {
            "id": "".join(secrets.choice(_ALNUM) for _ in range(12)),
            "time": now,
            "expires": now + CACHE_DURATION,
            "event": "message",
            "topic": topic,
        }
        title, click = param("x-title", "title", "t"), param("x-click", "click")
        text = param("x-message", "message", "m").replace("\\n", "\n")
        priority_text = param("x-priority", "priority", "prio", "p").lower()
        if priority_text and priority_text not in _PRIORITIES:
            raise PRIORITY_INVALID
        priority = _PRIORITIES.get(priority_text, 0)
        tags = [t.strip() for t in param("x-tags", "tags", "tag", "ta").split(",") if t.strip()]
        actions_text = param("x-actions", "actions", "action")
        actions = parse_actions(actions_text) if actions_text else []
        attachment: Json | None = None
        filename = param("x-filename", "filename", "file", "f")
        try:
            body = None if len(raw) > self.message_size_limit else raw.decode()
        except UnicodeDecodeError:
            body = None  # not UTF-8: ntfy keeps such a body as an attachment
        if body is None or filename:
            attachment = self._attach(message["id"], raw, filename, now)
            text = text or f"You received a file: {attachment['name']}"
        else:
            text = body.strip() or text
        with self._lock:
            if self.daily_message_limit is not None:
                if self._sent_today.get(topic, 0) >= self.daily_message_limit:
                    raise DAILY_QUOTA
                self._sent_today[topic] = self._sent_today.get(topic, 0) + 1
            for key, value in (
                ("title", title),
                ("message", text or EMPTY_MESSAGE_BODY),
                ("priority", priority),
                ("tags", tags),
                ("click", click),
                ("actions", actions),
                ("attachment", attachment),
            ):
                if value:
                    message[key] = value
            if (
                param("x-markdown", "markdown", "md").lower() in ("1", "yes", "true")
                or param("content-type").lower() == "text/markdown"
            ):
                message["content_type"] = "text/markdown"
            self._messages.setdefault(topic, []).append(message)
            self._lock.notify_all()
            return copy.deepcopy(message)

    def _attach(self, message_id: str, raw: bytes, filename: str, now: int) -> Json:
        if self.attachment_size_limit is None:
            raise ATTACHMENTS_DISALLOWED
        if len(raw) > self.attachment_size_limit:
            raise ATTACHMENT_TOO_LARGE
        return {
            "name": filename or "attachment.txt",
            "type": "text/plain; charset=utf-8",
            "size": len(raw),
            "expires": now + ATTACHMENT_EXPIRY,
            "url": f"{self.endpoint}/file/{message_id}.txt",
        }

    def _poll(self, topics: list[str], headers: dict[str, str], query: dict[str, str]) -> bytes:
        """GET /<topics>/json?poll=1: the cached messages since `since` (all by default), oldest first."""
        if query.get("poll", "").lower() not in ("1", "yes", "true") and headers.get("x-poll", "") not in (
            "1",
            "yes",
            "true",
        ):
            raise BAD_REQUEST.wrap("this fake serves /json with poll=1 only; use wait_for_messages()")
        since = headers.get("x-since") or headers.get("since") or query.get("since") or query.get("si") or "all"
        with self._lock:
            found = sorted((m for t in topics for m in self._messages.get(t, [])), key=lambda m: m["time"])
        if since == "none":
            found = []
        elif since == "latest":
            found = found[-1:]
        elif re.fullmatch(r"[a-zA-Z0-9]{12}", since):
            ids = [m["id"] for m in found]
            found = found[ids.index(since) + 1 :] if since in ids else found
        elif since.isdigit():
            found = [m for m in found if m["time"] >= int(since)]
        elif since != "all":
            seconds = _duration(since)
            found = [m for m in found if m["time"] >= time.time() - seconds]
        return b"".join((json.dumps(m) + "\n").encode() for m in found)


def press(action: Json, url: str = "", timeout: float = 10.0) -> tuple[int, bytes]:
    """Press an `http` button of a received message as the phone does: its method (POST when none),
    headers and body to its url (`url` instead: a test's own server standing in for that host).
    The status and the body of the answer; a `view` button sends nothing and is refused here."""
    import urllib.error
    import urllib.request

    if action.get("action") != "http":
        raise ValueError(f"a {action.get('action')!r} button sends no request")
    body = str(action.get("body", "")).encode()
    request = urllib.request.Request(
        url or str(action["url"]),
        data=body or None,
        headers=dict(action.get("headers") or {}),
        method=str(action.get("method") or "POST"),
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def _duration(text: str) -> float:
    """Go's time.ParseDuration for the units a `since` uses (e.g. 10m, 1h30m, 90s)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SINCE_INVALID
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def parse_actions(text: str) -> list[Json]:
    """ntfy's action buttons from their JSON array or the "simple" format
    (`view, Open, https://..., clear=true; http, Allow, https://..., method=POST, body=...`)."""
    text = text.strip()
    try:
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"JSON error: {exc}") from None
            if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
                raise ValueError("JSON error: not an array of objects")
            actions = [_action(a) for a in raw]
        else:
            actions = [_action(a) for a in _parse_simple(text)]
        if len(actions) > ACTIONS_MAX:
            raise ValueError(f"only {ACTIONS_MAX} actions allowed")
    except ValueError as exc:
        raise ACTIONS_INVALID.wrap(str(exc)) from None
    return actions


def _action(fields: Json) -> Json:
    kind = str(fields.get("action", "")).lower()
    action: Json = {
        "id": "".join(secrets.choice(_ALNUM) for _ in range(10)),
        "action": kind,
        "label": str(fields.get("label", "")),
        "clear": bool(fields.get("clear", False)),
    }
    for key in ("url", "body", "intent"):
        if fields.get(key):
            action[key] = str(fields[key])
    if fields.get("method"):
        action["method"] = str(fields["method"]).upper()
    for key in ("headers", "extras"):
        if fields.get(key):
            action[key] = {str(k): str(v) for k, v in dict(fields[key]).items()}
    if kind not in ("view", "broadcast", "http"):
        raise ValueError(f"parameter 'action' cannot be '{kind}', valid values are 'view', 'broadcast' and 'http'")
    if not action["label"]:
        raise ValueError("parameter 'label' is required")
    if kind in ("view", "http") and not action.get("url"):
        raise ValueError(f"parameter 'url' is required for action '{kind}'")
    if kind == "http" and action.get("method") in ("GET", "HEAD") and action.get("body"):
        raise ValueError(f"parameter 'body' cannot be set if method is {action['method']}")
    return action


def _parse_simple(text: str) -> list[Json]:
    """Sections split by ',' and actions by ';'; a value may be quoted with " or ' (\\-escaped quote inside);
    the first three unnamed sections are action, label and (for view/http) url."""
    actions: list[Json] = []
    pos = 0
    while pos < len(text):
        fields: Json = {}
        section = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            key_match = re.match(r"([-.\w]+)\s*=\s*", text[pos:])
            key = ""
            if key_match:
                key, pos = key_match.group(1), pos + key_match.end()
            if pos < len(text) and text[pos] in "\"'":
                quote, start = text[pos], pos + 1
                end = start
                while end < len(text) and not (text[end] == quote and text[end - 1] != "\\"):
                    end += 1
                if end >= len(text):
                    raise ValueError(f"unexpected end of input, quote started at position {start}")
                value = text[start:end].replace("\\" + quote, quote)
                pos = end + 1
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
                if pos < len(text) and text[pos] not in ",;":
                    raise ValueError(f"unexpected character '{text[pos]}' at position {pos}")
            else:
                end = pos
                while end < len(text) and text[end] not in ",;":
                    end += 1
                value, pos = text[pos:end].strip(), end
            last = pos >= len(text) or text[pos] == ";"
            pos += 1
            if not key:
                key = {0: "action", 1: "label"}.get(section, "")
                if section == 2 and str(fields.get("action", "")).lower() in ("view", "http"):
                    key = "url"
            if not key:
                raise ValueError(f"term '{value}' unknown")
            group, _, name = key.partition(".")
            if group in ("headers", "extras") and name:
                fields.setdefault(group, {})[name] = value
            elif key.lower() == "clear":
                if value.lower() not in ("true", "yes", "1", "false", "no", "0"):
                    raise ValueError(
                        f"parameter 'clear' cannot be '{value}', only boolean values are allowed "
                        "(true/yes/1/false/no/0)"
                    )
                fields["clear"] = value.lower() in ("true", "yes", "1")
            elif key.lower() in ("action", "label", "url", "method", "body", "intent"):
                fields[key.lower()] = value
            else:
                raise ValueError(f"key '{key}' unknown")
            section += 1
            if last:
                break
        actions.append(fields)
    return actions


def _header_text(value: str) -> str:
    """A header as Go's net/http hands it to ntfy: raw UTF-8 bytes kept (http.server read them as latin-1),
    and RFC 2047 encoded words (=?UTF-8?B?...?=) decoded, as ntfy's maybeDecodeHeader does."""
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        value = value.encode("latin-1").decode()
    if "=?" in value:
        with contextlib.suppress(ValueError, LookupError):
            value = str(make_header(decode_header(value)))
    return value


class _Handler(FakeHandler):
    def _serve(self) -> None:
        raw = self.read_body()
        headers = {k.lower(): _header_text(v) for k, v in self.headers.items()}
        status, content_type, body = self.fake.handle(self.command, self.path, headers, raw, self.client_address[0])
        self.reply(status, content_type, body, {"Access-Control-Allow-Origin": "*"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
