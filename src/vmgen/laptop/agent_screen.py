"""What the agent's tmux pane shows, and whether a prompt typed into it would reach an agent
that can work: `vmgen send` refuses rather than report success to a login screen or a shell.

Whether the agent runs is read from the pane's own process, whatever the agent: the pane runs
vmgen's agent-run script while the agent runs, and that script replaces itself with a shell once
the agent exits. Whether it can work: a key in the environment vmgen handed over, or a login
file of its own (Claude Code shows no login screen until it is sent a prompt), and no login
text on its screen.
"""

from __future__ import annotations

import enum
import shlex
from dataclasses import dataclass

from ..contract.names import AGENT_SESSION, VM, agent_session
from .agents import Agent


class PaneState(str, enum.Enum):
    RUNNING = "running"  # the agent runs in its pane
    EXITED = "exited"  # the agent exited; the pane holds a shell
    NO_SESSION = "no-session"  # no tmux session at all
    UNSETTLED = "unsettled"  # the screen kept changing (the agent's UI still starting)


@dataclass(frozen=True)
class AgentScreen:
    state: PaneState
    text: str = ""
    credentials: bool | None = None  # None: the agent's login files are not known to vmgen


def screen_script(agent: Agent, settle_seconds: float, window: str = "", session: str = "") -> str:
    """Remote script, run as the agent: the pane's state on the first line, whether the agent
    has credentials on the second, then its settled screen. Keys typed while the agent's UI is
    still starting are lost, so the screen is read once it shows something and stops changing.
    `session`: the workspace's tmux session (named for the workspace's own agent, which a further
    session's `agent` need not be); by default the one named for `agent`."""
    runner = shlex.quote(str(VM.program("agent-run")))
    # has-session with a window target fails for a missing window (display-message would fall
    # back to the current one).
    pane = shlex.quote(window_target(window, session or agent_session(agent.name)))
    if agent.credential_files:
        tests = [f"grep -qE '^({'|'.join(agent.credential_variables) or '-'})=' {shlex.quote(str(VM.agent_env))}"]
        tests += [f"[ -s {shlex.quote(str(VM.home / name))} ]" for name in agent.credential_files]
        credentials = f"if {' || '.join(tests)}; then echo yes; else echo no; fi 2>/dev/null"
    else:
        credentials = "echo unknown"
    return f"""
tmux has-session -t {pane} 2>/dev/null || {{ echo {PaneState.NO_SESSION.value}; exit 0; }}
pid=$(tmux display-message -p -t {pane} '#{{pane_pid}}')
tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -qF -- {runner} || {{ echo {PaneState.EXITED.value}; exit 0; }}
prev=
for i in $(seq {int(settle_seconds * 2)}); do
  cur=$(tmux capture-pane -p -t {pane})
  if [ -n "$(printf %s "$cur" | tr -d '[:space:]')" ] && [ "$cur" = "$prev" ]; then break; fi
  prev=$cur; cur=; sleep 0.5
done
[ -n "$cur" ] && echo {PaneState.RUNNING.value} || echo {PaneState.UNSETTLED.value}
{credentials}
printf '%s\\n' "${{cur:-$prev}}"
"""


def window_target(window: str = "", session: str = AGENT_SESSION) -> str:
    """tmux's target for a window of the agent's session by its exact name; the session's
    current window without one."""
    return f"{session}:={window}" if window else session


def parse_screen(output: str) -> AgentScreen:
    first, _, rest = output.partition("\n")
    try:
        state = PaneState(first.strip())
    except ValueError:
        return AgentScreen(PaneState.NO_SESSION)
    if state is not PaneState.RUNNING and state is not PaneState.UNSETTLED:
        return AgentScreen(state)
    credentials, _, text = rest.partition("\n")
    return AgentScreen(state, text, {"yes": True, "no": False}.get(credentials.strip()))


def why_prompts_are_lost(screen: AgentScreen, agent: Agent, name: str, window: str = "") -> str:
    """Why a prompt typed now (into `window`'s pane, else the current one) would reach no working
    agent, or "" when it would."""
    if screen.state is PaneState.NO_SESSION and window:
        return f"{name} has no agent session named {window!r} (see `vmgen session list {name}`)"
    if screen.state is PaneState.NO_SESSION:
        return (
            f"the agent's tmux session is not running on {name} "
            f"(see `vmgen ssh {name} -- systemctl status vmgen-agent`)"
        )
    if screen.state is PaneState.EXITED:
        return (
            f"{agent.name} is not running on {name}: it exited and its pane holds a shell (see `vmgen connect {name}`)"
        )
    if screen.state is PaneState.UNSETTLED:
        return f"the agent's screen on {name} did not settle; see `vmgen connect {name}`"
    shown = next((text for text in agent.login_screen if text in screen.text), "")
    if shown or screen.credentials is False:
        why = f"its screen says {shown!r}" if shown else "it has neither a key nor a login"
        return (
            f"{agent.name} on {name} is not logged in ({why}): log in with `vmgen connect {name}`, "
            f"or launch with {' or '.join(agent.credential_variables) or 'its key'} set"
            + (" or --copy-claude-login" if agent.name == "claude" else "")
        )
    return ""
