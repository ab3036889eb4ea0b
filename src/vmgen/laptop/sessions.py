"""Several agent sessions in one workspace: each a tmux window of the agent's session, started
by the VM's own `agent-run --new` (the same start command, permission mode and credentials as
the first one). Pure: the names, the commands and the parsing of their listing; the SSH is in
workspace_client.py, the commands in cli/sessions_cmd.py."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import NamedTuple

from ..contract.documents import SessionRecord
from ..contract.names import AGENT_SESSION, VM, VmPaths
from ..errors import UsageError
from .agents import AGENTS, Agent

WINDOW_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def list_script(session: str = AGENT_SESSION) -> str:
    """Run as the agent: the windows of `session` (tab-separated: index, name, pane pid, the
    pane's command, active, the agent agent-run started there), a separator, then every process
    (pid, parent, command) to find the agent below a pane."""
    return f"""
tmux list-windows -t {shlex.quote(session)} \\
  -F '#{{window_index}}\t#{{window_name}}\t#{{pane_pid}}\t#{{pane_current_command}}\t#{{window_active}}'\
'\t#{{@vmgen-agent}}' 2>/dev/null
echo ---
ps -e -o pid=,ppid=,comm=
"""


LIST_SCRIPT = list_script()  # Claude Code's session


@dataclass(frozen=True)
class Window:
    index: int
    name: str
    runs: str  # the agent's process below the pane, else the pane's command
    active: bool
    state: str = ""  # the watchdog's state for its agent process; "" when it judged none
    detail: str = ""
    agent: str = ""  # the agent agent-run started in it ("" in a workspace from before --agent)


def validate_window_name(name: str, existing: list[str] | tuple[str, ...] = ()) -> str:
    if not WINDOW_NAME.fullmatch(name):
        raise UsageError(f"invalid session name {name!r}: use 1-40 letters, digits, '-' or '_'")
    if name in existing:
        raise UsageError(f"a session named {name!r} exists already (see `vmgen session list`)")
    return name


def new_window_argv(window: str, paths: VmPaths = VM, session: str = AGENT_SESSION, agent: str = "") -> list[str]:
    """A detached window of the agent's session running a fresh conversation (`agent-run --new`:
    it loads the agent's credentials and starts it in the repository folder), of `agent` when
    given (else the workspace's own)."""
    validate_window_name(window)
    chosen = ["--agent", validate_agent_name(agent)] if agent else []
    return [
        "tmux",
        "new-window",
        "-d",
        "-t",
        f"{session}:",
        "-n",
        window,
        str(paths.program("agent-run")),
        "--new",
        *chosen,
    ]


def validate_agent_name(name: str) -> str:
    if name not in AGENTS:
        raise UsageError(f"unknown agent {name!r}; choose one of: {', '.join(sorted(AGENTS))}")
    return name


class AgentAvailability(NamedTuple):
    """What the workspace says of an agent for a further session (installed_script)."""

    installed: bool  # its program is on the PATH the agent's windows get
    runner_takes_agents: bool  # agent-run knows --agent (not a workspace made before)
    in_devcontainer: bool  # agent-run runs its agent inside the repository's dev container


def installed_script(agent: Agent, paths: VmPaths = VM) -> str:
    """Run as the agent: whether `agent`'s program is on the PATH its windows get (the tmux
    server's, which the agent's service started: `tmux show-environment -g`), whether the
    workspace's agent-run knows `--agent` (one made before does not, and would start its own
    agent instead) and whether it runs its agent inside a dev container (then only the
    workspace's own agent is installed where it runs). Prints `program <path>` or `program -`,
    `runner yes` or `runner no`, then `inside yes` or `inside no`."""
    program = shlex.split(agent.start_command())[0]
    runner = shlex.quote(str(paths.program("agent-run")))
    inside = shlex.quote(str(paths.program("devcontainer-exec")))
    return f"""
found=$(tmux show-environment -g PATH 2>/dev/null || true)
case "$found" in PATH=?*) PATH=${{found#PATH=}} ;; esac
echo "program $(command -v {shlex.quote(program)} || echo -)"
if grep -q -- '--agent' {runner} 2>/dev/null; then echo "runner yes"; else echo "runner no"; fi
if grep -q -F -- {inside} {runner} 2>/dev/null; then echo "inside yes"; else echo "inside no"; fi
"""


def parse_installed(output: str) -> AgentAvailability:
    """installed_script's output."""
    said = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
    return AgentAvailability(
        installed=said.get("program", "-").strip() not in ("", "-"),
        runner_takes_agents=said.get("runner", "").strip() == "yes",
        in_devcontainer=said.get("inside", "").strip() == "yes",
    )


def attach_argv(window: str = "", index: int | None = None, session: str = AGENT_SESSION) -> list[str]:
    """Attach to the agent's session (created when missing, as `vmgen connect` always did), at
    the window named `window` or numbered `index` (the picker's: names need not be unique)."""
    attach = ["tmux", "new-session", "-A", "-s", session]
    if index is not None:
        target = f"{session}:{int(index)}"
    elif window:
        target = f"{session}:={validate_window_name(window)}"
    else:
        return attach
    # A lone ";" separates tmux commands; select-window fails (and nothing attaches) when the
    # window does not exist, with tmux's "can't find window" line.
    return ["tmux", "select-window", "-t", target, ";", *attach[1:]]


def parse_windows(output: str, judged: list[SessionRecord] | tuple[SessionRecord, ...] = ()) -> list[Window]:
    """The windows from LIST_SCRIPT's output, each with the watchdog's state of the agent
    process below its pane (matched by pid)."""
    lines = output.splitlines()
    cut = lines.index("---") if "---" in lines else len(lines)
    head, table = lines[:cut], lines[cut + 1 :]
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for line in table:
        parts = line.split(None, 2)
        if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
            continue
        pid, ppid = int(parts[0]), int(parts[1])
        children.setdefault(ppid, []).append(pid)
        names[pid] = parts[2].strip() if len(parts) > 2 else ""
    by_pid = {record.pid: record for record in judged}
    windows = []
    for line in head:
        fields = line.split("\t")
        if len(fields) not in (5, 6) or not fields[0].isdigit() or not fields[2].isdigit():
            continue
        below = _descendants(int(fields[2]), children)
        record = next((by_pid[pid] for pid in below if pid in by_pid), None)
        runs = names.get(record.pid, "") if record else ""
        windows.append(
            Window(
                index=int(fields[0]),
                name=shown(fields[1]),
                runs=shown(runs or fields[3]),
                active=fields[4] == "1",
                state=shown(record.state) if record else "",
                detail=shown(record.detail) if record else "",
                agent=shown(fields[5], 40) if len(fields) == 6 else "",
            )
        )
    return windows


def shown(text: str, limit: int = 120) -> str:
    """Text the agent controls (a window's name, a process's, a hook's words), safe for the
    user's terminal: no control characters (escape sequences), bounded in length."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    """`root` and every process below it, nearest first (bounded: the table is finite and a pid
    is visited once)."""
    found, queue, seen = [], [root], {root}
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        for child in children.get(pid, []):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return found
