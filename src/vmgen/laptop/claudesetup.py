"""The laptop's Claude Code setup, planned for the agent user on a workspace (`vmgen sync-config`,
and each launch with `sync_config` on).

What is copied: `~/.claude/CLAUDE.md`, `commands/`, `agents/`, `skills/`, `output-styles/`, the
settings (hooks among them) of `~/.claude/settings.json`, and the user-scope MCP servers of
`~/.claude.json` (its top-level `mcpServers`). Absolute laptop paths in them (the laptop's
~/.claude, then its home) become the VM's (/home/agent/.claude, /home/agent).

What never is: credentials (`.credentials.json` anywhere; settings and MCP `env` values whose
names look like keys, tokens or secrets; MCP `headers` that carry them; the credential helpers
of settings.json, which are laptop programs that hand out keys), the folders of a session's
state (they are never walked: only the folders above are), what `sync_exclude` names (globs on
the path below ~/.claude), anything that resolves outside ~/.claude (every path is resolved with
realpath: a symlink to ~/.ssh/id_ed25519 ships nothing), anything but regular files and folders
(a FIFO is never opened for reading), and files past the size cap.

vmgen's own hooks are in Claude Code's managed settings (root's file, laptop/agents.py
`managed_settings`): the agent's settings.json, merged freely here, cannot remove them (Claude
Code keeps managed hooks even under a user's `disableAllHooks`). The environment variables that
turn hooks off altogether or move the configuration away are not copied either.

The plan is data (`plan_sync` reads, writes nothing); `setup_tar` makes the one tar stream that
carries it: regular files and folders with relative names, nothing else. The VM's side is
`UNPACK_SCRIPT`, run as the agent (laptop/handover.py `ship_claude_setup`). An MCP entry is
data: nothing here runs its command.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contract.names import VM

# What is copied from ~/.claude: the one file, then the folders (walked).
COPIED_FILES = ("CLAUDE.md",)
COPIED_FOLDERS = ("commands", "agents", "skills", "output-styles")
# Never copied, whatever sync_exclude says (the folders are never walked; named for --dry-run).
NEVER_COPIED = (".credentials.json", "projects/", "sessions/", "todos/", "statsig/", "shell-snapshots/")
CREDENTIAL_FILES = frozenset({".credentials.json"})
SIZE_CAP = 20 * 1024 * 1024  # bytes of files in all

# settings.json keys that are laptop programs handing out credentials, or vmgen's own.
DROPPED_SETTINGS = {
    "apiKeyHelper": "a laptop program that hands out an API key",
    "awsAuthRefresh": "a laptop program that refreshes AWS credentials",
    "awsCredentialExport": "a laptop program that exports AWS credentials",
    "otelHeadersHelper": "a laptop program that hands out telemetry credentials",
    "skipDangerousModePermissionPrompt": "vmgen sets it",
}
# Environment variables vmgen sets itself, or that would turn off or move what vmgen relies on.
DROPPED_ENV = {
    "ANTHROPIC_BASE_URL": "vmgen delivers its own (the anthropic_base_url setting)",
    "DISABLE_AUTOUPDATER": "vmgen sets it (the version stays pinned)",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "vmgen sets it",
    "CLAUDE_CONFIG_DIR": "would move the configuration away from ~/.claude",
    "CLAUDE_CODE_SIMPLE": "would turn hooks off",
    "CLAUDE_CODE_SAFE_MODE": "would turn hooks off",
}
_SECRET_NAME = re.compile(
    r"(^ANTHROPIC_API_KEY$|_TOKEN$|_KEY$|_SECRET$|_PASSWORD$|^TOKEN$|^KEY$|^SECRET$)", re.IGNORECASE
)
_SECRET_HEADER = re.compile(r"(authorization|token|key|secret|cookie|password)", re.IGNORECASE)


@dataclass(frozen=True)
class PathRewrite:
    """Absolute laptop paths to the VM's: ~/.claude first (it may live apart from the home)."""

    laptop_home: str
    laptop_claude: str
    vm_home: str = str(VM.home)
    vm_claude: str = str(VM.claude_dir)

    def apply(self, text: str) -> tuple[str, int]:
        """`text` with each laptop path replaced where it is a whole path prefix (/home/al is not
        a prefix of /home/alice), and how many were."""
        total = 0
        for laptop, vm in ((self.laptop_claude, self.vm_claude), (self.laptop_home, self.vm_home)):
            if laptop in ("", "/"):
                continue
            text, count = re.subn(re.escape(laptop) + r"(?![\w.-])", vm.replace("\\", "\\\\"), text)
            total += count
        return text, total

    def apply_json(self, value: Any) -> tuple[Any, int]:
        """The same on every string (keys too) of a JSON value."""
        if isinstance(value, str):
            return self.apply(value)
        if isinstance(value, list):
            items = [self.apply_json(item) for item in value]
            return [item for item, _ in items], sum(count for _, count in items)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            total = 0
            for key, item in value.items():
                new_key, key_count = self.apply(key)
                out[new_key], count = self.apply_json(item)
                total += key_count + count
            return out, total
        return value, 0


@dataclass(frozen=True)
class SyncFile:
    path: str  # below ~/.claude, with / between the parts
    content: bytes
    executable: bool
    rewrites: int  # laptop paths replaced in it


@dataclass(frozen=True)
class McpServer:
    name: str
    config: dict[str, Any]  # as it goes into the agent's ~/.claude.json
    command: str  # what the VM must have for a stdio server; "" for a remote one (http, sse)
    rewrites: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class SyncPlan:
    files: tuple[SyncFile, ...] = ()
    settings: dict[str, Any] | None = None  # merged over the agent's settings.json; None: none
    settings_rewrites: int = 0
    mcp_servers: tuple[McpServer, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()
    cap: int = SIZE_CAP

    @property
    def total_bytes(self) -> int:
        return sum(len(f.content) for f in self.files)

    @property
    def empty(self) -> bool:
        return not self.files and self.settings is None and not self.mcp_servers

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands of the stdio MCP servers, each once, for a check on the VM."""
        return tuple(dict.fromkeys(server.command for server in self.mcp_servers if server.command))


@dataclass
class _Collected:
    files: list[SyncFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_sync(
    home: Path, excludes: Iterable[str] = (), cap: int = SIZE_CAP, claude_dir: Path | None = None
) -> SyncPlan:
    """What `vmgen sync-config` copies from the laptop whose home is `home`. Reads, never writes,
    and runs nothing."""
    claude_dir = claude_dir or home / ".claude"
    rewrite = PathRewrite(str(home), str(claude_dir))
    excludes = tuple(excludes)
    found = _Collected()
    if claude_dir.is_dir():
        root = os.path.realpath(claude_dir)
        candidates: list[tuple[str, str, int]] = []
        for name in (*COPIED_FILES, *COPIED_FOLDERS):
            if os.path.lexists(claude_dir / name):
                _visit(claude_dir, root, name, excludes, candidates, found, set())
        _read_files(candidates, rewrite, cap, found)
        outside = [skipped.path for skipped in found.skipped if skipped.reason.startswith("resolves outside")]
        if outside:
            found.warnings.append(f"not copied, they resolve outside ~/.claude: {', '.join(outside)}")
    settings, settings_rewrites = _settings(claude_dir / "settings.json", rewrite, found.warnings)
    servers = _mcp_servers(home / ".claude.json", rewrite, found.warnings)
    return SyncPlan(
        files=tuple(found.files),
        settings=settings,
        settings_rewrites=settings_rewrites,
        mcp_servers=servers,
        skipped=tuple(found.skipped),
        warnings=tuple(found.warnings),
        cap=cap,
    )


def _excluded(rel: str, excludes: tuple[str, ...]) -> str:
    parts = rel.split("/")
    for pattern in excludes:
        for depth in range(1, len(parts) + 1):
            if fnmatch.fnmatchcase("/".join(parts[:depth]), pattern.rstrip("/")):
                return pattern
    return ""


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _visit(
    claude_dir: Path,
    root: str,
    rel: str,
    excludes: tuple[str, ...],
    candidates: list[tuple[str, str, int]],
    found: _Collected,
    walked: set[str],
) -> None:
    """Collect (rel, realpath, size) of the regular files at or below `rel`."""
    pattern = _excluded(rel, excludes)
    if pattern:
        found.skipped.append(Skipped(rel, f"sync_exclude {pattern!r}"))
        return
    if rel.rsplit("/", 1)[-1] in CREDENTIAL_FILES:
        found.skipped.append(Skipped(rel, "credentials"))
        return
    real = os.path.realpath(claude_dir / rel)
    if not _inside(real, root):
        found.skipped.append(Skipped(rel, f"resolves outside ~/.claude (to {real})"))
        return
    try:
        info = os.stat(real)
    except OSError as exc:
        found.skipped.append(Skipped(rel, f"unreadable ({exc.strerror})"))
        return
    if stat.S_ISDIR(info.st_mode):
        if real in walked:  # a link back to a folder above: walked once
            found.skipped.append(Skipped(rel, "a link to a folder already copied"))
            return
        try:
            children = sorted(os.listdir(real))
        except OSError as exc:
            found.skipped.append(Skipped(rel, f"unreadable ({exc.strerror})"))
            return
        for child in children:
            _visit(claude_dir, root, f"{rel}/{child}", excludes, candidates, found, walked | {real})
    elif stat.S_ISREG(info.st_mode):
        candidates.append((rel, real, info.st_size))
    else:
        found.skipped.append(Skipped(rel, "not a regular file"))


def _read_files(candidates: list[tuple[str, str, int]], rewrite: PathRewrite, cap: int, found: _Collected) -> None:
    total = 0
    over: list[str] = []
    for rel, real, size in candidates:
        if total + size > cap:
            over.append(rel)
            found.skipped.append(Skipped(rel, f"over the {_size(cap)} cap ({_size(size)})"))
            continue
        content = _read_regular(real, size)
        if content is None:
            found.skipped.append(Skipped(rel, "not a regular file, or it changed while read"))
            continue
        rewrites = 0
        try:
            text, rewrites = rewrite.apply(content.decode())
            content = text.encode()
        except UnicodeDecodeError:
            pass  # not text: copied as it is
        total += len(content)
        executable = bool(os.stat(real).st_mode & 0o111)
        found.files.append(SyncFile(rel, content, executable, rewrites))
    if over:
        found.warnings.append(
            f"not copied, past the {_size(cap)} vmgen copies in all: {', '.join(over)}"
            " (sync_exclude them to quiet this)"
        )


def _read_regular(real: str, size: int) -> bytes | None:
    """The file's bytes, if it still is a regular file of at most `size` bytes (O_NONBLOCK: a
    FIFO swapped in is never waited on; O_NOFOLLOW: realpath resolved every link already)."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > size:
            return None
        return handle.read(size + 1)[:size]


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MB" if count >= 1024 * 1024 else f"{count} bytes"


def _read_json(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        warnings.append(f"{path} not copied: not readable JSON ({exc})")
        return None
    if not isinstance(value, dict):
        warnings.append(f"{path} not copied: not a JSON object")
        return None
    return value


def _clean_env(env: Any, where: str, warnings: list[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    if not isinstance(env, dict):
        return {}
    kept: dict[str, str] = {}
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            warnings.append(f"{where}: {name} not copied (it looks like a credential)")
        elif extra and name in extra:
            warnings.append(f"{where}: {name} not copied ({extra[name]})")
        else:
            kept[name] = value
    return kept


def _settings(path: Path, rewrite: PathRewrite, warnings: list[str]) -> tuple[dict[str, Any] | None, int]:
    settings = _read_json(path, warnings)
    if settings is None:
        return None, 0
    kept: dict[str, Any] = {}
    for key, value in settings.items():
        if key in DROPPED_SETTINGS:
            warnings.append(f"settings.json: {key} not copied ({DROPPED_SETTINGS[key]})")
        elif key == "env":
            kept["env"] = _clean_env(value, "settings.json env", warnings, DROPPED_ENV)
        else:
            kept[key] = value
    rewritten, count = rewrite.apply_json(kept)
    return rewritten, count


def _mcp_servers(path: Path, rewrite: PathRewrite, warnings: list[str]) -> tuple[McpServer, ...]:
    state = _read_json(path, warnings)
    servers = (state or {}).get("mcpServers")
    if not isinstance(servers, dict):
        return ()
    out: list[McpServer] = []
    for name, entry in sorted(servers.items()):
        if not isinstance(entry, dict):
            warnings.append(f"MCP server {name}: not copied (its entry is not an object)")
            continue
        config = dict(entry)
        where = f"MCP server {name}"
        if "env" in config:
            config["env"] = _clean_env(config["env"], f"{where} env", warnings)
        if isinstance(config.get("headers"), dict):
            headers = config["headers"]
            for header in [h for h in headers if _SECRET_HEADER.search(h)]:
                warnings.append(f"{where}: header {header} not copied (it looks like a credential)")
                del headers[header]
        rewritten, count = rewrite.apply_json(config)
        stdio = rewritten.get("type", "stdio") == "stdio"
        command = rewritten.get("command", "") if stdio and isinstance(rewritten.get("command"), str) else ""
        out.append(McpServer(name, rewritten, command, count))
    return tuple(out)


# --- the stream ------------------------------------------------------------------------------

FILES_FOLDER = "claude"  # in the tar: the files, below it as below ~/.claude
MERGE_DOCUMENT = "merge.json"  # in the tar: the settings and MCP servers to merge


def merge_document(plan: SyncPlan) -> dict[str, Any]:
    return {
        "settings": plan.settings,
        "mcpServers": {server.name: server.config for server in plan.mcp_servers},
    }


def setup_tar(plan: SyncPlan, mtime: int = 0) -> bytes:
    """The plan as one tar: folders and regular files with relative names, owned by nobody in
    particular (the agent's tar gives them the agent's uid), and the merge document."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        folders = sorted(
            {
                "/".join([FILES_FOLDER, *parts[:depth]])
                for f in plan.files
                for parts in [f.path.split("/")[:-1]]
                for depth in range(len(parts) + 1)
            }
        )
        for folder in folders:
            archive.addfile(_member(folder, tarfile.DIRTYPE, 0o700, 0, mtime))
        for f in plan.files:
            mode = 0o700 if f.executable else 0o600
            member = _member(f"{FILES_FOLDER}/{f.path}", tarfile.REGTYPE, mode, len(f.content), mtime)
            archive.addfile(member, io.BytesIO(f.content))
        document = json.dumps(merge_document(plan), indent=2).encode()
        archive.addfile(_member(MERGE_DOCUMENT, tarfile.REGTYPE, 0o600, len(document), mtime), io.BytesIO(document))
    return buffer.getvalue()


def _member(name: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    if name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"not a relative name: {name!r}")
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# Run as the agent with the tar on stdin: unpacked into a folder of its own below ~/.claude (the
# same file system, so each file is renamed into place whole), the files moved in, the settings
# merged over the agent's settings.json (its other keys kept, `env` merged name by name) and the
# MCP servers into ~/.claude.json's `mcpServers` (its other keys and servers kept). GNU tar
# refuses absolute names and `..` by itself; the tar holds neither (setup_tar).
UNPACK_PROGRAM = r"""
import json, os, sys
stage = sys.argv[1]
home = os.path.expanduser("~")
claude = os.path.join(home, ".claude")

def read(path):
    try:
        with open(path) as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

def write(path, value):
    temporary = path + ".vmgen-sync"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)

files = os.path.join(stage, "claude")
for folder, _, names in os.walk(files):
    target = os.path.normpath(os.path.join(claude, os.path.relpath(folder, files)))
    os.makedirs(target, mode=0o700, exist_ok=True)
    for name in names:
        os.replace(os.path.join(folder, name), os.path.join(target, name))

with open(os.path.join(stage, "merge.json")) as handle:
    merge = json.load(handle)
if merge.get("settings") is not None:
    path = os.path.join(claude, "settings.json")
    current = read(path)
    merged = {**current, **merge["settings"]}
    env = current.get("env") if isinstance(current.get("env"), dict) else {}
    merged["env"] = {**env, **merge["settings"].get("env", {})}
    write(path, merged)
if merge.get("mcpServers"):
    path = os.path.join(home, ".claude.json")
    state = read(path)
    servers = state.get("mcpServers") if isinstance(state.get("mcpServers"), dict) else {}
    state["mcpServers"] = {**servers, **merge["mcpServers"]}
    write(path, state)
"""

UNPACK_SCRIPT = (
    "set -eu; umask 077; mkdir -p ~/.claude; "
    "stage=$(mktemp -d ~/.claude/.vmgen-sync.XXXXXX); trap 'rm -rf \"$stage\"' EXIT; "
    'tar -x -f - -C "$stage" --no-same-owner --no-same-permissions --no-overwrite-dir; '
    'python3 -I -c "$1" "$stage"'
)

# Prints each of its arguments that is no command the agent's login shell finds.
MISSING_COMMANDS_SCRIPT = 'for c in "$@"; do command -v -- "$c" >/dev/null 2>&1 || printf "%s\\n" "$c"; done'
