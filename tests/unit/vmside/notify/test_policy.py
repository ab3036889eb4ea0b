"""The notifier's policy as pure functions: which events make which messages, once per state
change, in vmgen's own words whatever the agent wrote; the `notify` setting's targets."""

from __future__ import annotations

import pytest

from vmgen.contract.documents import ActionRecord, HookEvent, parse_hook_event
from vmgen.contract.notify import NtfyTarget, WebhookTarget, parse_target, split_targets
from vmgen.errors import DocumentError
from vmgen.vmside.notify.channels import SendError
from vmgen.vmside.notify.channels.ntfy import ntfy_body
from vmgen.vmside.notify.channels.webhook import webhook_body
from vmgen.vmside.notify.policy import (
    Dedupe,
    action_notice,
    message_of,
    notices_of_hooks,
    warning_notice,
)
from vmgen.vmside.notify.sender import ATTEMPT_TIMEOUT, RETRY_BACKOFF, deliver


def hook(event: str, session: str = "s1", kind: str = "", at: float = 1.0) -> HookEvent:
    return HookEvent(at=at, event=event, session=session, kind=kind)


@pytest.mark.parametrize(
    ("event", "kind", "said"),
    [
        ("Stop", "", "the agent finished its turn"),
        ("StopFailure", "rate_limit", "the agent's turn ended on rate limited by the model API"),
        ("StopFailure", "", "the agent's turn ended on an error"),
        ("Notification", "permission_prompt", "the agent asks permission to use a tool"),
        ("Notification", "idle_prompt", "the agent waits for your input"),
        ("Notification", "elicitation_dialog", "the agent asks you a question"),
    ],
)
def test_each_hook_event_makes_its_message(event: str, kind: str, said: str) -> None:
    (notice,) = notices_of_hooks(Dedupe(), [hook(event, kind=kind)])
    assert notice.text == said


@pytest.mark.parametrize(
    ("event", "kind"),
    [("UserPromptSubmit", ""), ("PreToolUse", ""), ("PostToolUse", ""), ("Notification", "auth_success")],
)
def test_activity_and_other_notifications_say_nothing(event: str, kind: str) -> None:
    assert notices_of_hooks(Dedupe(), [hook(event, kind=kind)]) == []


def test_one_message_per_state_change_not_per_hook() -> None:
    dedupe = Dedupe()
    first = notices_of_hooks(dedupe, [hook("Stop"), hook("Stop"), hook("Notification", kind="idle_prompt")])
    assert [n.kind for n in first] == ["finished"]  # the idle prompt after a finished turn is the same state
    # Later batches remember it; a new turn re-arms it; another session has its own state.
    assert notices_of_hooks(dedupe, [hook("Stop")]) == []
    again = notices_of_hooks(dedupe, [hook("UserPromptSubmit"), hook("PreToolUse"), hook("Stop"), hook("Stop", "s2")])
    assert [(n.kind, n.scope) for n in again] == [("finished", "session:s1"), ("finished", "session:s2")]
    asked = notices_of_hooks(dedupe, [hook("Notification", kind="permission_prompt")] * 3)
    assert [n.kind for n in asked] == ["permission"]


def test_the_dedupe_memory_is_bounded() -> None:
    dedupe = Dedupe(limit=8)
    notices_of_hooks(dedupe, [hook("Stop", f"s{i}") for i in range(100)])
    assert len(dedupe.seen) == 8


def test_a_forged_hook_line_reaches_the_message_only_as_vmgens_fixed_words() -> None:
    """The agent can write any line to its events file: a long, markdown, URL-laden message and
    odd kinds give at most vmgen's own sentence."""
    evil = "**URGENT** [approve](https://evil.example/phish) " + "x" * 5000
    lines = [
        {"at": 1, "event": "Notification", "session": "s1", "kind": "permission_prompt", "message": evil},
        {"at": 2, "event": "Notification", "session": "s2", "kind": evil},
        {"at": 3, "event": "StopFailure", "session": "s3", "kind": "[x](https://evil.example)", "error": evil},
        {"at": 4, "event": evil, "session": "s4"},
        {"at": 5, "event": "Stop", "session": evil},
    ]
    events = [e for line in lines if (e := parse_hook_event(line, now=10.0)) is not None]
    messages = [message_of(n, "app", "https://app.example.com/") for n in notices_of_hooks(Dedupe(), events)]
    assert [m.text for m in messages] == [
        "the agent asks permission to use a tool",
        "the agent's turn ended on an error",
        "the agent finished its turn",
    ]
    for message in messages:
        sent = str(ntfy_body("topic", message)) + str(webhook_body(message))
        assert "evil" not in sent and "URGENT" not in sent and "x" * 50 not in sent


def test_the_action_never_quotes_an_error_and_says_how_the_data_was_kept() -> None:
    def record(**fields: str) -> ActionRecord:
        return ActionRecord(
            reason="idle",
            action="backup-then-delete",
            step="done",
            detail="failed: https://key:SECRET@store.example/ 403",
            started_at=0,
            deadline_at=0,
            updated_at=0,
            **fields,
        )

    done = action_notice("done", record(backup_id="20261207T060000Z-full"), "app")
    assert done is not None and done.text.startswith("backup 20261207T060000Z-full done; workspace deleted")
    kept = action_notice("kept", record(snapshot="snap-42"), "app")
    assert kept is not None and kept.kind == "backup failed" and "snapshot snap-42 keeps its disk" in kept.text
    odd = action_notice("deleting", record(backup_id="https://key:SECRET@x/"), "app")
    assert odd is not None and odd.text == "workspace deleted"
    for notice in (done, kept, odd):
        assert "SECRET" not in str(notice)


def test_a_warning_is_said_once_per_deadline() -> None:
    dedupe = Dedupe()
    text = "vmgen: workspace app is idle and will be deleted in 10 min; ..."
    assert dedupe.admit(warning_notice(text, 1000.0))
    assert not dedupe.admit(warning_notice(text, 1000.0))
    assert dedupe.admit(warning_notice(text, 2000.0))


def test_ntfy_gets_the_link_as_click_and_an_open_button_only_with_a_domain() -> None:
    notice = notices_of_hooks(Dedupe(), [hook("Stop")])[0]
    body = ntfy_body("t", message_of(notice, "app", "https://app.example.com/"))
    assert body["title"] == "app: agent finished" and body["click"] == "https://app.example.com/"
    assert body["actions"] == [{"action": "view", "label": "Open", "url": "https://app.example.com/", "clear": True}]
    assert "actions" not in ntfy_body("t", message_of(notice, "app", ""))


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("ntfy:ntfy.sh/my-topic_1", NtfyTarget("https://ntfy.sh", "my-topic_1")),
        ("ntfy:http://10.0.0.5:8080/alerts", NtfyTarget("http://10.0.0.5:8080", "alerts")),
        ("ntfy:https://push.example.com/ntfy/alerts", NtfyTarget("https://push.example.com/ntfy", "alerts")),
        ("https://hooks.example.com/x?k=1", WebhookTarget("https://hooks.example.com/x?k=1")),
    ],
)
def test_targets_parse(text: str, target: object) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize(
    "text", ["ntfy:", "ntfy:ntfy.sh/", "ntfy:ntfy.sh/a b", "ntfy:ntfy.sh/top!c", "ftp://x/y", "telegrams", "ntfy.sh/t"]
)
def test_a_bad_target_names_the_setting_and_what_it_takes(text: str) -> None:
    with pytest.raises(
        DocumentError, match=r"^notify: .* is not `ntfy:<server>/<topic>`, `telegram` or an http\(s\) webhook URL"
    ):
        parse_target(text)


def test_the_setting_splits_on_commas_and_spaces() -> None:
    assert split_targets(" ntfy:ntfy.sh/a, https://h.example/x  ntfy:ntfy.sh/b ") == (
        "ntfy:ntfy.sh/a",
        "https://h.example/x",
        "ntfy:ntfy.sh/b",
    )


class Failing:
    """A channel whose every try fails and uses up its whole timeout."""

    name = "failing"

    def __init__(self, retry: bool = True) -> None:
        self.retry, self.tries, self.now = retry, 0, 0.0

    def send(self, message: object, timeout: float) -> None:
        self.tries += 1
        self.now += timeout
        raise SendError("HTTP 503" if self.retry else "HTTP 401", retry=self.retry)


def test_tries_are_bounded_in_number_and_by_the_deadline() -> None:
    message = message_of(notices_of_hooks(Dedupe(), [hook("Stop")])[0], "app", "")
    down = Failing()
    assert not deliver(down, message, until=1000.0, clock=lambda: down.now, sleep=lambda s: None)
    assert down.tries == len(RETRY_BACKOFF) + 1
    refused = Failing(retry=False)
    assert not deliver(refused, message, until=1000.0, clock=lambda: refused.now, sleep=lambda s: None)
    assert refused.tries == 1
    slow = Failing()
    assert not deliver(slow, message, until=ATTEMPT_TIMEOUT * 1.5, clock=lambda: slow.now, sleep=lambda s: None)
    assert slow.tries == 2  # the second try gets what is left, then the deadline has passed
