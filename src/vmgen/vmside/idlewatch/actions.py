"""What the watchdog does: warn the humans, then act: back up and delete, delete, or power off.

The action runs in a unit of its own, vmgen-act.service (`vmgen vmside act`), which the watchdog
starts without waiting for it and the hard lifetime's timer starts too (one unit: the two never
run at once). Root alone bounds it, whatever the agent does to the backup's tar stage (its
process): the backup is stopped at the store's `deadline_minutes`, retried until then after a
failure, and without a verified backup by then the compute stops anyway, the data kept another
way (a provider's snapshot of the server, then deleted, where the provider keeps them; else
powered off, the disk kept with the server). What the provider can do, and how, is its VM-side
half in vmgen.vmside.providers, chosen by the settings' `provider`.
Past that, systemd's start timeout for the unit (rendered from the same numbers, see
contract.documents.act_timeout_seconds) stops it and powers the VM off (FailureAction=poweroff).

Each step is written to /run/vmgen/action.json (the watchdog's state carries it to `vmgen
status` and the page), logged, and sent to the webhook (`idle_webhook_url`, the step's whole text) and the `notify`
targets (vmside.notify: vmgen's fixed words, never an error's text). Root's part is what needs root (the
provider's and the DNS API's tokens, powering off); telling the agent's tmux clients runs as the
agent.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ...contract import codec
from ...contract.documents import WATCHDOG_TRIGGER, ActionRecord, BackupResult, BackupTarget, WatchSettings
from ...contract.names import (
    AGENT_USER,
    UNITS,
    VM,
    VmPaths,
)
from ...errors import DocumentError
from ..agentfs import AgentFiles
from ..jsonfile import write_text
from ..notify.policy import action_notice
from ..notify.sender import notifier_for
from ..privileges import RunAs, run_as
from ..providers import VmProvider, vm_provider
from .humans import person_terminals, tmux_sockets
from .model import Action
from .settings import read_secrets

log = logging.getLogger("vmgen.idlewatch")

RETRY_BACKOFF = (15, 30, 60, 120)
MIN_ATTEMPT_SECONDS = 30  # a backup is not tried again with less time than this left
DEFAULT_DEADLINE_MINUTES = BackupTarget.deadline_minutes
TMUX_BUDGET_SECONDS = 5.0  # telling every attached tmux client, in total
ACT_NOTIFY_SECONDS = 15.0  # the phone's message about a step, before the step goes on


def warn(settings: WatchSettings, text: str, paths: VmPaths = VM, event: str = "warning") -> None:
    """Tell every attached tmux client, the terminal of every person's SSH session and the webhook,
    if any; bounded in time (a tmux server is the agent's, and may never answer)."""
    log.warning(text)
    try:
        agent = RunAs.lookup(AGENT_USER)
    except KeyError:
        agent = None
    if agent is not None:
        until = time.monotonic() + TMUX_BUDGET_SECONDS
        for socket in tmux_sockets(paths.tmux_dir(agent.uid), AgentFiles(agent.uid)):
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                run_as(agent, ["tmux", "-S", str(socket), "display-message", "-d", "15000", text], timeout=left)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.info("tmux display-message on %s: %s", socket, exc)
    tell_terminals(text)
    if settings.webhook_url:
        try:
            body = json.dumps({"text": text, "workspace": settings.name, "event": event}).encode()
            request = urllib.request.Request(
                settings.webhook_url, data=body, headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as exc:
            log.warning("webhook %s failed: %s", settings.webhook_url, exc)


def tell_terminals(text: str, terminals: Callable[[], list[str]] | None = None, dev: str = "/dev") -> None:
    """The warning on the terminal of every person's SSH session. Not `wall`: it writes to every
    terminal in utmp, the agent's tmux panes among them (tmux registers them), right into the
    agent's screen, where it garbled what the agent showed. A pts is the kernel's device, opened
    without following a link, without blocking and without becoming its controlling terminal."""
    message = ("\r\n" + text.replace("\n", "\r\n") + "\r\n").encode(errors="replace")
    for tty in (terminals or person_terminals)():
        if not tty.startswith("pts/") or not tty[4:].isdigit():
            continue
        try:
            fd = os.open(f"{dev}/{tty}", os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if stat.S_ISCHR(os.fstat(fd).st_mode):
                os.write(fd, message[:4096])
        except OSError as exc:  # full (a terminal nobody reads), or gone
            log.info("warning on %s: %s", tty, exc)
        finally:
            os.close(fd)


# --- the action itself (vmgen-act.service) ------------------------------------------------------


@dataclass
class Machine:
    """What the action does to the VM and through the provider: replaced in tests."""

    backup: Callable[[float], BackupResult]  # a verified backup, bounded by a deadline (monotonic)
    poweroff: Callable[[], None]
    delete: Callable[[], None]  # through the provider's API; called only where it deletes itself
    snapshot: Callable[[], str]  # a provider snapshot of the server; its id
    notify: Callable[[str, str], None]  # (text, event): journal, terminals, webhook, notifier
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Act:
    """One run of the idle action or the hard lifetime: each step recorded in `record`."""

    settings: WatchSettings
    machine: Machine
    reason: str  # "idle", "lifetime" or "budget"
    deadline_minutes: float = DEFAULT_DEADLINE_MINUTES
    paths: VmPaths = VM
    record: ActionRecord | None = field(default=None, init=False)

    @property
    def provider(self) -> VmProvider:
        return vm_provider(self.settings.provider)

    def run(self) -> ActionRecord:
        action = Action(self.settings.action)
        started = self.machine.clock()
        deadline = started + max(1.0, self.deadline_minutes) * 60
        wall = time.time()
        self.record = ActionRecord(
            reason=self.reason,
            action=action.value,
            step="backing up" if action is Action.BACKUP_THEN_DELETE else "deleting",
            detail="",
            started_at=round(wall, 1),
            deadline_at=round(wall + (deadline - started), 1),
            updated_at=round(wall, 1),
        )
        why = REASON_WORDS.get(self.reason, REASON_WORDS["idle"])
        name = self.settings.name
        if action is Action.POWEROFF:
            return self._finish("powering off", f"powered off ({why}); `vmgen start {name}` brings it back")
        if action is Action.DELETE:
            return self._delete(f"deleted ({why})", f"powered off ({why}); `vmgen start {name}` brings it back")
        self._step("backing up", f"{why}: backing up, then deleting (the backup is given up at the deadline)")
        self.machine.notify(f"vmgen: workspace {name}: {why}; backing up, then deleting", "acting")
        result = self._backup_until(deadline)
        if not result.ok:
            return self._keep(f"no verified backup could be made: {result.error}")
        if left_out := result.reason_not_to_delete():  # files a delete would lose: keep the disk
            self.record = replace(self.record, backup_id=result.backup_id)
            return self._keep(left_out)
        self.record = replace(self.record, backup_id=result.backup_id)
        return self._delete(
            f"backed up as {result.backup_id} and deleted ({why}); `vmgen restore {name}` brings it back",
            f"backed up as {result.backup_id} and powered off ({why}); `vmgen start {name}` brings it back",
        )

    # -- steps -----------------------------------------------------------------------------------

    def _backup_until(self, deadline: float) -> BackupResult:
        """Try, and try again after a failure, until the deadline; the last result."""
        attempt, result = 0, BackupResult(ok=False, error="no time was left for a backup")
        while deadline - self.machine.clock() >= MIN_ATTEMPT_SECONDS or attempt == 0:
            result = self.machine.backup(deadline)
            if result.ok:
                return result
            delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
            attempt += 1
            left = deadline - self.machine.clock()
            log.error("backup failed (%s); %s", result.error, f"trying again in {delay}s" if left > delay else "")
            self._step("backing up", f"backup attempt {attempt} failed ({result.error}); trying again")
            if left - delay < MIN_ATTEMPT_SECONDS:
                break
            self.machine.sleep(delay)
        return result

    def _delete(self, deleted: str, powered_off: str) -> ActionRecord:
        """Delete the server (its words once deleted, and where the VM cannot delete itself, the
        words once powered off: the disk stays)."""
        if not self.provider.deletes_itself:
            return self._finish("powering off", powered_off)
        try:
            self._deleting("deleting", deleted)
        except Exception as exc:  # noqa: BLE001 - the compute stops anyway
            return self._finish(
                "powering off",
                f"{deleted}; but deleting the server failed ({_one_line(exc)}), so it is powered off "
                f"instead ({self.provider.stop_note or 'its disk stays'}: `vmgen destroy {self.settings.name}` "
                "ends that)",
            )
        return self._done("done", deleted)

    def _keep(self, why: str) -> ActionRecord:
        """No verified backup in time: stop the compute without losing the data."""
        name = self.settings.name
        if not self.provider.snapshots and not self.provider.poweroff_keeps_disk:
            # Powering off would end the disk with the server: stay up; the watchdog starts the
            # action again (ACTION_RESTART_SECONDS), so the backup is tried again.
            detail = (
                f"stays up without a complete backup ({why}): powering off would end its disk; the backup "
                f"is tried again each minute (`vmgen backup {name}` to try now, `vmgen destroy {name}` to "
                "give the data up)"
            )
            self._step("kept", detail)
            self.machine.notify(f"vmgen: workspace {name} {detail}", "kept")
            assert self.record is not None
            return self.record
        if not self.provider.snapshots:
            return self._finish(
                "kept",
                f"powered off without a complete backup ({why}); its disk is kept: `vmgen start {name}` brings it back",
            )
        self._step("snapshotting", f"{why}; keeping the server's disk as a snapshot, then deleting the server")
        try:
            snapshot = self.machine.snapshot()
        except Exception as exc:  # noqa: BLE001 - power off: the disk stays with the server
            return self._finish(
                "kept",
                f"powered off without a complete backup ({why}) or a snapshot ({_one_line(exc)}); its disk is kept: "
                f"`vmgen start {name}` brings it back"
                + (f" ({self.provider.stop_note})" if self.provider.stop_note else ""),
            )
        assert self.record is not None
        self.record = replace(self.record, snapshot=snapshot)
        kept = f"without a complete backup ({why}); snapshot {snapshot} keeps its disk"
        back = f"`vmgen restore {name} --snapshot {snapshot}` brings it back"
        try:
            self._deleting("kept", f"deleted {kept}: {back}")
        except Exception as exc:  # noqa: BLE001 - the snapshot has the disk; stop the compute
            return self._finish("kept", f"powered off {kept} (deleting failed: {_one_line(exc)}): {back}")
        return self._done("kept", f"deleted {kept}: {back}")

    def _deleting(self, step: str, detail: str) -> None:
        """Say it first: once the API deletes the server, this process may not get to say anything."""
        self._step(step, detail)
        self.machine.notify(f"vmgen: workspace {self.settings.name} {detail}", step)
        self.machine.delete()

    def _done(self, step: str, detail: str) -> ActionRecord:
        self._step(step, detail)
        assert self.record is not None
        return self.record

    def _finish(self, step: str, detail: str) -> ActionRecord:
        """The last step on a VM that stays: record and say it, then power off."""
        self._step(step, detail)
        self.machine.notify(f"vmgen: workspace {self.settings.name} {detail}", step)
        self.machine.poweroff()
        assert self.record is not None
        return self.record

    def _step(self, step: str, detail: str) -> None:
        assert self.record is not None
        self.record = replace(self.record, step=step, detail=detail, updated_at=round(time.time(), 1))
        log.warning("%s: %s", step, detail)
        try:
            write_text(self.paths.action_state, codec.dumps(self.record))
        except OSError as exc:
            log.warning("could not record the action's step: %s", exc)


def read_record(paths: VmPaths = VM) -> ActionRecord | None:
    """The action's record, if one was started in this boot (root's file in /run)."""
    try:
        return codec.loads(ActionRecord, paths.action_state.read_bytes(), str(paths.action_state), strict=False)
    except (OSError, DocumentError):
        return None


def start_action() -> None:
    """Start the act unit and return at once (the watchdog's tick never waits on it)."""
    subprocess.run(["systemctl", "start", "--no-block", UNITS.act], check=True, capture_output=True, timeout=10)


def machine_for(settings: WatchSettings, paths: VmPaths = VM) -> Machine:
    from ..backups import run_backup

    provider = vm_provider(settings.provider)
    notifier = notifier_for(settings.name, settings.notify, read_secrets(paths), paths, queued=False)

    def backup(deadline: float) -> BackupResult:
        return _within(deadline, lambda: run_backup(WATCHDOG_TRIGGER, paths, deadline=deadline, wait=True))

    def notify(text: str, event: str) -> None:
        warn(settings, text, paths, event)
        notice = action_notice(event, read_record(paths), settings.name)
        if notifier and notice is not None:
            notifier.send_now(notice, ACT_NOTIFY_SECONDS)

    return Machine(
        backup=backup,
        poweroff=poweroff,
        delete=lambda: provider.delete(settings, paths),
        snapshot=lambda: provider.snapshot(settings, paths),
        notify=notify,
    )


def _within(deadline: float, backup: Callable[[], BackupResult], grace: float = 30.0) -> BackupResult:
    """Run `backup` in a thread and give up on it `grace` after the deadline: the backup stops
    its own stages at the deadline, and should anything else hang (a store that stopped
    answering), the action goes on without it."""
    box: list[BackupResult] = []

    def run() -> None:
        try:
            box.append(backup())
        except Exception as exc:  # noqa: BLE001 - a busy lock at the deadline, a missing store
            box.append(BackupResult(ok=False, error=_one_line(exc)))

    worker = threading.Thread(target=run, name="act-backup", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()) + grace)
    return box[0] if box else BackupResult(ok=False, error="the backup did not end by its deadline")


def poweroff() -> None:
    log.warning("powering off")
    subprocess.run(["systemctl", "poweroff", "--no-block"], check=True, capture_output=True, timeout=30)


# Why the act unit runs, in the words of its steps.
REASON_WORDS = {
    "idle": "it is idle",
    "lifetime": "its hard lifetime is over",
    "budget": "its share of budget_month is spent",
}


def reason_now(settings: WatchSettings, paths: VmPaths = VM) -> str:
    """ "lifetime" once the system has been up for the hard lifetime (the timer's own clock:
    since systemd started); "budget" when root's budget ledger says `stop` is due; else "idle"."""
    if settings.max_lifetime_hours and system_uptime() >= settings.max_lifetime_hours * 3600 - 5:
        return "lifetime"
    from . import budget

    return "budget" if budget.stop_due(settings, time.time(), paths) else "idle"


def system_uptime() -> float:
    """Seconds since PID 1 started: a VM's boot, or a simulated VM's (a container's) start."""
    try:
        started = int(open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19])  # noqa: SIM115
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.clock_gettime(time.CLOCK_BOOTTIME)


def _aside(note: str) -> str:
    return f" ({note})" if note else ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
