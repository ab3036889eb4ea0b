"""Is the coding agent working, waiting for its human, stalled, or gone?

A Claude process that merely exists is not activity, and one waiting a minute on a slow model
with ~0% CPU is. So the agent's own state decides whether a turn is open (transcript, session
status file, hook events: the most recent statement of that session wins), and outside evidence
(a live tool process, a connection to the model API, transcript growth, CPU of its process tree)
tells working from stalled.

Every agent process (a session: a second window, a `claude` its tools started) is judged on
its own session's statements and its own processes, and the agent works if any of them does.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from ...contract.agentwatch import AgentWatch, TurnLog, endpoint_of
from ...contract.documents import AGENT_WATCH_DEFAULTS
from ...contract.names import AGENT_USER, VM
from ..agentfs import AgentFiles
from .model import AgentSignals, AgentState
from .rollout import RolloutReader, StateFolders
from .transcript import (
    HookReader,
    HookState,
    SessionStatus,
    TranscriptReader,
    TranscriptState,
    fuse_turn,
    read_session_status,
    statement_at,
)

INTERPRETERS = ("node", "bun", "python")  # prefixes: python3.11, nodejs ...


@dataclass(frozen=True)
class AgentConfig:
    user: str = AGENT_USER
    watch: AgentWatch = AGENT_WATCH_DEFAULTS  # how the agent is recognised (its own declaration)
    claude_dir: Path | None = None  # default: $CLAUDE_CONFIG_DIR or $HOME/.claude of the process
    hook_events: Path | None = VM.hook_events
    stall_after: float = 15 * 60
    cpu_busy: float = 0.05  # fraction of one core, averaged over the tick
    excluded_remotes: tuple[str, ...] = ()  # addresses/CIDRs that are not the model API
    only_under: Path | None = None  # only agents whose cwd is below this (tests share a host)

    @property
    def process_names(self) -> tuple[str, ...]:
        return self.watch.processes


# A process started this long before the tool call's transcript line still counts as the call's:
# psutil's start times rest on /proc/stat's boot time, cut to the second (they read early).
TOOL_START_SLACK = 1.5

Connection = tuple[str, int, str, int]  # local address and port, remote address and port


@dataclass
class _Proc:
    pid: int
    ppid: int
    name: str
    uid: int
    cpu_own: float  # user + system
    cpu_reaped: float  # children_user + children_system: finished children (test runs)
    created: float  # wall clock
    zombie: bool = False


@dataclass
class ProcessTable:
    """Every process as sampled once this tick, shared by the watchers of every agent (one scan
    of /proc a tick, not one per agent); command lines read once, when a watcher asks."""

    procs: dict[int, _Proc]
    children: dict[int, list[int]]
    _argv: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def scan(cls) -> ProcessTable:
        procs: dict[int, _Proc] = {}
        children: dict[int, list[int]] = {}
        for p in psutil.process_iter(["name", "ppid", "uids", "cpu_times", "create_time", "status"]):
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
                info["status"] == psutil.STATUS_ZOMBIE,
            )
            children.setdefault(info["ppid"] or 0, []).append(p.pid)
        return cls(procs, children)

    def argv(self, pid: int) -> list[str]:
        if pid not in self._argv:
            try:
                self._argv[pid] = psutil.Process(pid).cmdline()
            except psutil.Error:
                self._argv[pid] = []
        return self._argv[pid]


@dataclass
class Tree:
    """One agent process (a root) and everything below it, as sampled this tick."""

    root: _Proc
    descendants: list[_Proc]
    cpu_own: float = 0.0  # CPU seconds of the agent process itself this tick
    cpu_children: float = 0.0  # of its descendants, running or reaped this tick
    connections: int = 0  # of the whole tree
    agent_connections: frozenset[Connection] = frozenset()  # of the agent processes in it


@dataclass
class _RootMemory:
    """What a root remembers between ticks (keyed by pid and start time)."""

    reader: TranscriptReader | None = None
    claude_dir: Path | None = None
    last_growth: float | None = None  # monotonic
    # The agent's connections that were open while its turn was: after the turn they are the
    # HTTP client's pool of idle sockets (Bun keeps them for minutes), not a request.
    pooled: frozenset[Connection] = frozenset()
    fresh_since: dict[Connection, float] = field(default_factory=dict)  # monotonic, outside a turn
    environ: dict[str, str] | None = None  # the agent process's environment (read once)
    rollout: RolloutReader | None = None  # codex's turn log


@dataclass(frozen=True)
class Evidence:
    """Everything the classification looks at for one agent process (one session)."""

    turn_open: bool
    turn_source: str
    tool_running: bool  # a tool call is open
    grew_recently: bool
    grew_now: bool
    connections: int  # of its process tree, during a turn
    cpu_busy: bool
    children_busy: bool
    hook: HookState = field(default_factory=HookState)
    hook_recent: bool = False
    tool_alive: tuple[str, ...] = ()  # names of the open tool call's live processes
    new_connections: int = 0  # opened by the agent process outside a turn, not yet stale
    state_written: bool = False  # an agent without a turn log wrote among its state paths


@dataclass(frozen=True)
class ProcessFacts:
    """What one agent process and its tree showed this tick (sampled by the watcher)."""

    connections: int = 0  # established connections to a remote, anywhere in its tree
    new_connections: int = 0  # of the agent process itself, opened outside a turn, not yet stale
    children: tuple[tuple[str, float], ...] = ()  # its live descendants: name, start (wall)
    cpu_busy: bool = False
    children_busy: bool = False
    grew_now: bool = False
    grew_recently: bool = False  # its transcript grew within stall_after
    state_written: bool = False


def evidence_of(
    transcript: TranscriptState,
    status: SessionStatus | None,
    hook: HookState,
    facts: ProcessFacts,
    wall: float,
    stall_after: float,
) -> Evidence:
    """One session's evidence: its own statements (transcript, status file, its own hooks) say
    whether a turn is open and a tool call with it; its processes say whether anything moves."""
    turn_open, source = fuse_turn(transcript, status, hook)
    tool_running = turn_open and (transcript.tool_running or (hook.event == "PreToolUse" and source == "hook"))
    tool_since = transcript.tool_since or (hook.at if hook.event == "PreToolUse" else None)
    return Evidence(
        turn_open=turn_open,
        turn_source=source,
        tool_running=tool_running,
        grew_recently=facts.grew_recently,
        grew_now=facts.grew_now,
        connections=facts.connections if turn_open else 0,
        cpu_busy=facts.cpu_busy,
        children_busy=facts.children_busy,
        hook=hook,
        hook_recent=hook.activity_at is not None and wall - hook.activity_at < stall_after,
        tool_alive=_tool_processes(facts.children, tool_since) if tool_running else (),
        new_connections=0 if turn_open else facts.new_connections,
        state_written=facts.state_written,
    )


def _tool_processes(children: tuple[tuple[str, float], ...], since: float | None) -> tuple[str, ...]:
    """The live processes of an open tool call: descendants of the agent process started since
    the call began (or any, when its start is unknown), so that a long-lived helper (an MCP
    server) started with the session does not count as the call's."""
    return tuple(name for name, started in children if since is None or started >= since - TOOL_START_SLACK)


def combine(states: list[tuple[AgentState, str]]) -> tuple[AgentState, str]:
    """The agent's state from its sessions': it works if any session works (then stalled, then
    waiting); the detail names the deciding session and counts the others."""
    order = [AgentState.WORKING, AgentState.STALLED, AgentState.WAITING]
    state, detail = min(states, key=lambda r: order.index(r[0]))
    if len(states) > 1:
        counts = {st: sum(1 for r in states if r[0] is st) for st in order}
        detail += f"; of {len(states)} sessions: " + ", ".join(f"{n} {st.value}" for st, n in counts.items() if n)
    return state, detail


def classify(e: Evidence) -> tuple[AgentState, str]:
    """The state and a short human reason; pure, so it is tested as a table."""
    if not e.turn_open:
        if e.new_connections:
            return AgentState.WORKING, f"no turn open, but {e.new_connections} new model connection(s)"
        if e.state_written:
            return AgentState.WORKING, "no turn open, but it writes its conversation"
        if e.children_busy:
            return AgentState.WORKING, "no turn open, but its child processes burn CPU"
        if e.hook.event == "Notification" and e.turn_source == "hook":
            return AgentState.WAITING, f"waiting for the human ({e.hook.detail or 'notification'})"
        return AgentState.WAITING, f"at its prompt ({e.turn_source})"
    if e.tool_alive:
        return AgentState.WORKING, f"turn open, tool running ({', '.join(e.tool_alive[:3])})"
    if e.connections:
        return AgentState.WORKING, f"turn open, {e.connections} model connection(s)"
    if e.grew_now or e.grew_recently:
        return AgentState.WORKING, "turn open, transcript growing"
    if e.cpu_busy or (e.tool_running and e.children_busy):
        return AgentState.WORKING, "turn open, " + ("tool running, children busy" if e.tool_running else "CPU busy")
    if e.hook_recent:
        return AgentState.WORKING, f"turn open, recent hook {e.hook.event}"
    return AgentState.STALLED, "turn open, but no tool process, model connection or transcript growth"


def merge_signals(first: AgentSignals, others: list[AgentSignals]) -> AgentSignals:
    """The workspace's agent's signals with those of the other agents' sessions: absent only when
    every agent is; else judged over every session of every agent, as one agent's sessions are
    (`combine`: working if any session works)."""
    present = [s for s in (first, *others) if s.state is not AgentState.ABSENT]
    if not present or present == [first]:
        return first
    sessions = [
        (state, detail) for s in present for (_pid, state, detail) in (s.per_session or ((0, s.state, s.detail),))
    ]
    state, detail = combine(sessions)
    worked = [s.worked_at for s in (first, *others) if s.worked_at is not None]
    return AgentSignals(
        state=state,
        turn_open=any(s.turn_open for s in present),
        tool_running=any(s.tool_running for s in present),
        tool_alive=any(s.tool_alive for s in present),
        transcript_grew=any(s.transcript_grew for s in present),
        model_connections=sum(s.model_connections for s in present),
        cpu_busy=any(s.cpu_busy for s in present),
        last_hook_event=first.last_hook_event,
        detail=detail,
        worked_at=max(worked) if worked else None,
        sessions=sum(s.sessions for s in present),
        per_session=tuple(entry for s in present for entry in s.per_session),
    )


class AgentWatchers:
    """The workspace's agent and the other agents vmgen offers (a further session may run any of
    them), each recognised by its own declaration; one signal for them all (`merge_signals`)."""

    def __init__(
        self, config: AgentConfig, others: tuple[AgentWatch, ...] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.first = AgentWatcher(config, clock)
        own = set(config.watch.processes)
        self.others = [
            AgentWatcher(replace(config, watch=watch), clock) for watch in others if not own & set(watch.processes)
        ]

    def poll(self) -> AgentSignals:
        table = ProcessTable.scan()
        return merge_signals(self.first.poll(table), [watcher.poll(table) for watcher in self.others])


class AgentWatcher:
    """Stateful across ticks: CPU deltas, transcript offsets and growth times live here."""

    def __init__(self, config: AgentConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        # Only the agent's own regular files are read (as root), never through its links; the
        # uid is set once the user exists.
        self._files = AgentFiles(-1)
        claude = config.watch.turn_log is TurnLog.CLAUDE
        self._hooks = HookReader(config.hook_events, self._files) if config.hook_events and claude else None
        self._state = StateFolders(self._files)
        self._state_tick: tuple[float, bool] | None = None
        self._cpu: dict[tuple[int, float], tuple[float, float]] = {}
        self._roots: dict[tuple[int, float], _RootMemory] = {}
        self._last_tick: tuple[float, float] | None = None  # (monotonic, wall)
        self._excluded = [ipaddress.ip_network(r, strict=False) for r in config.excluded_remotes]

    def poll(self, table: ProcessTable | None = None) -> AgentSignals:
        """`table`: this tick's processes, when another watcher scanned them already."""
        now, wall = self._clock(), time.time()
        elapsed = now - self._last_tick[0] if self._last_tick else 0.0
        since_wall = self._last_tick[1] if self._last_tick else None
        self._last_tick = (now, wall)
        uid = self._agent_uid()
        if uid is not None:
            self._files.uid = uid
        hooks = self._hooks.poll() if self._hooks else {}
        newest = max(hooks.values(), key=lambda h: h.at or 0.0, default=HookState())
        worked = [t for h in hooks.values() for t in (h.activity_at, h.at if h.event == "Stop" else None) if t]
        worked_at = max(worked) if worked else None
        trees = self._sample(since_wall, table)
        if not trees:
            self._roots.clear()
            return AgentSignals(
                AgentState.ABSENT,
                last_hook_event=newest.event,
                detail=f"no {'/'.join(self.config.process_names)} process of {self.config.user}",
                worked_at=worked_at,
            )
        sessions = [self._session_of(t) for t in trees]
        claimed = {sid for sid, _ in sessions if sid}
        results = [
            self._judge(tree, self._hooks_of(sid, hooks, claimed), status, now, wall, elapsed, since_wall)
            for tree, (sid, status) in zip(trees, sessions, strict=True)
        ]
        live = {(t.root.pid, t.root.created) for t in trees}
        self._roots = {k: v for k, v in self._roots.items() if k in live}
        state, detail = combine([(r[0], r[1]) for r in results])
        return AgentSignals(
            state=state,
            turn_open=any(r[2].turn_open for r in results),
            tool_running=any(r[2].tool_running for r in results),
            tool_alive=any(r[2].tool_alive for r in results),
            transcript_grew=any(r[2].grew_now for r in results),
            model_connections=sum(r[2].connections + r[2].new_connections for r in results),
            cpu_busy=any(r[2].cpu_busy or r[2].children_busy for r in results),
            last_hook_event=newest.event,
            detail=detail,
            worked_at=worked_at,
            sessions=len(trees),
            per_session=tuple((t.root.pid, r[0], r[1]) for t, r in zip(trees, results, strict=True)),
        )

    def _session_of(self, tree: Tree) -> tuple[str | None, SessionStatus | None]:
        """The agent process's session id, from the status file Claude Code keeps per process."""
        mem = self._roots.setdefault((tree.root.pid, tree.root.created), _RootMemory())
        if self.config.watch.turn_log is not TurnLog.CLAUDE:
            return None, None
        if mem.claude_dir is None:
            mem.claude_dir = self.config.claude_dir or _claude_dir_of(tree.root.pid, self.config.user)
        status = read_session_status(mem.claude_dir, tree.root.pid, self._files)
        return (status.session_id if status else None), status

    @staticmethod
    def _hooks_of(session: str | None, hooks: dict[str, HookState], claimed: set[str]) -> HookState:
        """A session's own hook statements; for a process whose session is unknown, the newest
        statement of no other process's session (an older hook script's lines, without one)."""
        if session:
            return hooks.get(session, HookState())
        unclaimed = [h for sid, h in hooks.items() if sid not in claimed]
        return max(unclaimed, key=lambda h: h.at or 0.0, default=HookState())

    # -- sampling -------------------------------------------------------------------------

    def _agent_uid(self) -> int | None:
        try:
            return pwd.getpwnam(self.config.user).pw_uid
        except KeyError:
            return None

    def _sample(self, since_wall: float | None, table: ProcessTable | None = None) -> list[Tree]:
        uid = self._agent_uid()
        if uid is None:
            return []
        table = table or ProcessTable.scan()
        procs, children = table.procs, table.children
        agents = {pid for pid, pr in procs.items() if pr.uid == uid and self._is_agent(pr, table)}
        roots = [pid for pid in agents if self._is_under(pid) and not self._has_agent_ancestor(pid, procs, agents)]
        trees = [Tree(procs[r], [procs[d] for d in _descendants(r, children)]) for r in roots]
        seen: dict[tuple[int, float], tuple[float, float]] = {}
        for tree in trees:
            self._account(tree, since_wall, seen)
            opened = {proc.pid: self._connections(proc.pid) for proc in [tree.root, *tree.descendants]}
            tree.connections = sum(len(conns) for conns in opened.values())
            tree.agent_connections = frozenset(c for pid, conns in opened.items() if pid in agents for c in conns)
        self._cpu = seen
        return trees

    def _is_agent(self, proc: _Proc, table: ProcessTable) -> bool:
        names = self.config.process_names
        if _stem(proc.name) in names:
            return True
        if not proc.name.startswith(INTERPRETERS) and len(proc.name) < 15:
            return False  # comm names it and it is not ours: no need to read its argv
        argv = table.argv(proc.pid)  # comm is cut to 15 chars and interpreters keep their own name
        if argv and _stem(argv[0]) in names:
            return True
        if not argv or not _stem(argv[0]).startswith(INTERPRETERS):
            return False
        # The script the interpreter runs: its first argument that is no option (gemini relaunches
        # itself as `node --max-old-space-size=N .../gemini`, and that child holds the model's
        # connections; `python -u aider`).
        script = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
        return _stem(script) in names

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

    def _connections(self, pid: int) -> list[Connection]:
        """The process's established TCP connections to a remote (not loopback) address."""
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            return []
        return [
            (c.laddr.ip, c.laddr.port, c.raddr.ip, c.raddr.port)
            for c in conns
            if c.status == psutil.CONN_ESTABLISHED and c.raddr and self._is_remote(c.raddr.ip)
        ]

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
        self,
        tree: Tree,
        hook: HookState,
        status: SessionStatus | None,
        now: float,
        wall: float,
        elapsed: float,
        since_wall: float | None,
    ) -> tuple[AgentState, str, Evidence]:
        mem = self._roots.setdefault((tree.root.pid, tree.root.created), _RootMemory())
        if mem.environ is None:
            mem.environ = _environ(tree.root.pid)
        turn_log = self.config.watch.turn_log
        if turn_log is TurnLog.CLAUDE:
            transcript = self._transcript(tree.root.pid, mem, status, hook)
        elif turn_log is TurnLog.CODEX:
            transcript = self._rollout(tree, mem)
        else:
            transcript = TranscriptState(None)
        # Claude's own connections are all the model's (as they always were); another agent's
        # count only to its model API's endpoint, as its environment or its declaration names it.
        if turn_log is not TurnLog.CLAUDE:
            endpoint = model_endpoint(self.config.watch, mem.environ)
            tree.agent_connections = frozenset(c for c in tree.agent_connections if to_endpoint(c, endpoint))
        if transcript.grew:
            mem.last_growth = now
        elif mem.last_growth is None and transcript.mtime is not None:
            mem.last_growth = now - max(0.0, wall - transcript.mtime)  # resume after a restart
        turn_open, _ = fuse_turn(transcript, status, hook)
        # A turn that ended since the last tick (or began and ended between two) leaves its
        # connections in the client's pool: they are no request either.
        said = statement_at(transcript, status, hook)
        ended_now = since_wall is None or (said is not None and said >= since_wall)
        limit = self.config.cpu_busy * elapsed
        facts = ProcessFacts(
            connections=tree.connections,
            new_connections=self._new_connections(tree, mem, turn_open, now, ended_now),
            children=tuple((p.name, p.created) for p in tree.descendants if not p.zombie),
            cpu_busy=elapsed > 0 and tree.cpu_own + tree.cpu_children > limit,
            children_busy=elapsed > 0 and tree.cpu_children > limit,
            grew_now=transcript.grew > 0,
            grew_recently=mem.last_growth is not None and now - mem.last_growth < self.config.stall_after,
            state_written=turn_log is TurnLog.NONE and self._state_written(mem, now),
        )
        ev = evidence_of(transcript, status, hook, facts, wall, self.config.stall_after)
        state, detail = classify(ev)
        if turn_log is TurnLog.NONE:  # no turn to speak of: say what was seen instead
            name = self.config.process_names[0]
            if state is AgentState.WAITING:
                detail = f"at its prompt (no model connection; {name} keeps no turn log vmgen reads)"
            elif ev.new_connections:
                detail = f"{ev.new_connections} model connection(s) open ({name} keeps no turn log vmgen reads)"
        return state, detail, ev

    def _rollout(self, tree: Tree, mem: _RootMemory) -> TranscriptState:
        """codex's turn from its rollout: the one a process of the session holds open."""
        if mem.rollout is None:
            environ = mem.environ or {}
            home = Path(environ.get("CODEX_HOME") or Path(_home_of(environ, self.config.user)) / ".codex")
            mem.rollout = RolloutReader(home / "sessions", self._files)
        held: list[Path] = []
        for proc in [tree.root, *tree.descendants]:
            try:  # the kernel's names of its open files: read, never followed
                held.extend(Path(f.path) for f in psutil.Process(proc.pid).open_files())
            except psutil.Error:
                continue
        return mem.rollout.poll(held)

    def _state_written(self, mem: _RootMemory, now: float) -> bool:
        """Looked at once a tick (the folders are the agent's, whichever session wrote)."""
        if self._state_tick is None or self._state_tick[0] != now:
            home = Path(_home_of(mem.environ, self.config.user))
            self._state_tick = (now, self._state.written(home / folder for folder in self.config.watch.state_paths))
        return self._state_tick[1]

    def _new_connections(self, tree: Tree, mem: _RootMemory, turn_open: bool, now: float, settled: bool) -> int:
        """The agent's connections opened outside a turn and not older than stall_after: a request
        its session's statements do not explain. Those left from the last turn are its HTTP
        client's idle pool (`settled`: the turn just ended, or the watchdog just started), and any
        other goes stale (a remote MCP server's stream must not hold the workspace for ever)."""
        current = tree.agent_connections
        if turn_open or settled:
            mem.pooled, mem.fresh_since = current, {}
            return 0
        mem.pooled &= current
        fresh = current - mem.pooled
        mem.fresh_since = {c: mem.fresh_since.get(c, now) for c in fresh}
        return sum(1 for since in mem.fresh_since.values() if now - since < self.config.stall_after)

    def _transcript(self, pid: int, mem: _RootMemory, status: SessionStatus | None, hook: HookState) -> TranscriptState:
        assert mem.claude_dir is not None  # set by _session_of
        if mem.reader is None:
            cwd = status.cwd if status and status.cwd else _cwd_of(pid)
            if cwd is None:
                return TranscriptState(None)
            mem.reader = TranscriptReader(mem.claude_dir, cwd, self._files)
        hint = Path(hook.transcript) if hook.transcript else None
        return mem.reader.poll(status.session_id if status else None, hint)


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


def model_endpoint(watch: AgentWatch, environ: dict[str, str] | None) -> tuple[str, int] | None:
    """The model API the agent talks to: the first of its endpoint variables set (to a URL) in
    its environment, else its declared default."""
    for variable in watch.endpoint_variables:
        found = endpoint_of((environ or {}).get(variable, ""))
        if found is not None:
            return found
    return endpoint_of(watch.endpoint)


def to_endpoint(connection: Connection, endpoint: tuple[str, int] | None) -> bool:
    """Whether a connection goes to the model API: its port, and its address when the endpoint
    names one (a host name is never resolved by root: its port must do)."""
    if endpoint is None:
        return False
    host, port = endpoint
    if connection[3] != port:
        return False
    try:
        wanted = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    try:
        remote = ipaddress.ip_address(connection[2].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(remote, ipaddress.IPv6Address) and remote.ipv4_mapped:
        remote = remote.ipv4_mapped
    return remote == wanted


def _environ(pid: int) -> dict[str, str]:
    try:
        return dict(psutil.Process(pid).environ())
    except psutil.Error:
        return {}


def _home_of(environ: dict[str, str] | None, user: str) -> str:
    if environ and environ.get("HOME", "").startswith("/"):
        return environ["HOME"]
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return str(Path.home())


def _claude_dir_of(pid: int, user: str) -> Path:
    """Claude Code's config dir as the process sees it (root may read its environment)."""
    env = _environ(pid)
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
