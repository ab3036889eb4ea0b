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
from collections.abc import Callable
from typing import Any, Protocol

from .contract import codec
from .contract.control import decode_reply
from .contract.documents import BackupResult, RestoreResult, WatchdogState
from .contract.names import AGENT_SESSION, VM
from .errors import BootFailed, VmgenError
from .handover import Handover, deliver
from .readiness import Phase, follow_cloud_init, wait_for_session, wait_for_ssh
from .ssh import SSHTarget, remote, run

Progress = Callable[[str], None]


class BackupFailed(VmgenError):
    """The workspace could not make or verify its backup."""


class RestoreFailed(BootFailed):
    """The new VM could not restore the backup; the agent was not started."""


class StatusUnavailable(VmgenError):
    """The workspace's watchdog has not reported (yet), or its state cannot be read."""


class WorkspaceClient(Protocol):
    def wait_until_reachable(self, timeout: float, progress: Progress) -> None: ...

    def follow_boot(self, timeout: float, progress: Progress) -> list[Phase]: ...

    def hand_over(self, handover: Handover) -> None: ...

    def wait_for_agent(self, timeout: float, progress: Progress) -> None: ...

    def backup(self, progress: Progress) -> BackupResult: ...

    def restore(self, identity: str, progress: Progress, timeout: float) -> RestoreResult: ...

    def status(self) -> WatchdogState: ...

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

    def wait_until_reachable(self, timeout: float, progress: Progress) -> None:
        self._target = wait_for_ssh(self._find_target, timeout, progress)

    def follow_boot(self, timeout: float, progress: Progress) -> list[Phase]:
        return follow_cloud_init(self.target, timeout, progress)

    def hand_over(self, handover: Handover) -> None:
        deliver(self.target, handover)

    def wait_for_agent(self, timeout: float, progress: Progress) -> None:
        wait_for_session(self.target, AGENT_SESSION, timeout, progress)

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

    def status(self) -> WatchdogState:
        found = run(self.target, ["vmgen", "vmside", "status"], check=False)
        try:
            data = json.loads(found.stdout)
        except ValueError:
            raise StatusUnavailable(f"{self.name}: the watchdog's state cannot be read") from None
        if isinstance(data, dict) and "error" in data:
            raise StatusUnavailable(f"{self.name}: {data['error']}")
        try:
            return codec.from_value(WatchdogState, data, "the watchdog's state", strict=False)
        except codec.DocumentError as exc:
            raise StatusUnavailable(f"{self.name}: the watchdog's state cannot be read ({exc})") from None

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
                except codec.DocumentError:
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
