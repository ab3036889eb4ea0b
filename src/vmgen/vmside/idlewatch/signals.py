"""One Snapshot per tick from every source, each guarded: a broken source is logged and reads
as a neutral value, so a surprise in /proc or a tmux hiccup never stops the watchdog."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ...contract.agentwatch import AgentWatch
from ...contract.names import VM
from ..agentfs import AgentFiles
from ..privileges import RunAs
from .agent import AgentConfig, AgentWatchers
from .files import DEFAULT_IGNORE, FileWatcher
from .humans import (
    HumansConfig,
    count_ssh_sessions,
    count_tmux_clients,
    count_unix_connections,
    count_web_connections,
    read_leases,
    tmux_sockets,
)
from .model import AgentSignals, AgentState, Humans, Lease, Snapshot

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SignalConfig:
    workspace: Path = VM.work
    agent: AgentConfig = field(default_factory=AgentConfig)
    other_agents: tuple[AgentWatch, ...] = ()  # watched too: a further session may run one of them
    humans: HumansConfig = field(default_factory=HumansConfig)
    file_ignore: tuple[str, ...] = DEFAULT_IGNORE
    max_watches: int | None = None  # None: as many as the kernel allows
    scan_budget: int = 2000  # entries stat'ed per tick past the watch limit, at least
    scan_window_ticks: int = 10  # every directory past the limit is scanned within this many ticks

    @classmethod
    def for_user(cls, user: str, workspace: Path, **agent: Any) -> SignalConfig:
        """Agent and humans config for one user (the service: "agent"; tests: themselves)."""
        return cls(
            workspace=workspace,
            agent=AgentConfig(user=user, **agent),
            humans=HumansConfig(agent_user=user),
        )


class SignalCollector:
    def __init__(self, config: SignalConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._files = FileWatcher(
            config.workspace, config.file_ignore, config.max_watches, config.scan_budget, config.scan_window_ticks
        )
        self._failing: set[str] = set()
        # Whatever the agent user controls is read as the agent, or through AgentFiles.
        self._agent = AgentWatchers(config.agent, config.other_agents, clock)
        self._as_agent: RunAs | None = None
        self._agent_files = AgentFiles(-1)

    def _agent_identity(self) -> RunAs | None:
        """Looked up until the user exists (the watchdog may start before cloud-init made it)."""
        if self._as_agent is None:
            try:
                self._as_agent = RunAs.lookup(self.config.humans.agent_user)
            except KeyError:
                return None
            self._agent_files = AgentFiles(self._as_agent.uid)
        return self._as_agent

    def _tmux_clients(self) -> int:
        who = self._agent_identity()
        if who is None:
            return 0
        folder = self.config.humans.tmux_dir or VM.tmux_dir(who.uid)
        return count_tmux_clients(tmux_sockets(folder, self._agent_files), who, self.config.humans.tmux_timeout)

    def _leases(self) -> tuple[Lease, ...]:
        if self._agent_identity() is None:
            return ()
        return read_leases(self.config.humans.leases_path, self._agent_files, self._clock)

    def snapshot(self) -> Snapshot:
        cfg = self.config
        agent = self._guard("agent", self._agent.poll, _agent_unknown)
        files = self._guard("files", self._files.poll, lambda e: 0)
        humans = Humans(
            ssh_sessions=self._guard("ssh", lambda: count_ssh_sessions(cfg.humans.ssh_excluded_users), _zero),
            tmux_clients=self._guard("tmux", self._tmux_clients, _zero),
            web_connections=self._guard(
                "web",
                lambda: count_web_connections(cfg.humans.web_ports) + count_unix_connections(cfg.humans.web_sockets),
                _zero,
            ),
        )
        leases: tuple[Lease, ...] = self._guard("leases", self._leases, lambda e: ())
        return Snapshot(at=self._clock(), agent=agent, files_changed=files, humans=humans, leases=leases)

    def close(self) -> None:
        self._files.close()

    def _guard(self, name: str, read: Callable[[], T], neutral: Callable[[Exception], T]) -> T:
        """Log a failing source once (and its recovery), answer its neutral value meanwhile."""
        try:
            value = read()
        except Exception as exc:  # any bug in one source must not stop the rest
            if name not in self._failing:
                self._failing.add(name)
                log.exception("idlewatch signal %r failed; treating it as neutral", name)
            return neutral(exc)
        if name in self._failing:
            self._failing.discard(name)
            log.info("idlewatch signal %r works again", name)
        return value


def _zero(exc: Exception) -> int:
    return 0


def _agent_unknown(exc: Exception) -> AgentSignals:
    # Not WORKING (a permanent bug would keep the VM forever) and not WAITING (which would let
    # it be deleted while the agent might work): STALLED is not activity, but it alerts.
    return AgentSignals(AgentState.STALLED, detail=f"agent signals unavailable: {exc}")
