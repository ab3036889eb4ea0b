"""Claude Code's `PermissionRequest` hook: the prompt goes to root, the answer from the page comes back.

Installed in Claude Code's managed settings (root's file, with `allowManagedHooksOnly`) as
`<vmgen's venv>/bin/python -I -m vmgen.vmside.permission_hook`: root's program in an isolated
interpreter, so nothing of the agent's (its settings, PYTHONPATH, user site) replaces or disables it.
It runs as the agent: it may only ask. It sends the tool call, cut to size, to root's control
socket and waits for the page's answer; then prints Claude Code's decision. Unanswered in time,
refused, or any failure: it prints nothing, and Claude Code's own prompt in the terminal decides
(it never allows on its own).
"""

from __future__ import annotations

import json
import sys

from ..contract.control import ControlRequest
from ..contract.names import VM, VmPaths
from ..contract.permissions import WAIT_SECONDS, PermissionAsk, clamp_ask, hook_output
from ..errors import ControlUnavailable, DocumentError

INPUT_MAX = 4 << 20  # Claude Code's hook input: the tool's input, a file's whole content at most


def read_ask(raw: bytes) -> PermissionAsk | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("hook_event_name", "PermissionRequest") != "PermissionRequest":
        return None
    return clamp_ask(data.get("tool_name"), data.get("tool_input"), data.get("session_id"))


def decision_for(ask: PermissionAsk, paths: VmPaths = VM, wait: float = WAIT_SECONDS + 10) -> str:
    """ "allow" or "deny" as the page answered, or "" (no answer, root busy or away)."""
    from .control import ask as ask_root

    try:
        for reply in ask_root(ControlRequest("permission", ask=ask), paths, timeout=wait):
            if reply.result is not None:
                decision = reply.result.get("decision")
                return decision if decision in ("allow", "deny") else ""
            if reply.refused or reply.busy:
                return ""
    except (ControlUnavailable, DocumentError, OSError):
        return ""
    return ""


def main(paths: VmPaths = VM) -> None:
    ask = read_ask(sys.stdin.buffer.read(INPUT_MAX))
    decision = decision_for(ask, paths) if ask is not None else ""
    if decision:
        sys.stdout.write(json.dumps(hook_output(decision)) + "\n")


if __name__ == "__main__":
    main()
