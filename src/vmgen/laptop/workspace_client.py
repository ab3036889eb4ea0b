"""The laptop's one way of talking to a workspace: over SSH as the agent user. From its boot
(SSH answers, cloud-init's phases, the handover, the agent's session) to its life (backups,
the restore, the watchdog's state, keepalives through the VM-side `vmgen vmside ...` commands,
which answer in the contract's documents).

A backup or restore streams root's progress lines back as they come (no polling of result
files); a dropped connection does not stop the work on the VM, and the page shows its result.
The launch orchestrator talks to a workspace only through this protocol, so its tests use a fake.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..contract import codec
from ..contract.certificates import CertificateReport
from ..contract.control import decode_reply
from ..contract.documents import BackupResult, RestoreResult, WatchdogState, WebServices
from ..contract.names import VM
from ..errors import BackupFailed, DocumentError, RestoreFailed, StatusUnavailable, VmgenError
from ..selfwheel import VmgenWheel
from . import sessions
from .agent_screen import AgentScreen, parse_screen, screen_script, window_target
from .agents import Agent
from .handover import (
    CredentialsGiven,
    Handover,
    add_agent_credentials,
    approve_claude_api_key,
    deliver,
    merge_first_run,
)
from .readiness import Phase, follow_cloud_init, wait_for_session, wait_for_ssh
from .ssh import SSHTarget, remote, run, write_file_while_booting
from .state import WorkspaceState, failed_boot_log

Progress = Callable[[str], None]


class WorkspaceClient(Protocol):
    def wait_until_reachable(self, timeout: float, progress: Progress) -> None: ...

    def follow_boot(self, timeout: float, progress: Progress) -> list[Phase]: ...

    def deliver_wheel(self, wheel: VmgenWheel) -> None: ...

    def hand_over(self, handover: Handover) -> None: ...

    def wait_for_agent(self, timeout: float, progress: Progress) -> None: ...

    def has_conversation(self, agent: Agent, repo_dir: str) -> bool: ...

    def backup(self, progress: Progress) -> BackupResult: ...

    def restore(self, identity: str, progress: Progress, timeout: float) -> RestoreResult: ...

    def status(self, fresh: bool = False, timeout: float = 120) -> WatchdogState: ...

    def first_verdict(self, timeout: float, agent_watched: bool) -> WatchdogState | None: ...

    def keepalive(self, duration: str, reason: str) -> str: ...

    def desktop_password(self) -> str: ...


# How launch gets its client: the workspace's name and how to find its SSH endpoint now (a
# port may appear late).
ClientFactory = Callable[[str, Callable[[], SSHTarget | None]], WorkspaceClient]


class SshWorkspaceClient:
    def __init__(
        self, target: SSHTarget | None, name: str, find_target: Callable[[], SSHTarget | None] | None = None
    ) -> None:
        self._target, self.name = target, name
        self._find_target = find_target or (lambda: target)

    @classmethod
    def booting(cls, name: str, find_target: Callable[[], SSHTarget | None]) -> SshWorkspaceClient:
        """For a workspace being launched: the target is known once SSH answers."""
        return cls(None, name, find_target)

    @property
    def target(self) -> SSHTarget:
        if self._target is None:
            raise VmgenError(f"{self.name}: not reachable over SSH yet")
        return self._target

    @property
    def session(self) -> str:
        """The agent's tmux session (named for the agent its record names)."""
        return WorkspaceState(self.name).agent_session

    def wait_until_reachable(self, timeout: float, progress: Progress) -> None:
        self._target = wait_for_ssh(self._find_target, timeout, progress)

    def follow_boot(self, timeout: float, progress: Progress) -> list[Phase]:
        return follow_cloud_init(self.target, timeout, progress, failed_boot_log(self.name))

    def deliver_wheel(self, wheel: VmgenWheel) -> None:
        """Into the agent's folder, where root picks it up after checking its sha256."""
        write_file_while_booting(self.target, str(VM.agent_incoming / wheel.relative_path), wheel.content, mode="644")

    def hand_over(self, handover: Handover) -> None:
        deliver(self.target, handover)

    def wait_for_agent(self, timeout: float, progress: Progress) -> None:
        wait_for_session(self.target, self.session, timeout, progress)

    def has_conversation(self, agent: Agent, repo_dir: str) -> bool:
        """What the agent's start script asks: a conversation in `repo_dir` to resume."""
        return run(self.target, ["bash", "-c", agent.has_conversation(repo_dir)], check=False).returncode == 0

    def backup(self, progress: Progress, timeout: float = 7200) -> BackupResult:
        raw = self._stream(["vmgen", "vmside", "backup", "--trigger", "laptop"], None, progress, timeout)
        result = codec.from_value(BackupResult, raw, "the backup's result", strict=False)
        if not result.ok:
            raise BackupFailed(f"{self.name}: backup failed: {result.error}")
        return result

    def restore(self, identity: str, progress: Progress, timeout: float = 3600) -> RestoreResult:
        try:
            raw = self._stream(["vmgen", "vmside", "restore"], identity.encode(), progress, timeout)
        except VmgenError as exc:
            raise RestoreFailed(f"restore failed: {exc}") from None
        result = codec.from_value(RestoreResult, raw, "the restore's result", strict=False)
        if not result.ok:
            raise RestoreFailed(f"restore failed: {result.error}")
        return result

    def status(self, fresh: bool = False, timeout: float = 120) -> WatchdogState:
        """The watchdog's state; `fresh`: a verdict made now, not up to an interval old."""
        found = run(
            self.target, ["vmgen", "vmside", "status", *(["--fresh"] if fresh else [])], check=False, timeout=timeout
        )
        try:
            data = json.loads(found.stdout)
        except ValueError:
            raise StatusUnavailable(f"{self.name}: the watchdog's state cannot be read") from None
        if isinstance(data, dict) and "error" in data:
            raise StatusUnavailable(f"{self.name}: {data['error']}")
        try:
            return codec.from_value(WatchdogState, data, "the watchdog's state", strict=False)
        except DocumentError as exc:
            raise StatusUnavailable(f"{self.name}: the watchdog's state cannot be read ({exc})") from None

    def first_verdict(self, timeout: float, agent_watched: bool) -> WatchdogState | None:
        """A verdict made after the agent started; with an agent the watchdog watches, one that
        sees it (its process may take a moment to appear). If none does in time, the last one
        (None if the watchdog never answered): the workspace is up, the caller says what is not."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            try:
                state = self.status(fresh=True)
            except (StatusUnavailable, subprocess.TimeoutExpired):
                state = None  # the watchdog is late: the workspace itself is up
            if state is not None and (not agent_watched or state.agent.state != "absent"):
                return state
            time.sleep(1)  # ticks are at least a second apart anyway
        return state

    def budget_grant(self, text: str, mac: str, timeout: float = 60) -> None:
        """Hand root a new share of the budget, signed by this machine (root checks the signature)."""
        payload = json.dumps({"grant": text, "mac": mac}).encode()
        self._stream(["vmgen", "vmside", "budget-grant"], payload, lambda line: None, timeout)

    def permission_answer(self, text: str, mac: str, timeout: float = 20) -> dict[str, Any]:
        """Hand root an answer to a pending permission prompt, signed by this machine (root checks
        the signature); root's result, or VmgenError with root's refusal."""
        payload = json.dumps({"answer": text, "mac": mac}).encode()
        return self._stream(["vmgen", "vmside", "permission-answer"], payload, lambda line: None, timeout)

    def certificates(self) -> CertificateReport:
        """Each hostname's certificate as the VM sees it (issued, pending, or why not)."""
        found = run(self.target, ["vmgen", "vmside", "certificates"], check=False)
        try:
            return CertificateReport.loads(found.stdout)
        except DocumentError as exc:
            raise VmgenError(f"{self.name}: the certificates' state cannot be read ({exc})") from None

    def wait_for_certificates(self, timeout: float) -> CertificateReport:
        """The report once no hostname is pending any more, or as it is at the deadline."""
        deadline = time.monotonic() + timeout
        report = self.certificates()
        while any(host.state == "pending" for host in report.hosts) and time.monotonic() < deadline:
            time.sleep(2)  # Caddy writes to its log; nothing here to subscribe to
            report = self.certificates()
        return report

    def services(self) -> WebServices:
        """Whether the workspace has a desktop and how far its code UI is."""
        found = run(self.target, ["vmgen", "vmside", "services"])
        try:
            return codec.from_value(WebServices, json.loads(found.stdout), "the workspace's services", strict=False)
        except (ValueError, DocumentError) as exc:
            raise VmgenError(f"{self.name}: what the workspace serves cannot be read ({exc})") from None

    def agent_screen(self, agent: Agent, settle_seconds: float = 60, window: str = "") -> AgentScreen:
        """Whether the agent runs in its pane (of `window`, else the session's current one) and
        has credentials, and its screen once settled."""
        script = screen_script(agent, settle_seconds, window, self.session)
        found = run(self.target, ["bash", "-c", script], timeout=settle_seconds + 30)
        return parse_screen(found.stdout.decode(errors="replace"))

    def type_prompt(self, prompt: str, window: str = "") -> None:
        """Type PROMPT into the agent's pane (of `window`) and press Enter."""
        pane = window_target(window, self.session)
        run(self.target, ["tmux", "send-keys", "-t", pane, "-l", "--", prompt])
        run(self.target, ["tmux", "send-keys", "-t", pane, "Enter"])

    def windows(self) -> str:
        """The raw listing of the agent session's windows and the processes below them."""
        return run(self.target, ["bash", "-c", sessions.list_script(self.session)]).stdout.decode(errors="replace")

    def new_window(self, window: str, agent: str = "") -> None:
        run(self.target, sessions.new_window_argv(window, session=self.session, agent=agent))

    def agent_installed(self, agent: Agent) -> sessions.AgentAvailability:
        """Whether `agent`'s program is on the PATH of the agent's windows, and whether the
        workspace's agent-run can start another agent than its own."""
        found = run(self.target, ["bash", "-c", sessions.installed_script(agent)], check=False)
        return sessions.parse_installed(found.stdout.decode(errors="replace"))

    def add_credentials(self, agent: Agent, values: dict[str, str]) -> CredentialsGiven:
        """`values` of `agent`'s key variables into the env file every window loads (the ones
        the workspace has kept); whether `agent` has a credential there then."""
        return add_agent_credentials(self.target, agent, values)

    def seed_first_run(self, documents: dict[str, dict[str, Any]], claude_api_key: str = "") -> tuple[str, ...]:
        """The first-run files merged into the agent's own (the paths left alone), and Claude
        Code's approval of the key it will find, as the launch gives them."""
        kept = merge_first_run(self.target, documents)
        if claude_api_key:
            approve_claude_api_key(self.target, claude_api_key)
        return kept

    def keepalive(self, duration: str, reason: str) -> str:
        result = run(self.target, ["vmgen", "vmside", "keepalive", "--for", duration, "--reason", reason])
        return result.stdout.decode().strip()

    def desktop_password(self) -> str:
        """The VNC password (the agent's to read: the desktop is its own), for a tunnelled noVNC."""
        result = run(self.target, ["cat", str(VM.desktop_password)], check=False)
        if result.returncode != 0:
            raise VmgenError(f"{self.name} has no desktop (launched without --desktop)")
        return result.stdout.decode().strip()

    def _stream(self, argv: list[str], stdin: bytes | None, progress: Progress, timeout: float) -> dict[str, Any]:
        """Run a VM-side command that answers in control-socket lines; the final result."""
        command = [*self.target.base_command(), remote(argv)]
        with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.close()
            result: dict[str, Any] | None = None
            refused = ""
            for line in proc.stdout:
                try:
                    reply = decode_reply(line)
                except DocumentError:
                    continue  # anything else on stdout (a login banner) is not an answer
                if reply.progress:
                    progress(reply.progress)
                elif reply.refused:
                    refused = reply.refused
                elif reply.result is not None:
                    result = reply.result
            stderr = proc.stderr.read().decode(errors="replace").strip()
            proc.wait(timeout=timeout)
        if refused:
            raise VmgenError(f"{self.name}: refused: {refused}")
        if result is None:
            detail = stderr.splitlines()[-1] if stderr else f"exit {proc.returncode}"
            raise VmgenError(f"{self.name}: no answer from vmgen on the workspace ({detail})")
        return result
