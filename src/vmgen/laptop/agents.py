"""The coding agents vmgen can run, each with how to install, start and resume it."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ..contract.agentwatch import AgentWatch, TurnLog
from ..contract.documents import AGENT_WATCH_DEFAULTS
from ..contract.enums import PermissionMode
from ..contract.names import AGENT_SESSION, VM

__all__ = ["AGENTS", "AGENT_SESSION", "Agent", "claude_project_key"]


@dataclass(frozen=True)
class Agent:
    name: str
    # `{version}` is replaced by the (validated) pin; the result is a shell command run as root.
    install: str
    # Run as the agent user inside the tmux session, in the repository directory. With
    # permission modes (below), `{permissions}` is replaced by the mode's option.
    start: str
    # Start command that picks up the previous conversation; used after a restart.
    resume: str
    # The command-line option for each PermissionMode (`bypass`: skip every prompt); empty for an
    # agent whose prompts vmgen cannot answer (it runs as its own defaults have it).
    permission_modes: tuple[tuple[PermissionMode, str], ...] = ()
    # Packages the install command needs besides vmgen's base set.
    packages: tuple[str, ...] = ()
    # Installed with npm and run by Node: the install step puts vmgen's Node.js first.
    node: bool = False
    # Environment variables the agent reads its API key from, delivered over SSH after boot.
    key_variables: tuple[str, ...] = ()
    # Shell run as the agent before it starts or resumes, with the delivered keys in its
    # environment: what turns a key into the agent's own login ("" for none).
    prepare: str = ""
    # Shell test, true when the agent has a conversation to resume in `{repo_dir}`.
    conversation_test: str = f"test -e {VM.started_once}"
    # Each session its own conversation: start one under an id vmgen chose, resume it by that id,
    # and the file that holds it once it has begun (`{project_key}`, `{session_id}`). Without
    # these, only the first session resumes after a restart (the agent's last conversation).
    start_with_id: str = ""
    resume_with_id: str = ""
    conversation_file: str = ""
    # pip pins with `==version` and has no `latest`; npm takes `@latest` as it is.
    pip_pinned: bool = False
    # How root's watchdog recognises it working: its processes, its model API, its turn log and
    # state files (handed to the VM in the watchdog's settings).
    watch: AgentWatch = AGENT_WATCH_DEFAULTS
    # Text on the agent's screen that means it cannot work: it waits for a login.
    login_screen: tuple[str, ...] = ()
    # Files (below the agent's home) where the agent keeps a login of its own. With these known,
    # an agent that has neither a key nor such a file is known to have no credentials at all.
    credential_files: tuple[str, ...] = ()
    # Root's settings file the agent reads and cannot change or override (Claude Code's managed
    # settings): vmgen's hooks and the permission mode's policy go there.
    managed_settings: str = ""
    # In a dev container (docs/devcontainers.md): the VM's folder of the installed agent, bound
    # into the container at the same path (root's files: the container's uids cannot change them),
    # and its commands there (name, path below that folder), linked from a folder of the agent's
    # that goes first on PATH inside; "" for an agent that does not run inside one yet. Its
    # programs must run on the container's C library (glibc).
    container_install: str = ""
    container_programs: tuple[tuple[str, str], ...] = ()
    # Variables it needs inside: the container's root is the agent's uid on the VM.
    container_env: tuple[tuple[str, str], ...] = ()

    @property
    def watched(self) -> bool:
        """Whether the watchdog sees this agent's processes (every agent declares them)."""
        return bool(self.watch.processes)

    def start_command(self, mode: PermissionMode = PermissionMode.BYPASS) -> str:
        return self._with_mode(self.start, mode)

    def resume_command(self, mode: PermissionMode = PermissionMode.BYPASS) -> str:
        return self._with_mode(self.resume, mode)

    @property
    def resumes_by_id(self) -> bool:
        return bool(self.start_with_id and self.resume_with_id and self.conversation_file)

    def start_with_id_command(self, mode: PermissionMode = PermissionMode.BYPASS) -> str:
        """Starts a conversation under the id in the shell variable `$session_id`."""
        return self._with_mode(self.start_with_id, mode).replace("{session_id}", '"$session_id"')

    def resume_with_id_command(self, mode: PermissionMode = PermissionMode.BYPASS) -> str:
        """Resumes the conversation whose id is in the shell variable `$session_id`."""
        return self._with_mode(self.resume_with_id, mode).replace("{session_id}", '"$session_id"')

    def conversation_files(self, repo_dir: str) -> tuple[str, str]:
        """The folder of the conversations in `repo_dir` and the name ending after the id: the
        file of `$session_id` is `<folder>/$session_id<ending>`."""
        path = self.conversation_file.replace("{project_key}", claude_project_key(repo_dir))
        head, _, ending = path.partition("{session_id}")
        return head.rstrip("/"), ending

    def _with_mode(self, command: str, mode: PermissionMode) -> str:
        options = dict(self.permission_modes)
        if mode not in options and mode != PermissionMode.BYPASS:
            raise ValueError(f"{self.name} has no permission mode {mode.value!r}")
        return command.replace("{permissions}", options.get(mode, "")).rstrip()

    def install_command(self, version: str) -> str:
        if self.pip_pinned:
            version = "" if version == "latest" else f"=={version}"
        return self.install.format(version=shlex.quote(version))

    @property
    def version_command(self) -> str:
        """Prints the installed CLI's version (every agent's CLI answers `--version`)."""
        return f"{shlex.split(self.start_command())[0]} --version"

    @property
    def credential_variables(self) -> tuple[str, ...]:
        """Of the key variables, the credentials (the others configure it, e.g. a base URL)."""
        return tuple(variable for variable in self.key_variables if variable.endswith("_API_KEY"))

    def has_conversation(self, repo_dir: str) -> str:
        return self.conversation_test.format(project_key=claude_project_key(repo_dir))


def claude_project_key(directory: str) -> str:
    """The folder name Claude Code uses under ~/.claude/projects for a working directory."""
    return re.sub(r"[^A-Za-z0-9]", "-", directory)


AGENTS: dict[str, Agent] = {
    agent.name: agent
    for agent in (
        Agent(
            name="claude",
            install="npm install -g --no-fund --no-audit @anthropic-ai/claude-code@{version}",
            start="claude {permissions}",
            resume="claude --continue {permissions}",
            permission_modes=(
                (PermissionMode.BYPASS, "--dangerously-skip-permissions"),
                *((mode, f"--permission-mode {mode.value}") for mode in PermissionMode if mode != "bypass"),
            ),
            # Claude Code keeps one transcript per session under a folder named after the cwd.
            conversation_test=f'compgen -G "{VM.claude_dir}/projects/{{project_key}}/*.jsonl" >/dev/null',
            start_with_id="claude --session-id {session_id} {permissions}",
            resume_with_id="claude --resume {session_id} {permissions}",
            conversation_file=f"{VM.claude_dir}/projects/{{project_key}}/{{session_id}}.jsonl",
            node=True,
            key_variables=("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
            watch=AgentWatch(),  # its hooks, session status files and transcripts (the defaults)
            # Without a key or a login it starts anyway, and says so once it is sent a prompt.
            login_screen=("Not logged in", "Please run /login", "Invalid API key"),
            credential_files=(".claude/.credentials.json",),
            managed_settings="/etc/claude-code/managed-settings.json",
            # The npm package holds its native program (bin/claude.exe): no Node inside.
            container_install="/usr/local/lib/node_modules/@anthropic-ai/claude-code",
            container_programs=(("claude", "bin/claude.exe"),),
            # Claude Code refuses to skip permissions as uid 0 outside a sandbox; a rootless
            # container's root is the agent's own uid on the VM, which is what this says.
            container_env=(("IS_SANDBOX", "1"),),
        ),
        Agent(
            name="codex",
            install="npm install -g --no-fund --no-audit @openai/codex@{version}",
            start="codex",
            resume="codex resume --last",
            # It keeps one rollout per conversation (any folder's: `resume --last` takes the newest).
            conversation_test=f'compgen -G "{VM.home}/.codex/sessions/*/*/*/rollout-*.jsonl" >/dev/null',
            node=True,
            key_variables=("OPENAI_API_KEY",),
            # With only OPENAI_API_KEY in its environment codex shows its sign-in screen: the key
            # becomes its login (~/.codex/auth.json) first, unless it has one.
            prepare=(
                'if [ -n "${OPENAI_API_KEY:-}" ] && ! codex login status >/dev/null 2>&1; then'
                " printenv OPENAI_API_KEY | codex login --with-api-key >/dev/null; fi"
            ),
            login_screen=("Sign in with ChatGPT", "Finish signing in"),
            credential_files=(".codex/auth.json",),
            # The npm package's node launcher runs the native `codex`, which starts `codex
            # app-server` (it holds the model connections); each turn opens and closes in its rollout.
            watch=AgentWatch(
                processes=("codex",),
                turn_log=TurnLog.CODEX,
                endpoint_variables=("OPENAI_BASE_URL",),
                endpoint="https://api.openai.com/v1",
                state_paths=(".codex/sessions",),
            ),
        ),
        Agent(
            name="gemini",
            install="npm install -g --no-fund --no-audit @google/gemini-cli@{version}",
            start="gemini",
            resume="gemini --resume latest",
            node=True,
            key_variables=("GEMINI_API_KEY",),
            # node runs the `gemini` script, which relaunches itself once (`node
            # --max-old-space-size=N .../gemini`: that child holds the model connections); its
            # chats are saved per project below ~/.gemini/tmp. Pre-answered first-run dialogs:
            # builder/render.py's gemini_first_run.
            watch=AgentWatch(
                processes=("gemini",),
                turn_log=TurnLog.NONE,
                endpoint_variables=("GOOGLE_GEMINI_BASE_URL",),
                endpoint="https://generativelanguage.googleapis.com",
                state_paths=(".gemini/tmp",),
            ),
        ),
        Agent(
            name="opencode",
            install="npm install -g --no-fund --no-audit opencode-ai@{version}",
            start="opencode",
            resume="opencode --continue",
            node=True,
            key_variables=("ANTHROPIC_API_KEY", "OPENAI_API_KEY"),
            # A node launcher and the native `opencode`; it stores every message part as it streams
            # (in its database since 1.x, in storage/ before).
            watch=AgentWatch(
                processes=("opencode",),
                turn_log=TurnLog.NONE,
                endpoint_variables=("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"),
                endpoint="https://api.anthropic.com",
                state_paths=(
                    ".local/share/opencode/opencode.db",
                    ".local/share/opencode/opencode.db-wal",
                    ".local/share/opencode/storage",
                ),
            ),
        ),
        Agent(
            name="aider",
            install=(
                "python3 -m venv /opt/aider && /opt/aider/bin/pip install -q aider-chat{version}"
                " && ln -sf /opt/aider/bin/aider /usr/local/bin/aider"
            ),
            start="aider",
            resume="aider --restore-chat-history",
            packages=("python3-venv",),
            key_variables=("ANTHROPIC_API_KEY", "OPENAI_API_KEY"),
            pip_pinned=True,
            # python runs the `aider` script; its chat history is a file in the repository (which
            # the watchdog's file watch sees), and litellm reads the endpoint from these variables.
            watch=AgentWatch(
                processes=("aider",),
                turn_log=TurnLog.NONE,
                endpoint_variables=("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"),
                endpoint="https://api.anthropic.com",
            ),
        ),
    )
}
