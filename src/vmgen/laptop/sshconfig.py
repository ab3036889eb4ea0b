"""`ssh vmgen-<name>` with no flags, for people and IDEs (VS Code and Cursor Remote-SSH, JetBrains
Gateway): an entry per workspace in a file vmgen owns, included from the user's ~/.ssh/config.

- `~/.ssh/vmgen/config` is vmgen's: rebuilt whole from what this machine recorded of each workspace
  (state.py: `SshReach`, written when it came up), written to a temp file whose name starts with a
  dot and renamed over it, under a lock, so ssh never reads half of it and two vmgens never mix.
- The user's `~/.ssh/config` gets exactly one line, `Include <that file>`, added once at its TOP and
  removed by `vmgen ssh-config --uninstall`; every other byte of it stays as it was. At the top,
  because ssh takes the first value it finds for each option: a user's `Host *` block (say
  `StrictHostKeyChecking no`, another `User` or `UserKnownHostsFile`) would otherwise override the
  pinning of vmgen's entries; and an Include is no Host block, so the user's own lines after it
  apply as before (ssh restores the including file's context when the included one ends). The
  other way, `Match all` + `Include` at the end, lets those `Host *` values win for vmgen's hosts.
- A `~/.ssh/config` that is a symlink (a dotfiles manager's) is not edited: writing through would
  change the user's dotfiles repository (or fail in a read-only store), replacing it would cut the
  link. vmgen says which line to add there; once it is there (read through the link) all is well.

Every entry pins the workspace's own host key (its own known_hosts, `StrictHostKeyChecking yes`,
the key generated on this machine at launch) and logs in as vmgen's own ssh does (laptop/ssh.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..contract.names import VmPaths
from ..errors import SshConfigError
from .state import WorkspaceState, all_records, ssh_alias, write_atomically

# VS Code Remote-SSH gives a connection 15 s (`remote.SSH.connectTimeout`) and prefers a host's own
# ConnectTimeout: under that, ssh reports why it could not connect before the editor gives up.
CONNECT_TIMEOUT = 10
HEADER = (
    "# Written by vmgen: one entry per workspace, rebuilt on launch, restore, start, destroy and list.\n"
    "# Edits are lost; `vmgen ssh-config --uninstall` removes this file and its Include line.\n"
)


@dataclass(frozen=True)
class SshEntry:
    alias: str  # vmgen-<name>: the Host, and the name its host key is pinned under
    host: str
    port: int
    user: str
    known_hosts: Path
    identities: tuple[Path, ...] = ()


def _argument(value: str, *, tokens: bool) -> str:
    """One ssh_config argument. ssh splits on whitespace unless quoted, and expands %-tokens (and
    ${VAR}) in file options; a path that cannot be written safely is refused, not mangled."""
    if any(bad in value for bad in ('"', "\n", "\r", "\0")) or (tokens and "${" in value):
        raise SshConfigError(f"cannot name {value!r} in an ssh config (a quote, newline or ${{ in it)")
    if tokens:
        value = value.replace("%", "%%")
    return f'"{value}"' if any(ch.isspace() for ch in value) or not value else value


def render_entry(entry: SshEntry) -> str:
    lines = [
        f"Host {entry.alias}",
        f"  HostName {_argument(entry.host, tokens=False)}",
        f"  Port {entry.port}",
        f"  User {_argument(entry.user, tokens=False)}",
        # The key is pinned under the alias, not the address: a docker port or a cloud IP may change.
        f"  HostKeyAlias {entry.alias}",
        f"  UserKnownHostsFile {_argument(str(entry.known_hosts), tokens=True)}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  UpdateHostKeys no",
        *(f"  IdentityFile {_argument(str(path), tokens=True)}" for path in entry.identities),
        *(["  IdentitiesOnly yes"] if entry.identities else []),
        f"  ConnectTimeout {CONNECT_TIMEOUT}",
        "  ServerAliveInterval 15",
    ]
    return "\n".join(lines) + "\n"


def render_file(entries: Iterable[SshEntry]) -> str:
    return HEADER + "".join("\n" + render_entry(entry) for entry in sorted(entries, key=lambda e: e.alias))


def include_line(vmgen_config: Path) -> str:
    # An absolute path: ssh resolves a relative one, and `~`, against the passwd home, which is
    # not always the $HOME vmgen writes under.
    return f"Include {_argument(str(vmgen_config), tokens=False)}"


def _lines(text: bytes) -> list[bytes]:
    return text.splitlines(keepends=True)


def _is_line(line: bytes, wanted: str) -> bool:
    return line.rstrip(b"\r\n") == wanted.encode()


def includes(text: bytes, vmgen_config: Path) -> bool:
    """Whether the user's config already includes vmgen's file: the line vmgen writes, or one the
    user wrote naming the same file (`~/.ssh/vmgen/config`, `vmgen/config`), anywhere in it."""
    names = {str(vmgen_config), "~/.ssh/vmgen/config", "vmgen/config"}
    for raw in _lines(text):
        words = raw.decode(errors="replace").strip().replace("=", " ", 1).split()
        if len(words) >= 2 and words[0].lower() == "include" and any(w.strip('"') in names for w in words[1:]):
            return True
    return False


def with_include(text: bytes, vmgen_config: Path) -> bytes:
    """The user's config with vmgen's line on top (unchanged when it includes vmgen's file already)."""
    if includes(text, vmgen_config):
        return text
    return include_line(vmgen_config).encode() + b"\n" + text


def without_include(text: bytes, vmgen_config: Path) -> bytes:
    """The user's config without the line vmgen adds, every other byte as it was."""
    return b"".join(line for line in _lines(text) if not _is_line(line, include_line(vmgen_config)))


@dataclass(frozen=True)
class SshFiles:
    """The files of one home's ~/.ssh that this module reads and writes."""

    ssh_dir: Path

    @classmethod
    def of_home(cls, home: Path | None = None) -> SshFiles:
        return cls((home or Path.home()) / ".ssh")

    @property
    def user_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def vmgen_dir(self) -> Path:
        return self.ssh_dir / "vmgen"

    @property
    def vmgen_config(self) -> Path:
        return self.vmgen_dir / "config"

    @property
    def created_mark(self) -> Path:
        """Present when vmgen made ~/.ssh/config itself: the uninstall then removes it whole."""
        return self.vmgen_dir / ".created-ssh-config"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.vmgen_dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.vmgen_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a rewrite of a small file: never long
            yield
        finally:
            os.close(fd)

    def install_include(self) -> str:
        """Add the Include line on top of ~/.ssh/config (made, mode 600, when missing). Returns a
        line for the user when it could not be added (a symlinked config), else ""."""
        with self._locked():
            path = self.user_config
            if path.is_symlink():
                try:
                    current = path.read_bytes()
                except OSError:
                    current = b""
                if includes(current, self.vmgen_config):
                    return ""
                return (
                    f"{path} is a symlink (to {os.readlink(path)}): vmgen does not edit it; for `ssh vmgen-<name>`, "
                    f"add this line at its top: {include_line(self.vmgen_config)}"
                )
            try:
                current = path.read_bytes()
                mode = stat.S_IMODE(path.stat().st_mode)
                created = False
            except FileNotFoundError:
                current, mode, created = b"", 0o600, True
            except OSError as exc:
                raise SshConfigError(f"cannot read {path}: {exc.strerror}") from None
            changed = with_include(current, self.vmgen_config)
            if changed == current:
                return ""
            if created:
                self.created_mark.write_bytes(b"")
            write_atomically(path, changed, mode)
            return ""

    def uninstall(self) -> list[str]:
        """Take the Include line out of ~/.ssh/config and remove vmgen's file: what was done, said."""
        done: list[str] = []
        with self._locked():
            path = self.user_config
            if path.is_symlink():
                if includes(path.read_bytes() if path.exists() else b"", self.vmgen_config):
                    done.append(f"{path} is a symlink: remove the Include of {self.vmgen_config} from it yourself")
            elif path.is_file():
                current = path.read_bytes()
                remaining = without_include(current, self.vmgen_config)
                if remaining != current:
                    if not remaining and self.created_mark.exists():
                        path.unlink()
                        done.append(f"removed {path} (vmgen had made it for its line)")
                    else:
                        write_atomically(path, remaining, stat.S_IMODE(path.stat().st_mode))
                        done.append(f"removed the Include line from {path}")
            if self.vmgen_config.exists():
                self.vmgen_config.unlink()
                done.append(f"removed {self.vmgen_config}")
            self.created_mark.unlink(missing_ok=True)
        (self.vmgen_dir / ".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.vmgen_dir.rmdir()  # only if empty: nothing of the user's is removed
        return done

    def write_entries(self, entries: Iterable[SshEntry]) -> bool:
        """vmgen's file with exactly these entries; True when it changed."""
        text = render_file(entries).encode()
        with self._locked():
            try:
                if self.vmgen_config.read_bytes() == text:
                    return False
            except FileNotFoundError:
                pass
            write_atomically(self.vmgen_config, text, 0o600)
            return True


def recorded_entries(root: Path | None = None) -> list[SshEntry]:
    """An entry for each workspace this machine recorded as reachable (state.py)."""
    entries = []
    for record in all_records(root):
        state = WorkspaceState(record.name, root)
        reach = state.reach()
        if reach is not None:
            endpoint = reach.endpoint
            entries.append(
                SshEntry(
                    state.host_alias, endpoint.host, endpoint.port, endpoint.user, state.known_hosts, reach.identities
                )
            )
    return entries


def sync(files: SshFiles | None = None, root: Path | None = None, *, create: bool = True) -> bool:
    """The one way vmgen's file changes: rebuilt from the recorded workspaces. With create=False
    (a destroy, a `vmgen list`) a missing file stays missing: a user who opted out keeps no file."""
    files = files or SshFiles.of_home()
    if not create and not files.vmgen_config.exists():
        return False
    return files.write_entries(recorded_entries(root))


def connect_lines(name: str, repo_dir: str = "") -> list[tuple[str, str]]:
    """How to reach the workspace from a terminal and each IDE, through its entry."""
    alias = ssh_alias(name)
    folder = repo_dir or str(VmPaths().repo_dir(name))
    return [
        ("ssh", f"ssh {alias}"),
        ("VS Code", f"code --remote ssh-remote+{alias} {folder}"),
        ("Cursor", f"cursor --remote ssh-remote+{alias} {folder}"),
        ("Gateway", f"JetBrains Gateway, SSH connection to host {alias} (it reads ~/.ssh/config), project {folder}"),
    ]
