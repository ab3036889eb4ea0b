"""Workspace file activity: recursive inotify, with a bounded mtime scan past the watch limit.

inotify costs nothing between events, so a 200 000-file tree is watched for the price of one
watch per directory. When the per-user watch limit (fs.inotify.max_user_watches) runs out, the
directories left over are scanned round-robin by mtime, a bounded number of entries per tick,
so the cost stays flat however large the tree.

The tree is the agent user's and the watchdog runs as root: directories are opened one component
at a time without following symlinks (a directory swapped for a link to /root is not entered),
and watches are added through the descriptor of the directory just opened (/proc/self/fd/N),
never through a path the agent could redirect between the check and the use.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)

DEFAULT_IGNORE = (".git/objects/**", "node_modules/**", "__pycache__/**", "*.swp", ".vmgen/**")
# No DONT_FOLLOW: watches are added through /proc/self/fd/N, the kernel's own link to a directory
# already opened without following anything, and that link must be followed.
MASK = (
    flags.CREATE
    | flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE
    | flags.EXCL_UNLINK
    | flags.ONLYDIR
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 128  # deeper directories are not watched: each level holds a descriptor while walking


def open_dir(path: str) -> int:
    """A descriptor of the directory at `path` (absolute), reached without following any symlink
    in any component; OSError if there is none."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if part in (".", ".."):
                raise NotADirectoryError(path)
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def list_dir(fd: int) -> list[tuple[str, bool, os.stat_result | None]]:
    """(name, is a real directory, lstat or None) for each entry of an open directory."""
    out = []
    with os.scandir(fd) as it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                st = None
            out.append((entry.name, st is not None and stat.S_ISDIR(st.st_mode), st))
    return out


class IgnoreRules:
    """Globs against paths relative to the root: `*` stays within a name, `**` crosses '/'.

    A pattern matches at any depth (`node_modules/**` also covers `web/node_modules/x`) unless
    it starts with '/', which anchors it to the root.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        parts = [("" if p.startswith("/") else "(?:.*/)?") + _glob_regex(p.lstrip("/")) for p in patterns if p.strip()]
        self._re = re.compile("^(?:" + "|".join(parts) + ")$") if parts else None

    def match(self, rel: str, is_dir: bool = False) -> bool:
        if self._re is None:
            return False
        # A directory is ignored when everything inside it would be ("node_modules/" ~ "node_modules/**").
        return bool(self._re.match(rel) or (is_dir and self._re.match(rel + "/")))


def _glob_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            ch = pattern[i]
            out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
            i += 1
    return "".join(out)


@dataclass
class MtimeScanner:
    """Round-robin scan of directories inotify could not cover, in bounded slices per tick.

    A slice is at least `budget` entries, and large enough that the whole set is seen within
    `window_ticks` ticks: a change anywhere is noticed within that time however large the tree
    (with 30 s ticks and the default 10, within 5 minutes). Each directory is remembered as one
    hash of its entries' (name, mtime, size), not per file, so memory stays small; a change
    counts once per changed directory.
    """

    rules: IgnoreRules
    root: str
    budget: int = 2000
    window_ticks: int = 10
    _queue: list[str] = field(default_factory=list)
    _known: dict[str, int | None] = field(default_factory=dict)  # None: not scanned yet
    _entries: dict[str, int] = field(default_factory=dict)  # per directory, at its last scan
    _total: int = 0
    _cursor: int = 0

    @property
    def slice(self) -> int:
        """Entries stat'ed this tick: the whole set over the window (folders not scanned yet
        count as the average of those that were)."""
        unscanned = len(self._queue) - len(self._entries)
        average = self._total / len(self._entries) if self._entries else self.budget
        estimate = self._total + unscanned * average
        return max(self.budget, int(-(-estimate // max(1, self.window_ticks))))

    def add(self, path: str) -> None:
        if path not in self._known:
            self._known[path] = None
            self._queue.append(path)

    def __len__(self) -> int:
        return len(self._queue)

    def poll(self) -> int:
        changes = spent = 0
        budget = self.slice
        for _ in range(len(self._queue)):  # each directory at most once per tick
            if not self._queue or spent >= budget:
                break
            self._cursor %= len(self._queue)
            path = self._queue[self._cursor]
            cost, changed, gone = self._scan(path)
            spent, changes = spent + cost, changes + changed
            self._total += cost - self._entries.get(path, 0)
            self._entries[path] = cost
            if gone:  # removed since: forget it (its parent's change is counted)
                del self._queue[self._cursor], self._known[path]
                self._total -= self._entries.pop(path, 0)
            else:
                self._cursor += 1
        return changes

    def _scan(self, path: str) -> tuple[int, bool, bool]:
        """(entries stat'ed, changed since the last scan, directory gone)."""
        try:
            fd = open_dir(path)
        except OSError:
            return 1, False, True
        try:
            entries = list_dir(fd)
        except OSError:
            return 1, False, True
        finally:
            os.close(fd)
        sig = []
        for name, is_dir, st in entries:
            entry_path = os.path.join(path, name)
            if self.rules.match(relative(self.root, entry_path), is_dir):
                continue
            if is_dir:
                self.add(entry_path)
            if st is None:
                continue
            sig.append((name, st.st_mtime_ns, st.st_size))
        digest = hash(tuple(sorted(sig)))
        previous, self._known[path] = self._known.get(path), digest
        return max(1, len(entries)), previous is not None and previous != digest, False


def relative(root: str, path: str) -> str:
    """Cheaper than os.path.relpath: every path here was built by joining onto `root`."""
    return path[len(root) + 1 :] if path.startswith(root + os.sep) else ""


class FileWatcher:
    """`poll()` returns how many paths changed since the last call, without blocking."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        ignore: Iterable[str] = DEFAULT_IGNORE,
        max_watches: int | None = None,
        scan_budget: int = 2000,
        scan_window_ticks: int = 10,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.rules = IgnoreRules(ignore)
        self.max_watches = max_watches  # an artificial limit, for tests and benchmarks
        self.scanner = MtimeScanner(self.rules, self.root, scan_budget, scan_window_ticks)
        self._inotify: INotify | None = None
        self._wds: dict[int, str] = {}
        self._paths: dict[str, int] = {}
        self._limit_logged = False

    @property
    def watched_dirs(self) -> int:
        return len(self._wds)

    @property
    def scanned_dirs(self) -> int:
        return len(self.scanner)

    def start(self) -> bool:
        """Set up the watches; False while the root does not exist (tried again each poll)."""
        if self._inotify is not None:
            return True
        try:
            os.close(open_dir(self.root))
        except OSError:
            return False  # not there yet (or a symlink, which is never watched)
        self._inotify = INotify(nonblocking=True)
        self._add_tree(self.root)
        return True

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._wds.clear()
        self._paths.clear()

    def poll(self) -> int:
        if not self.start():
            return 0
        assert self._inotify is not None
        changed: set[str] = set()
        for ev in self._inotify.read(timeout=0):
            self._event(ev.wd, ev.mask, ev.name, changed)
        return len(changed) + self.scanner.poll()

    def _event(self, wd: int, mask: int, name: str, changed: set[str]) -> None:
        if mask & flags.Q_OVERFLOW:  # events were lost: count it, re-walk for unwatched dirs
            changed.add("<overflow>")
            self._add_tree(self.root)
            return
        if mask & flags.IGNORED:  # the kernel dropped the watch (directory deleted or moved)
            path = self._wds.pop(wd, None)
            if path is not None and self._paths.get(path) == wd:
                del self._paths[path]
            return
        folder = self._wds.get(wd)
        if folder is None:
            return
        path = os.path.join(folder, name) if name else folder
        is_dir = bool(mask & flags.ISDIR)
        if self.rules.match(relative(self.root, path), is_dir):
            return
        changed.add(path)
        if is_dir and mask & (flags.CREATE | flags.MOVED_TO):
            # Files may already be inside before the watch exists: the walk counts them.
            changed.update(self._add_tree(path, collect=10_000))
        elif is_dir and mask & flags.MOVED_FROM:
            self._forget(path)

    def _add_tree(self, top: str, collect: int = 0) -> list[str]:
        """Watch `top` and every directory below it; return up to `collect` files met on the way
        (a new directory may be filled before its watch exists). Set-up collects none: a list of
        every path in a 200 000-file tree would double the watcher's memory.

        Depth first, each directory opened relative to its parent's descriptor (no symlink
        followed), so at most one descriptor per level is open."""
        found: list[str] = []
        try:
            top_fd = open_dir(top)
        except OSError:
            return found  # vanished, or a symlink: nothing to watch there
        # (path, descriptor, subdirectories still to visit)
        stack: list[tuple[str, int, list[str]]] = []
        self._enter(top, top_fd, stack, found, collect)
        while stack:
            path, fd, todo = stack[-1]
            if not todo:
                os.close(fd)
                stack.pop()
                continue
            name = todo.pop()
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # vanished, or swapped for a symlink since it was listed
            if len(stack) >= MAX_DEPTH:
                os.close(child)
                continue
            self._enter(os.path.join(path, name), child, stack, found, collect)
        return found

    def _enter(
        self, path: str, fd: int, stack: list[tuple[str, int, list[str]]], found: list[str], collect: int
    ) -> None:
        """Watch the open directory `fd`; push it with its subdirectories, or close it."""
        outcome = self._watch(path, fd)
        if outcome == "limit":
            self.scanner.add(path)  # past the limit: this subtree is scanned instead
        if outcome != "ok":
            os.close(fd)
            return
        subdirs: list[str] = []
        try:
            entries = list_dir(fd)
        except OSError:
            entries = []
        for name, is_dir, _ in entries:
            entry_path = os.path.join(path, name)
            if (is_dir or len(found) < collect) and not self.rules.match(relative(self.root, entry_path), is_dir):
                (subdirs if is_dir else found).append(name if is_dir else entry_path)
        stack.append((path, fd, subdirs))

    def _watch(self, path: str, fd: int) -> str:
        """ "ok", "limit" (no watch left: scan it) or "gone" (vanished, not a dir, no access)."""
        assert self._inotify is not None
        if path in self._paths:
            return "ok"
        if self.max_watches is not None and len(self._wds) >= self.max_watches:
            return self._limit_hit(path)
        try:
            wd = self._inotify.add_watch(f"/proc/self/fd/{fd}", MASK)
        except OSError as exc:
            return self._limit_hit(path) if exc.errno == errno.ENOSPC else "gone"
        self._wds[wd], self._paths[path] = path, wd
        return "ok"

    def _limit_hit(self, path: str) -> str:
        if not self._limit_logged:
            self._limit_logged = True
            log.warning(
                "inotify watch limit reached after %d directories (raise "
                "fs.inotify.max_user_watches); scanning the rest by mtime, %d entries "
                "per tick, starting at %s",
                len(self._wds),
                self.scanner.budget,
                path,
            )
        return "limit"

    def _forget(self, top: str) -> None:
        assert self._inotify is not None
        prefix = top + os.sep
        for path in [p for p in self._paths if p == top or p.startswith(prefix)]:
            wd = self._paths.pop(path)
            self._wds.pop(wd, None)
            with contextlib.suppress(OSError):  # already gone with the directory
                self._inotify.rm_watch(wd)
