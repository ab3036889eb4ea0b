"""Is the coding agent working, waiting for its human, stalled, or gone?

A Claude process that merely exists is not activity, and one waiting a minute on a slow model
with ~0% CPU is. So the agent's own state decides whether a turn is open (transcript, session
status file, hook events: the most recent statement wins), and outside evidence (transcript
growth, a connection to the model API, CPU of its process tree) tells working from stalled.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ...contract.names import AGENT_USER, VM
from ..agentfs import AgentFiles
from .model import AgentSignals, AgentState
from .transcript import (
    HookReader,
    HookState,
    SessionStatus,
    TranscriptReader,
    TranscriptState,
    fuse_turn,
    read_session_status,
)

INTERPRETERS = ("node", "bun", "python")  # prefixes: python3.11, nodejs ...


@dataclass(frozen=True)
class AgentConfig:
    user: str = AGENT_USER
    process_names: tuple[str, ...] = ("claude",)
    claude_dir: Path | None = None  # default: $CLAUDE_CONFIG_DIR or $HOME/.claude of the process
    hook_events: Path | None = VM.hook_events
    stall_after: float = 15 * 60
    cpu_busy: float = 0.05  # fraction of one core, averaged over the tick
    excluded_remotes: tuple[str, ...] = ()  # addresses/CIDRs that are not the model API
    only_under: Path | None = None  # only agents whose cwd is below this (tests share a host)


@dataclass
class _Proc:
    pid: int
    ppid: int
    name: str
    uid: int
    cpu_own: float  # user + system
    cpu_reaped: float  # children_user + children_system: finished children (test runs)
    created: float


@dataclass
class Tree:
    """One agent process (a root) and everything below it, as sampled this tick."""

    root: _Proc
    descendants: list[_Proc]
    cpu_own: float = 0.0  # CPU seconds of the agent process itself this tick
    cpu_children: float = 0.0  # of its descendants, running or reaped this tick
    connections: int = 0


@dataclass
class _RootMemory:
    """What a root remembers between ticks (keyed by pid and start time)."""

    reader: TranscriptReader | None = None
    claude_dir: Path | None = None
    last_growth: float | None = None  # monotonic


@dataclass(frozen=True)
class Evidence:
    """Everything the classification looks at for one agent process."""

    turn_open: bool
    turn_source: str
    tool_running: bool
    grew_recently: bool
    grew_now: bool
    connections: int
    cpu_busy: bool
    children_busy: bool
    hook: HookState = field(default_factory=HookState)
    hook_recent: bool = False


def classify(e: Evidence) -> tuple[AgentState, str]:
    """The state and a short human reason; pure, so it is tested as a table."""
    if not e.turn_open:
        if e.children_busy:
            return AgentState.WORKING, "no turn open, but its child processes burn CPU"
        if e.hook.event == "Notification" and e.turn_source == "hook":
            return AgentState.WAITING, f"waiting for the human ({e.hook.detail or 'notification'})"
        return AgentState.WAITING, f"at its prompt ({e.turn_source})"
    if e.connections:
        return AgentState.WORKING, f"turn open, {e.connections} model connection(s)"
    if e.grew_now or e.grew_recently:
        return AgentState.WORKING, "turn open, transcript growing"
    if e.cpu_busy or (e.tool_running and e.children_busy):
        return AgentState.WORKING, "turn open, " + ("tool running, children busy" if e.tool_running else "CPU busy")
    if e.hook_recent:
        return AgentState.WORKING, f"turn open, recent hook {e.hook.event}"
    return AgentState.STALLED, "turn open but no progress (no growth, connection, CPU or hook)"


class AgentWatcher:
    """Stateful across ticks: CPU deltas, transcript offsets and growth times live here."""

    def __init__(self, config: AgentConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        # Only the agent's own regular files are read (as root), never through its links; the
        # uid is set once the user exists.
        self._files = AgentFiles(-1)
        self._hooks = HookReader(config.hook_events, self._files) if config.hook_events else None
        self._cpu: dict[tuple[int, float], tuple[float, float]] = {}
        self._roots: dict[tuple[int, float], _RootMemory] = {}
        self._last_tick: tuple[float, float] | None = None  # (monotonic, wall)
        self._excluded = [ipaddress.ip_network(r, strict=False) for r in config.excluded_remotes]

    def poll(self) -> AgentSignals:
        now, wall = self._clock(), time.time()
        elapsed = now - self._last_tick[0] if self._last_tick else 0.0
        since_wall = self._last_tick[1] if self._last_tick else None
        self._last_tick = (now, wall)
        uid = self._agent_uid()
        if uid is not None:
            self._files.uid = uid
        hook = self._hooks.poll() if self._hooks else HookState()
        worked = [t for t in (hook.activity_at, hook.at if hook.event == "Stop" else None) if t is not None]
        worked_at = max(worked) if worked else None
        trees = self._sample(since_wall)
        if not trees:
            self._roots.clear()
            return AgentSignals(
                AgentState.ABSENT,
                last_hook_event=hook.event,
                detail=f"no {'/'.join(self.config.process_names)} process of {self.config.user}",
                worked_at=worked_at,
            )
        results = [self._judge(t, hook, now, wall, elapsed) for t in trees]
        live = {(t.root.pid, t.root.created) for t in trees}
        self._roots = {k: v for k, v in self._roots.items() if k in live}
        order = [AgentState.WORKING, AgentState.STALLED, AgentState.WAITING]
        state, detail, _ = min(results, key=lambda r: order.index(r[0]))
        if len(trees) > 1:
            detail += f" [{len(trees)} agent processes]"
        return AgentSignals(
            state=state,
            turn_open=any(r[2].turn_open for r in results),
            tool_running=any(r[2].tool_running for r in results),
            transcript_grew=any(r[2].grew_now for r in results),
            model_connections=sum(r[2].connections for r in results),
            cpu_busy=any(r[2].cpu_busy or r[2].children_busy for r in results),
            last_hook_event=hook.event,
            detail=detail,
            worked_at=worked_at,
        )

    # -- sampling -------------------------------------------------------------------------

    def _agent_uid(self) -> int | None:
        try:
            return pwd.getpwnam(self.config.user).pw_uid
        except KeyError:
            return None

    def _sample(self, since_wall: float | None) -> list[Tree]:
        uid = self._agent_uid()
        if uid is None:
            return []
        procs: dict[int, _Proc] = {}
        children: dict[int, list[int]] = {}
        for p in psutil.process_iter(["name", "ppid", "uids", "cpu_times", "create_time"]):
            info = p.info
            if info["cpu_times"] is None or info["uids"] is None:
                continue  # vanished or unreadable mid-scan
            ct = info["cpu_times"]
            procs[p.pid] = _Proc(
                p.pid,
                info["ppid"] or 0,
                info["name"] or "",
                info["uids"].real,
                ct.user + ct.system,
                ct.children_user + ct.children_system,
                info["create_time"] or 0.0,
            )
            children.setdefault(info["ppid"] or 0, []).append(p.pid)
        agents = {pid for pid, pr in procs.items() if pr.uid == uid and self._is_agent(pr) and self._is_under(pid)}
        roots = [pid for pid in agents if not self._has_agent_ancestor(pid, procs, agents)]
        trees = [Tree(procs[r], [procs[d] for d in _descendants(r, children)]) for r in roots]
        seen: dict[tuple[int, float], tuple[float, float]] = {}
        for tree in trees:
            self._account(tree, since_wall, seen)
            tree.connections = sum(self._connections(p.pid) for p in [tree.root, *tree.descendants])
        self._cpu = seen
        return trees

    def _is_agent(self, proc: _Proc) -> bool:
        names = self.config.process_names
        if _stem(proc.name) in names:
            return True
        if not proc.name.startswith(INTERPRETERS) and len(proc.name) < 15:
            return False  # comm names it and it is not ours: no need to read its argv
        try:  # comm is cut to 15 chars and interpreters keep their own name: look at argv
            argv = psutil.Process(proc.pid).cmdline()
        except psutil.Error:
            return False
        if argv and _stem(argv[0]) in names:
            return True
        return len(argv) > 1 and _stem(argv[0]).startswith(INTERPRETERS) and _stem(argv[1]) in names

    def _is_under(self, pid: int) -> bool:
        if self.config.only_under is None:
            return True
        cwd = _cwd_of(pid)
        return cwd is not None and Path(cwd).is_relative_to(self.config.only_under)

    @staticmethod
    def _has_agent_ancestor(pid: int, procs: dict[int, _Proc], agents: set[int]) -> bool:
        parent, hops = procs[pid].ppid, 0
        while parent in procs and hops < 64:
            if parent in agents:
                return True
            parent, hops = procs[parent].ppid, hops + 1
        return False

    def _account(
        self, tree: Tree, since_wall: float | None, seen: dict[tuple[int, float], tuple[float, float]]
    ) -> None:
        """CPU seconds this tick, per (pid, start time) so reused pids never subtract."""
        for proc in [tree.root, *tree.descendants]:
            key = (proc.pid, proc.created)
            seen[key] = (proc.cpu_own, proc.cpu_reaped)
            prev = self._cpu.get(key)
            if prev is None:  # new since the last tick counts whole; first tick is a baseline
                prev = (
                    (0.0, 0.0)
                    if since_wall is not None and proc.created >= since_wall
                    else (proc.cpu_own, proc.cpu_reaped)
                )
            own, reaped = max(0.0, proc.cpu_own - prev[0]), max(0.0, proc.cpu_reaped - prev[1])
            if proc is tree.root:
                tree.cpu_own += own
                tree.cpu_children += reaped
            else:
                tree.cpu_children += own + reaped

    def _connections(self, pid: int) -> int:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            return 0
        return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.raddr and self._is_remote(c.raddr.ip))

    def _is_remote(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return not addr.is_loopback and not any(addr in net for net in self._excluded)

    # -- judging --------------------------------------------------------------------------

    def _judge(
        self, tree: Tree, hook: HookState, now: float, wall: float, elapsed: float
    ) -> tuple[AgentState, str, Evidence]:
        mem = self._roots.setdefault((tree.root.pid, tree.root.created), _RootMemory())
        status, transcript = self._agent_state(tree.root.pid, mem)
        if transcript.grew:
            mem.last_growth = now
        elif mem.last_growth is None and transcript.mtime is not None:
            mem.last_growth = now - max(0.0, wall - transcript.mtime)  # resume after a restart
        turn_open, source = fuse_turn(transcript, status, hook)
        limit = self.config.cpu_busy * elapsed
        stall = self.config.stall_after
        ev = Evidence(
            turn_open=turn_open,
            turn_source=source,
            tool_running=turn_open and transcript.tool_running,
            grew_recently=mem.last_growth is not None and now - mem.last_growth < stall,
            grew_now=transcript.grew > 0,
            connections=tree.connections,
            cpu_busy=elapsed > 0 and tree.cpu_own + tree.cpu_children > limit,
            children_busy=elapsed > 0 and tree.cpu_children > limit,
            hook=hook,
            hook_recent=hook.activity_at is not None and wall - hook.activity_at < stall,
        )
        state, detail = classify(ev)
        return state, detail, ev

    def _agent_state(self, pid: int, mem: _RootMemory) -> tuple[SessionStatus | None, TranscriptState]:
        if mem.claude_dir is None:
            mem.claude_dir = self.config.claude_dir or _claude_dir_of(pid, self.config.user)
        status = read_session_status(mem.claude_dir, pid, self._files)
        if mem.reader is None:
            cwd = status.cwd if status and status.cwd else _cwd_of(pid)
            if cwd is None:
                return status, TranscriptState(None)
            mem.reader = TranscriptReader(mem.claude_dir, cwd, self._files)
        return status, mem.reader.poll(status.session_id if status else None)


def _descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    out, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def _stem(path: str) -> str:
    base = os.path.basename(path.split(" ", 1)[0]) if path else ""
    for suffix in (".exe", ".js", ".mjs", ".cjs"):
        base = base.removesuffix(suffix)
    return base


def _claude_dir_of(pid: int, user: str) -> Path:
    """Claude Code's config dir as the process sees it (root may read its environment)."""
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        env = {}
    if env.get("CLAUDE_CONFIG_DIR"):
        return Path(env["CLAUDE_CONFIG_DIR"])
    if env.get("HOME"):
        return Path(env["HOME"]) / ".claude"
    try:
        return Path(pwd.getpwnam(user).pw_dir) / ".claude"
    except KeyError:
        return Path.home() / ".claude"


def _cwd_of(pid: int) -> str | None:
    try:
        return str(psutil.Process(pid).cwd())
    except psutil.Error:
        return None
