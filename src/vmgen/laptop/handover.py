"""After boot, the CLI hands the workspace what must never travel in user-data.

Credentials go over SSH into files only the agent user can read; a local source directory is
uploaded as a tar stream. Finally a marker file lets systemd start the agent's session.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from ..contract.names import VM, VmPaths
from ..errors import RemoteCommandFailed, VmgenError
from .agents import Agent
from .claudesetup import MISSING_COMMANDS_SCRIPT, UNPACK_PROGRAM, UNPACK_SCRIPT, SyncPlan, setup_tar
from .devcontainer import UpFollower
from .ssh import SSHTarget, remote, run, stream, write_file

# The most `devcontainer up` may take at launch (a cold build pulls packages in the Dockerfile).
DEVCONTAINER_UP_SECONDS = 1800


@dataclass(frozen=True)
class Handover:
    agent_env: dict[str, str]
    claude_credentials: bytes | None = None
    gitconfig: bytes | None = None
    upload_from: Path | None = None
    repo_dir: str = ""
    # Claude Code asks once whether to use an API key found in its environment; the answer is
    # stored as the key's last 20 characters in ~/.claude.json, as Claude Code itself does.
    approve_claude_api_key: str = ""
    # The laptop's Claude Code setup (laptop/claudesetup.py), in place before the agent starts.
    claude_setup: SyncPlan | None = None
    # git push to the one GitHub repository (deploykeys.py): the deploy key's private half, and
    # the ssh URL the repository's pushes go to (its clone may be over https).
    deploy_key: bytes | None = None
    push_url: str = ""
    # The repository's dev container: brought up by the agent once the repository is there and
    # before the agent starts, its phases said through `progress` (docs/devcontainers.md).
    devcontainer: bool = False
    progress: Callable[[str], None] = field(default=lambda message: None, compare=False)


_APPROVE_KEY = """
import json, os, sys
path = sys.argv[1]
state = json.load(open(path)) if os.path.exists(path) else {}
responses = state.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
suffix = sys.stdin.read().strip()
if suffix not in responses.setdefault("approved", []):
    responses["approved"].append(suffix)
fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as handle:
    json.dump(state, handle, indent=2)
os.replace(path + ".tmp", path)
"""


def agent_env_file(values: dict[str, str]) -> bytes:
    """A file the agent's start script sources with `set -a`; values are shell-quoted."""
    lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(values.items()) if value]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def rewrite_home(content: bytes, laptop_home: Path) -> bytes:
    """Paths inside copied config point at the laptop's home; the VM's is /home/agent."""
    return content.replace(str(laptop_home).encode(), str(VM.home).encode())


def deliver(target: SSHTarget, handover: Handover) -> None:
    env = agent_env_file(handover.agent_env)
    if env:
        write_file(target, str(VM.agent_env), env)
    if handover.claude_credentials is not None:
        write_file(target, str(VM.claude_dir / ".credentials.json"), handover.claude_credentials)
    if handover.gitconfig is not None:
        write_file(target, str(VM.home / ".gitconfig"), handover.gitconfig, mode="644")
    if handover.approve_claude_api_key:
        approve_claude_api_key(target, handover.approve_claude_api_key)
    if handover.deploy_key is not None:
        deliver_deploy_key(target, handover.deploy_key, handover.push_url, handover.repo_dir)
    if handover.upload_from is not None:
        upload_tree(target, handover.upload_from, handover.repo_dir)
    if handover.claude_setup is not None and not handover.claude_setup.empty:
        ship_claude_setup(target, handover.claude_setup)
    if handover.devcontainer:
        bring_up_devcontainer(target, handover.progress)
    mark = VM.handover_mark
    run(target, ["sh", "-c", f"mkdir -p {shlex.quote(str(mark.parent))} && touch {shlex.quote(str(mark))}"])


def claude_key_to_approve(agent: Agent, values: Mapping[str, str]) -> str:
    """The key whose "use this API key?" question is answered ahead (approve_claude_api_key):
    Claude Code's own, when `agent` is Claude Code; "" otherwise."""
    return values.get("ANTHROPIC_API_KEY", "") if agent.name == "claude" else ""


def approve_claude_api_key(target: SSHTarget, key: str, home: PurePath = VM.home) -> None:
    """Claude Code's answer to "use this API key?" (its last 20 characters), in ~/.claude.json."""
    run(target, ["python3", "-c", _APPROVE_KEY, str(home / ".claude.json")], input=key[-20:].encode())


# Run as the agent (vmgen's SSH login): the lines of agent_env_file on stdin are added to the env
# file for the variables it does not define yet (what the workspace was handed stays as it is),
# written whole and renamed into place, mode 0600. Then says whether the agent has a credential:
# one of its variables defined there, or a login file of its own. Values never leave stdin.
_ADD_CREDENTIALS = """
import os, re, shlex, sys
env_path, *rest = sys.argv[1:]
cut = rest.index("--")
variables, files = rest[:cut], rest[cut + 1:]
def defined(text):
    try:
        return {word.split("=", 1)[0] for word in shlex.split(text) if "=" in word}
    except ValueError:
        return set(re.findall(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)=", text))
try:
    with open(env_path, "rb") as handle:
        have = handle.read().decode()
except FileNotFoundError:
    have = ""
names = defined(have)
given = sys.stdin.read()
added = [line for line in shlex.split(given) if line.split("=", 1)[0] not in names] if given else []
if added:
    text = have if not have or have.endswith("\\n") else have + "\\n"
    text += "".join(word.split("=", 1)[0] + "=" + shlex.quote(word.split("=", 1)[1]) + "\\n" for word in added)
    os.makedirs(os.path.dirname(env_path), mode=0o700, exist_ok=True)
    fd = os.open(env_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(env_path + ".tmp", env_path)
    names |= {word.split("=", 1)[0] for word in added}
for word in added:
    print("added " + word.split("=", 1)[0])
login = any(os.path.isfile(path) and os.path.getsize(path) > 0 for path in files)
print("credentials " + ("yes" if login or any(name in names for name in variables) else "no"))
"""


@dataclass(frozen=True)
class CredentialsGiven:
    added: tuple[str, ...]  # the variables added to the workspace's env file (names only)
    present: bool  # the agent has a credential there now (a variable of its own, or its login)


def add_agent_credentials(
    target: SSHTarget, agent: Agent, values: dict[str, str], paths: VmPaths = VM
) -> CredentialsGiven:
    """For a further session of another agent (`vmgen session new --agent`): `values` of its key
    variables join the workspace's env file, which agent-run loads for every window, as the launch
    hands over the workspace's own agent's (through SSH stdin, never argv, the file 0600); the
    variables the workspace has are kept. `values` empty: only asks whether it has a credential."""
    files = [str(paths.home / name) for name in agent.credential_files]
    argv = ["python3", "-c", _ADD_CREDENTIALS, str(paths.agent_env), *agent.credential_variables, "--", *files]
    found = run(target, argv, input=agent_env_file(values))
    said = [line.split(" ", 1) for line in found.stdout.decode(errors="replace").splitlines() if " " in line]
    return CredentialsGiven(
        added=tuple(word for key, word in said if key == "added"),
        present=["credentials", "yes"] in said,
    )


# Run as the agent: each JSON document on stdin (by path below the home in argv) merged into the
# agent's file there, what the file already says winning (a setting the user chose stays), written
# whole and renamed into place, mode 0600; through a symlink to its target (a dotfiles manager's
# link stays a link). A file that is not a JSON object is left alone and named.
_MERGE_JSON = """
import json, os, sys
def merge(seed, have):
    merged = dict(have)
    for key, value in seed.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = merge(value, merged[key])
    return merged
home = sys.argv[1]
for relative, seed in json.load(sys.stdin).items():
    path = os.path.realpath(os.path.join(home, relative))
    try:
        with open(path, "rb") as handle:
            have = json.loads(handle.read() or b"{}")
    except FileNotFoundError:
        have = None
    except (OSError, ValueError):
        have = []
    if not isinstance(have, (dict, type(None))):
        print("kept " + relative)
        continue
    merged = merge(seed, have or {})
    if merged == have:
        continue
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(merged, indent=2) + "\\n")
    os.replace(path + ".tmp", path)
"""


def merge_first_run(
    target: SSHTarget, documents: dict[str, dict[str, Any]], home: PurePath = VM.home
) -> tuple[str, ...]:
    """The agent's first-run files (builder/render.first_run_documents: the ones the launch
    writes for the workspace's own agent) merged into what the agent's home has; the paths left
    alone because they hold no JSON object."""
    if not documents:
        return ()
    found = run(target, ["python3", "-c", _MERGE_JSON, str(home)], input=json.dumps(documents).encode())
    return tuple(line[5:] for line in found.stdout.decode(errors="replace").splitlines() if line.startswith("kept "))


def bring_up_devcontainer(
    target: SSHTarget, progress: Callable[[str], None], timeout: float = DEVCONTAINER_UP_SECONDS
) -> None:
    """`devcontainer up` on the VM, run by the agent (vmgen's SSH logs in as the agent) through the
    VM's own program; each phase is a progress line, a failure one DevcontainerFailed with the
    CLI's message and the tail of its output. The deadline is the VM's own `timeout`."""
    follower = UpFollower(progress)
    argv = ["timeout", "--kill-after=10", str(round(timeout)), str(VM.program("devcontainer-up"))]
    process = stream(target, argv)
    assert process.stdout is not None and process.stderr is not None
    for raw in process.stdout:
        follower.line(raw.decode(errors="replace").rstrip("\n"))
    stderr = process.stderr.read().decode(errors="replace")
    code = process.wait()
    if code in (124, 137):
        follower.message = follower.message or f"devcontainer up ran past {round(timeout)} s and was stopped"
    if code != 0:
        raise follower.failure(code, stderr)


def ship_claude_setup(target: SSHTarget, plan: SyncPlan) -> None:
    """The plan as one tar stream over SSH, unpacked and merged by the agent user (vmgen's SSH
    logs in as the agent; root takes no part)."""
    run(target, ["sh", "-c", UNPACK_SCRIPT, "sh", UNPACK_PROGRAM], input=setup_tar(plan, int(time.time())), timeout=300)


def missing_commands(target: SSHTarget, commands: tuple[str, ...]) -> tuple[str, ...]:
    """Of `commands`, those the agent's login shell on the workspace does not find (`command -v`
    only: nothing is run)."""
    if not commands:
        return ()
    found = run(target, ["bash", "-lc", MISSING_COMMANDS_SCRIPT, "bash", *commands], timeout=60)
    printed = set(found.stdout.decode(errors="replace").splitlines())
    return tuple(command for command in commands if command in printed)


def deliver_deploy_key(
    target: SSHTarget, private_key: bytes, push_url: str, repo_dir: str, home: PurePath = VM.home
) -> None:
    """The key, an ssh config for github.com that uses it alone and pins github.com's published
    host keys, and the repository's push URL over ssh; all the agent's own files (the SSH login is
    the agent), the key and config 0600 as ssh insists."""
    from .deploykeys import agent_files

    for file in agent_files(private_key, home):
        write_file(target, file.path, file.content, mode=file.mode)
    if push_url and repo_dir:
        # Pushes only: fetches keep the clone's URL (an https clone needs no key to fetch).
        run(target, ["git", "-C", repo_dir, "remote", "set-url", "--push", "origin", push_url], check=False)


def files_to_upload(root: Path) -> list[str]:
    """Relative paths to upload: git's view (tracked + untracked, minus ignored) and `.git`."""
    if (root / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=False,
        )
        if listed.returncode != 0:
            raise VmgenError(f"git could not list the files of {root}: {listed.stderr.decode().strip()}")
        names = [n for n in listed.stdout.decode().split("\0") if n and (root / n).exists()]
        return [".git", *names]
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() or path.is_symlink())


def upload_tree(target: SSHTarget, root: Path, repo_dir: str) -> None:
    names = files_to_upload(root)
    command = [*target.base_command(), remote(["tar", "-x", "-C", repo_dir])]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdin is not None
        try:
            with tarfile.open(fileobj=process.stdin, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                for name in names:
                    archive.add(root / name, arcname=name, recursive=(name == ".git"), filter=_portable)
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        code = process.wait()
    if code != 0:
        raise RemoteCommandFailed(f"uploading {root} failed: {stderr.strip() or f'exit {code}'}")


def _portable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Files land owned by the agent user, not by the laptop's uid."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def laptop_extras(copy_claude_login: bool, home: Path | None = None) -> tuple[bytes | None, bytes | None]:
    """The laptop's Claude login (when asked for) and .gitconfig (when present)."""
    home = home or Path.home()
    credentials = None
    if copy_claude_login:
        path = home / ".claude" / ".credentials.json"
        if not path.is_file():
            raise VmgenError(f"--copy-claude-login: {path} does not exist; run `claude` and log in first")
        credentials = rewrite_home(path.read_bytes(), home)
    gitconfig_path = home / ".gitconfig"
    gitconfig = rewrite_home(gitconfig_path.read_bytes(), home) if gitconfig_path.is_file() else None
    return credentials, gitconfig
