"""A git source, checked from this machine before anything is made: a typo in a URL or a branch
must not cost a booted VM and a clone that fails on it.

Only a definite answer refuses a launch: a public host does not exist (DNS says so), the server
says the repository is not there, or the repository has no such branch. A private name (no dot,
or a suffix reserved for private networks, such as docker's `host.docker.internal`) may resolve
on the workspace when it does not here, so DNS is no answer for it. When this machine cannot tell
(the server wants credentials it does not have, a firewall, a timeout), the launch goes on with a
note: the workspace may reach or read what this machine cannot.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from urllib.parse import urlsplit

from ..errors import SourceNotFound
from .spec import GitSource

TIMEOUT_SECONDS = 20.0
# How the server says a repository is not there (HTTP 404; a path that holds no repository).
_NOT_THERE = (
    re.compile(r"repository '.*' not found"),
    re.compile(r"does not appear to be a git repository"),
)


def host_of(url: str) -> str:
    scp = re.match(r"^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):", url)
    if scp and "://" not in url:
        return scp[1]
    return urlsplit(url).hostname or ""


# Names for private networks (RFC 6762 .local, RFC 8375 .home.arpa, ICANN's .internal, ...):
# resolved by the network the workspace is on, not by public DNS.
PRIVATE_SUFFIXES = (".internal", ".local", ".localhost", ".lan", ".home.arpa", ".corp", ".intranet")


def is_private_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return "." not in name or name.endswith(PRIVATE_SUFFIXES)


def host_does_not_exist(host: str) -> bool:
    """Public DNS answered that the name does not exist; a resolver that did not answer, or a
    private name, says nothing."""
    if is_private_name(host):
        return False
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return exc.errno == socket.EAI_NONAME
    except (OSError, UnicodeError):
        return False
    return False


def check_git_source(source: GitSource, timeout: float = TIMEOUT_SECONDS) -> str:
    """ "" when the remote answered and has the branch; a note when this machine cannot tell.
    Raises SourceNotFound when the answer is definite."""
    env = {
        **os.environ,
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",  # a server that wants a password gets none: not a question
        "GCM_INTERACTIVE": "never",
        # The user's own keys and known hosts, but never a question (nor a new known host).
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=10",
    }
    try:
        listed = subprocess.run(
            ["git", "ls-remote", "--heads", "--tags", "--", source.url],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"{source.url} did not answer this machine within {timeout:.0f}s; the workspace will try it"
    except FileNotFoundError:
        return "git is not installed on this machine, so the repository was not checked; the workspace will try it"
    if listed.returncode != 0:
        return _why_not(source, listed.stderr)
    if source.branch is None:
        return ""
    refs = [line.split("\t", 1)[1] for line in listed.stdout.splitlines() if "\t" in line]
    if f"refs/heads/{source.branch}" in refs or f"refs/tags/{source.branch}" in refs:
        return ""
    branches = sorted(ref.removeprefix("refs/heads/") for ref in refs if ref.startswith("refs/heads/"))
    shown = ", ".join(branches[:8]) + (f" and {len(branches) - 8} more" if len(branches) > 8 else "")
    raise SourceNotFound(
        f"{source.url} has no branch or tag {source.branch!r}" + (f" (its branches: {shown})" if branches else "")
    )


def _why_not(source: GitSource, stderr: str) -> str:
    lines = [line.removeprefix("fatal: ").strip() for line in stderr.splitlines() if line.strip()]
    said = lines[-1] if lines else "no answer"
    host = host_of(source.url)
    if host and host_does_not_exist(host):
        raise SourceNotFound(f"cannot launch {source.url}: the host {host!r} does not exist (DNS)")
    if any(pattern.search(stderr) for pattern in _NOT_THERE):
        raise SourceNotFound(f"cannot launch {source.url}: the server says there is no such repository ({said})")
    return f"could not check {source.url} from this machine ({said}); the workspace will try to clone it"
