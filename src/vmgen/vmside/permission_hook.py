"""Claude Code's `PermissionRequest` hook: the prompt goes to root, the answer from the page comes back.

Installed in Claude Code's managed settings (root's file, with `allowManagedHooksOnly`) as
`<vmgen's venv>/bin/python -I -m vmgen.vmside.permission_hook`: root's program in an isolated
interpreter, so nothing of the agent's (its settings, PYTHONPATH, user site) replaces or disables it.
It runs as the agent: it may only ask. It sends the tool call, cut to size, to root's control
socket and waits for the page's answer; then prints Claude Code's decision. Unanswered in time,
refused, or any failure: it prints nothing, and Claude Code's own prompt in the terminal decides
(it never allows on its own).

Claude Code shows its terminal prompt while the hook runs and does not end the hook when the
prompt is answered there. So the hook follows the session's transcript: once the tool call has its
result (it ran, or was refused), the hook hangs up, and root takes the request off the page.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from ..contract.control import MAX_REPLY_LINE, ControlRequest, decode_reply, encode_request
from ..contract.names import VM, VmPaths
from ..contract.permissions import WAIT_SECONDS, PermissionAsk, clamp_ask, hook_output
from ..errors import DocumentError

INPUT_MAX = 4 << 20  # Claude Code's hook input: the tool's input, a file's whole content at most
TRANSCRIPT_TAIL = 256 << 10  # where the tool call is looked for when the hook starts
READ_MAX = 1 << 20  # transcript read per look
LOOK_SECONDS = 0.5  # how often the transcript is looked at while the page has not answered


def read_request(raw: bytes) -> dict[str, object] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("hook_event_name", "PermissionRequest") != "PermissionRequest":
        return None
    return data


def read_ask(raw: bytes) -> PermissionAsk | None:
    data = read_request(raw)
    if data is None:
        return None
    return clamp_ask(data.get("tool_name"), data.get("tool_input"), data.get("session_id"))


class AnsweredElsewhere:
    """Whether the tool call got its result in the session's transcript (the terminal's prompt
    was answered): a `tool_result` for a `tool_use` of this name and input, written after the
    hook began (an earlier identical call's result, written before, is not this one's)."""

    def __init__(self, transcript: object, tool_name: object, tool_input: object) -> None:
        self.path = transcript if isinstance(transcript, str) else ""
        self.name, self.input = tool_name, tool_input
        self.calls: set[str] = set()  # the matching calls seen
        self.buffer = b""
        self.offset = self.began = 0
        try:
            self.began = os.stat(self.path).st_size if self.path else 0
            self.offset = max(0, self.began - TRANSCRIPT_TAIL)
        except OSError:
            self.path = ""

    def __call__(self) -> bool:
        if not self.path:
            return False
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(READ_MAX)
        except OSError:
            return False
        at = self.offset - len(self.buffer)  # where the first line starts in the file
        self.offset += len(chunk)
        lines = (self.buffer + chunk).split(b"\n")
        self.buffer = lines.pop()[-READ_MAX:]
        answered = False
        for line in lines:
            for kind, tool_id in self._blocks(line):
                if kind == "call":
                    self.calls.add(tool_id)
                elif tool_id in self.calls and at >= self.began:
                    answered = True
            at += len(line) + 1
        return answered

    def _blocks(self, line: bytes) -> list[tuple[str, str]]:
        try:
            content = json.loads(line)["message"]["content"]
        except (ValueError, KeyError, TypeError):
            return []
        found = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and block.get("name") == self.name and block.get("input") == self.input:
                found.append(("call", str(block.get("id") or "")))
            elif block.get("type") == "tool_result" and block.get("tool_use_id"):
                found.append(("result", str(block["tool_use_id"])))
        return found


def decision_for(
    ask: PermissionAsk,
    paths: VmPaths = VM,
    wait: float = WAIT_SECONDS + 10,
    answered_elsewhere: AnsweredElsewhere | None = None,
) -> str:
    """The page's answer ("allow" or "deny"), or "": no answer in time, answered in the terminal,
    root busy or away."""
    deadline = time.monotonic() + wait
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(paths.control_socket))
            conn.sendall(encode_request(ControlRequest("permission", ask=ask)))
            buffer = b""
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0 or len(buffer) > MAX_REPLY_LINE:
                    return ""
                conn.settimeout(min(LOOK_SECONDS, left))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    if answered_elsewhere is not None and answered_elsewhere():
                        return ""  # hanging up takes the request off the page
                    continue
                if not chunk:
                    return ""
                buffer += chunk
        reply = decode_reply(buffer.split(b"\n", 1)[0])
    except (DocumentError, OSError):
        return ""
    decision = reply.result.get("decision") if reply.result is not None else ""
    return decision if decision in ("allow", "deny") else ""


def main(paths: VmPaths = VM) -> None:
    data = read_request(sys.stdin.buffer.read(INPUT_MAX))
    if data is None:
        return
    ask = clamp_ask(data.get("tool_name"), data.get("tool_input"), data.get("session_id"))
    elsewhere = AnsweredElsewhere(data.get("transcript_path"), data.get("tool_name"), data.get("tool_input"))
    decision = decision_for(ask, paths, answered_elsewhere=elsewhere)
    if decision:
        sys.stdout.write(json.dumps(hook_output(decision)) + "\n")


if __name__ == "__main__":
    main()
