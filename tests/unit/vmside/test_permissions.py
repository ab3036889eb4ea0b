"""Permission prompts: what root keeps of the agent's request (cut and cleaned), the desk's single-use
ids, the hook's output for Claude Code, and the page's routes for them."""

from __future__ import annotations

import json
import threading
import time
from email.message import Message
from typing import Any

import pytest

from vmgen.contract.control import ControlRequest, decode_request, encode_request
from vmgen.contract.permissions import (
    COMMAND_MAX,
    DETAIL_MAX,
    PermissionAsk,
    clamp_ask,
    hook_output,
    reclamp,
)
from vmgen.errors import DocumentError
from vmgen.vmside.permission_hook import read_ask
from vmgen.vmside.permissions import DeskFull, PermissionDesk
from vmgen.vmside.web.server import WebSettings, answer_post, collect_state

HOST = "app.dev.example.com"


def test_a_bash_call_shows_its_command_and_an_edit_its_diff() -> None:
    bash = clamp_ask("Bash", {"command": "rm -rf build", "description": "clean"}, "s1")
    assert (bash.tool, bash.command, bash.detail, bash.session, bash.cut) == (
        "Bash",
        "rm -rf build",
        "clean",
        "s1",
        False,
    )
    edit = clamp_ask("Edit", {"file_path": "/w/app.py", "old_string": "a = 1\n", "new_string": "a = 2\n"})
    assert edit.path == "/w/app.py"
    assert "-a = 1" in edit.detail and "+a = 2" in edit.detail


def test_what_the_agent_sends_is_cut_and_cleaned() -> None:
    ask = clamp_ask(
        "Bash\x1b[31m", {"command": "echo hi\x1b]0;evil\x07\n" + "x" * (COMMAND_MAX * 2), "file_path": "/a\nb"}
    )
    assert ask.tool == "a tool"  # not one plain word: vmgen's words instead
    assert "\x1b" not in ask.command and "\x07" not in ask.command and ask.command.startswith("echo hi]0;evil\n")
    assert len(ask.command) == COMMAND_MAX and ask.cut
    assert ask.path == "/ab"
    forged = PermissionAsk(tool="Bash", command="\x00" + "y" * 10_000, detail="z" * 10_000, path="p" * 5000)
    again = reclamp(forged)
    assert len(again.command) == COMMAND_MAX and len(again.detail) == DETAIL_MAX and len(again.path) == 512
    assert again.cut and "\x00" not in again.command


def test_the_hooks_output_is_claude_codes_decision() -> None:
    assert hook_output("allow") == {
        "hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}
    }
    denied = hook_output("deny")["hookSpecificOutput"]["decision"]
    assert denied["behavior"] == "deny" and denied["message"]
    with pytest.raises(ValueError):
        hook_output("ask")


def test_the_hook_reads_claude_codes_input_and_nothing_else() -> None:
    raw = json.dumps(
        {
            "hook_event_name": "PermissionRequest",
            "session_id": "abc",
            "tool_name": "Bash",
            "tool_input": {"command": "ls"},
            "permission_suggestions": [{"type": "addRules"}],
        }
    ).encode()
    assert read_ask(raw) == PermissionAsk(tool="Bash", session="abc", command="ls")
    assert read_ask(b"not json") is None
    assert read_ask(json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Bash"}).encode()) is None


def test_an_answer_needs_an_id_and_a_decision_and_a_permission_its_call() -> None:
    for bad in (
        ControlRequest("answer", request_id="short", decision="allow"),
        ControlRequest("answer", request_id="x" * 32, decision="maybe"),
        ControlRequest("permission"),
    ):
        with pytest.raises(DocumentError):
            decode_request(encode_request(bad).rstrip(b"\n"))


def waiting(desk: PermissionDesk, ask: PermissionAsk, gone=lambda: False) -> tuple[threading.Thread, list[str]]:
    said: list[str] = []
    thread = threading.Thread(target=lambda: said.append(desk.ask(ask, gone)), daemon=True)
    thread.start()
    for _ in range(200):
        if desk.pending():
            break
        time.sleep(0.01)
    return thread, said


def test_an_answer_reaches_the_waiting_request_once() -> None:
    desk = PermissionDesk(wait=30)
    thread, said = waiting(desk, PermissionAsk(tool="Bash", command="make"))
    (pending,) = desk.pending()
    assert pending.ask.command == "make" and len(pending.id) >= 32
    assert not desk.answer("A" * 32, "allow")  # a guessed id answers nothing
    assert desk.answer(pending.id, "deny")
    thread.join(5)
    assert said == ["deny"] and desk.pending() == ()
    assert not desk.answer(pending.id, "allow")  # replayed: the id was used up


def test_unanswered_or_withdrawn_the_request_leaves_the_desk_with_no_decision() -> None:
    desk = PermissionDesk(wait=0.3)
    thread, said = waiting(desk, PermissionAsk(tool="Bash"))
    thread.join(5)
    assert said == [""] and desk.pending() == ()
    desk = PermissionDesk(wait=30)
    gone = threading.Event()
    thread, said = waiting(desk, PermissionAsk(tool="Bash"), gone.is_set)
    (pending,) = desk.pending()
    gone.set()  # Claude Code ended the hook: the user answered in the terminal
    thread.join(5)
    assert said == [""] and not desk.answer(pending.id, "allow")  # a late answer is void


def test_a_full_desk_refuses_at_once() -> None:
    desk = PermissionDesk(wait=30, max_pending=1)
    thread, _ = waiting(desk, PermissionAsk(tool="Bash"))
    with pytest.raises(DeskFull):
        desk.ask(PermissionAsk(tool="Bash"))
    (pending,) = desk.pending()
    desk.answer(pending.id, "deny")
    thread.join(5)


def headers(**values: str) -> Message:
    chosen = {"Host": HOST, "Content-Type": "application/json", "X-Vmgen-Action": "1"}
    chosen |= {name.replace("_", "-"): value for name, value in values.items()}
    message = Message()
    for name, value in chosen.items():
        if value:
            message[name] = value
    return message


@pytest.fixture
def root(tmp_path):
    asked: list[Any] = []

    def ops(request):
        asked.append(request)
        if request.op == "permissions":
            item = {"id": "i" * 32, "ask": {"tool": "Bash", "command": "<img src=x onerror=alert(1)>"}, "since": 1.0}
            return {"pending": [item], "answerable": True}
        return {"answered": True, "decision": request.decision}

    from vmgen.contract.names import VmPaths

    return WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=ops), asked


def test_the_page_shows_pending_prompts_and_answers_from_itself_only(root) -> None:
    settings, asked = root
    state = collect_state(settings)
    assert state["permissions"]["answerable"] is True
    assert state["permissions"]["pending"][0]["ask"]["command"] == "<img src=x onerror=alert(1)>"  # text, shown as text
    body = json.dumps({"id": "i" * 32, "decision": "allow"}).encode()
    from_preview = answer_post(settings, "/api/permission", headers(Origin=f"https://p3000.{HOST}"), body)
    no_header = answer_post(settings, "/api/permission", headers(X_Vmgen_Action=""), body)
    as_form = answer_post(settings, "/api/permission", headers(Content_Type="text/plain"), body)
    assert (from_preview.status, no_header.status, as_form.status) == (403, 403, 415)
    assert [r.op for r in asked] == ["activity", "permissions"]  # none of them reached root
    bad = answer_post(
        settings, "/api/permission", headers(Origin=f"https://{HOST}"), b'{"id": "x", "decision": "allow"}'
    )
    assert bad.status == 400
    ok = answer_post(settings, "/api/permission", headers(Origin=f"https://{HOST}"), body)
    assert ok.status == 200 and asked[-1].op == "answer" and asked[-1].request_id == "i" * 32


def test_the_hook_sees_its_call_answered_in_the_terminal(tmp_path) -> None:
    from vmgen.vmside.permission_hook import AnsweredElsewhere

    transcript = tmp_path / "s.jsonl"
    call = {"command": "make", "description": "build"}

    def entry(*blocks: dict) -> str:
        return json.dumps({"message": {"content": list(blocks)}}) + "\n"

    transcript.write_text(entry({"type": "tool_use", "id": "t1", "name": "Bash", "input": call}))
    answered = AnsweredElsewhere(str(transcript), "Bash", call)
    assert not answered()
    with transcript.open("a") as f:  # another call's result, then a half-written line
        f.write(entry({"type": "tool_result", "tool_use_id": "t0", "content": "x"}) + '{"message": {"con')
    assert not answered()
    with transcript.open("a") as f:
        f.write('tent": []}}\n' + entry({"type": "tool_result", "tool_use_id": "t1", "content": "done"}))
    assert answered()
    assert not AnsweredElsewhere(str(tmp_path / "missing.jsonl"), "Bash", call)()


def test_an_earlier_identical_call_that_ran_already_is_not_this_one(tmp_path) -> None:
    """The same command asked again: its first run's result in the transcript answers nothing."""
    from vmgen.vmside.permission_hook import AnsweredElsewhere

    transcript = tmp_path / "s.jsonl"
    call = {"command": "make"}

    def entry(*blocks: dict) -> str:
        return json.dumps({"message": {"content": list(blocks)}}) + "\n"

    transcript.write_text(
        entry({"type": "tool_use", "id": "t1", "name": "Bash", "input": call})
        + entry({"type": "tool_result", "tool_use_id": "t1", "content": "done"})
        + entry({"type": "tool_use", "id": "t2", "name": "Bash", "input": call})
    )
    answered = AnsweredElsewhere(str(transcript), "Bash", call)
    assert not answered() and not answered()
    with transcript.open("a") as f:
        f.write(entry({"type": "tool_result", "tool_use_id": "t2", "content": "done"}))
    assert answered()


def test_an_answer_in_the_terminal_before_the_hooks_first_look_counts(tmp_path) -> None:
    """A busy machine: the hook starts, and the user presses Yes before it first reads."""
    from vmgen.vmside.permission_hook import AnsweredElsewhere

    transcript = tmp_path / "s.jsonl"
    call = {"command": "make"}
    use = {"type": "tool_use", "id": "t1", "name": "Bash", "input": call}
    transcript.write_text(json.dumps({"message": {"content": [use]}}) + "\n")
    answered = AnsweredElsewhere(str(transcript), "Bash", call)
    with transcript.open("a") as f:
        f.write(json.dumps({"message": {"content": [{"type": "tool_result", "tool_use_id": "t1"}]}}) + "\n")
    assert answered()


def test_a_signed_answer_from_the_phone_counts_once_while_its_request_is_asked() -> None:
    from vmgen.contract.permission_answer import PermissionAnswer
    from vmgen.vmside.permissions import CLOCK_SKEW_SECONDS, NOT_PENDING

    wall = [1_000_000.0]
    desk = PermissionDesk(wait=30, wall=lambda: wall[0])
    thread, said = waiting(desk, PermissionAsk(tool="Bash", command="make"))
    (pending,) = desk.pending()
    assert desk.answer_signed(PermissionAnswer("app", "A" * 32, "allow", wall[0])) == NOT_PENDING
    for stale in (wall[0] - CLOCK_SKEW_SECONDS - 1, wall[0] + 30 + CLOCK_SKEW_SECONDS + 1):
        assert "expired" in desk.answer_signed(PermissionAnswer("app", pending.id, "allow", stale))
    assert desk.pending() == (pending,)  # a stale answer leaves the request asked
    assert desk.answer_signed(PermissionAnswer("app", pending.id, "allow", wall[0] + 5)) == ""
    thread.join(5)
    assert said == ["allow"]
    assert desk.answer_signed(PermissionAnswer("app", pending.id, "allow", wall[0] + 6)) == NOT_PENDING
