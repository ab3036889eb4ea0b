"""git push from a workspace, scoped to its one GitHub repository: a deploy key per workspace.

The laptop holds the GitHub token (`github_token`); the VM never does. At launch the laptop makes
an ed25519 key pair, registers the public half on the repository as a deploy key with write access
(GitHub REST API, `POST /repos/{owner}/{repo}/keys`), records the key's id in the workspace's local
state, and the handover gives the private half to the agent user (`~/.ssh/vmgen_deploy_key`,
0600) with an ssh config block for github.com and github.com's published host keys pinned. A
deploy key opens that one repository and nothing else of the user's. `vmgen destroy` deletes it,
and so does the `vmgen list` that finds the workspace gone (deleted by its idle watchdog).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..contract.names import VM
from ..errors import DeployKeyError
from .spec import GitSource, Source
from .state import WorkspaceState

if TYPE_CHECKING:
    import requests

API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
TIMEOUT = 20

# github.com's SSH host keys as GitHub publishes them ("GitHub's SSH key fingerprints",
# https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints,
# also `ssh_keys` of https://api.github.com/meta), copied 2026-12-07; the RSA key is the one of
# 2023-03-24. Their SHA256 fingerprints (checked in tests/unit/test_deploykeys.py): Ed25519
# +DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU, ECDSA p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM,
# RSA uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s.
GITHUB_HOST_KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    (
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9"
        "nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg="
    ),
    (
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlO"
        "hGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6"
        "JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTD"
        "kzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnz"
        "tnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj"
        "0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk="
    ),
)

# Where the handover puts them below the agent's home (its own files: the key opens only the one
# repository, and the agent is the one meant to push with it).
KEY_FILE = ".ssh/vmgen_deploy_key"
KNOWN_HOSTS_FILE = ".ssh/vmgen_github_known_hosts"
SSH_CONFIG_FILE = ".ssh/config"

# The local state's record of a registered key (WorkspaceState's folder).
RECORD = "deploy-key.json"

_HTTPS_RE = re.compile(
    r"^https://(?:[^@/]+@)?github\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+?)(?:\.git)?/?$"
)
_SSH_RE = re.compile(
    r"^(?:ssh://git@github\.com/|git@github\.com:)(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+?)(?:\.git)?/?$"
)


@dataclass(frozen=True)
class GitHubRepo:
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def ssh_url(self) -> str:
        return f"git@github.com:{self.full_name}.git"


@dataclass(frozen=True)
class KeyPair:
    private_openssh: bytes  # OpenSSH PEM, unencrypted: the agent's ssh reads it without a prompt
    public_openssh: str  # "ssh-ed25519 AAAA..."


@dataclass(frozen=True)
class DeployKey:
    """A key vmgen registered: on which repository, under which id."""

    repo: GitHubRepo
    key_id: int


def github_repo(source: Source) -> GitHubRepo | None:
    """The GitHub repository a launch source names (https, ssh:// or git@github.com:), else None."""
    return github_repo_of(source.url) if isinstance(source, GitSource) else None


def github_repo_of(url: str) -> GitHubRepo | None:
    """The same for a URL as a workspace's record describes its source (`url#branch`)."""
    url = url.partition("#")[0]
    match = _HTTPS_RE.match(url) or _SSH_RE.match(url)
    if match is None or match["repo"] in (".", ".."):
        return None
    return GitHubRepo(match["owner"], match["repo"])


def new_key_pair(comment: str) -> KeyPair:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(pem, f"{public.decode()} {comment}")


def key_title(workspace: str, owner: str) -> str:
    """What the repository's settings page shows: whose workspace holds the key."""
    return f"vmgen:{workspace}:{owner}"


@dataclass(frozen=True)
class AgentFile:
    path: str
    content: bytes
    mode: str


def agent_files(private_key: bytes, home: PurePath = VM.home) -> tuple[AgentFile, ...]:
    """What the handover writes for git push: the key and the ssh config 0600 (ssh refuses a key
    others can read), github.com's host keys 0644."""
    return (
        AgentFile(str(home / KEY_FILE), private_key, "600"),
        AgentFile(str(home / KNOWN_HOSTS_FILE), github_known_hosts(), "644"),
        AgentFile(str(home / SSH_CONFIG_FILE), agent_ssh_config(home), "600"),
    )


def agent_ssh_config(home: PurePath = VM.home) -> bytes:
    """The agent's ~/.ssh/config: github.com with the deploy key only and its pinned host keys."""
    return (
        "# Written by vmgen: git push to the workspace's repository with its deploy key.\n"
        "Host github.com\n"
        "  HostName github.com\n"
        "  User git\n"
        f"  IdentityFile {home / KEY_FILE}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {home / KNOWN_HOSTS_FILE}\n"
        "  StrictHostKeyChecking yes\n"
    ).encode()


def github_known_hosts() -> bytes:
    return "".join(f"github.com {key}\n" for key in GITHUB_HOST_KEYS).encode()


class GitHubDeployKeys:
    """The three calls vmgen makes, on `requests`; every refusal is one DeployKeyError line that
    never contains the token."""

    def __init__(self, token: str, endpoint: str = "") -> None:
        self._token = token
        self.endpoint = (endpoint or API_URL).rstrip("/")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        # Imported here: requests takes ~50 ms to import, which every `vmgen list` and `destroy`
        # paid (they read recorded deploy keys), and only a call to GitHub needs it.
        import requests

        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token}",
            "X-GitHub-Api-Version": API_VERSION,
        }
        try:
            return requests.request(method, f"{self.endpoint}{path}", json=body, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise DeployKeyError(f"GitHub could not be reached ({type(exc).__name__})") from None

    def create(self, repo: GitHubRepo, title: str, public_key: str) -> DeployKey:
        reply = self._request(
            "POST", f"/repos/{repo.full_name}/keys", {"title": title, "key": public_key, "read_only": False}
        )
        if reply.status_code != 201:
            raise DeployKeyError(_refusal(reply, repo, "adding a deploy key to"))
        try:
            return DeployKey(repo, int(reply.json()["id"]))
        except (ValueError, KeyError, TypeError):
            raise DeployKeyError(f"GitHub's answer to adding a deploy key to {repo.full_name} has no key id") from None

    def delete(self, key: DeployKey) -> bool:
        """True once it is gone; False when it was gone already (404)."""
        reply = self._request("DELETE", f"/repos/{key.repo.full_name}/keys/{key.key_id}")
        if reply.status_code == 204:
            return True
        if reply.status_code == 404:
            return False
        raise DeployKeyError(_refusal(reply, key.repo, f"removing deploy key {key.key_id} from"))


def _refusal(reply: requests.Response, repo: GitHubRepo, doing: str) -> str:
    try:
        body = reply.json()
        message = str(body.get("message", "")).split("\n")[0][:200]
        details = [str(e.get("message", ""))[:200] for e in body.get("errors", ()) if isinstance(e, dict)]
    except (ValueError, AttributeError):
        message, details = "", []
    said = "; ".join(d for d in details if d) or message or reply.reason or ""
    why = {
        401: "the github_token was refused (bad or expired)",
        403: "the github_token may not do this (it needs the repository's Administration write permission)",
        404: f"the github_token cannot administer {repo.full_name} (or it does not exist)",
    }.get(reply.status_code, "")
    return f"GitHub refused {doing} {repo.full_name}: {reply.status_code} {said}" + (f"; {why}" if why else "")


def record_key(state: WorkspaceState, key: DeployKey) -> None:
    state.write(RECORD, json.dumps({"repo": key.repo.full_name, "id": key.key_id}, indent=2) + "\n")


def recorded_key(state: WorkspaceState) -> DeployKey | None:
    try:
        data = json.loads((state.dir / RECORD).read_text())
        owner, name = str(data["repo"]).split("/")
        return DeployKey(GitHubRepo(owner, name), int(data["id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_key(state: WorkspaceState, client: GitHubDeployKeys | None, key: DeployKey | None = None) -> str:
    """The workspace's deploy key leaves GitHub (destroy; a workspace found gone): "" when there
    was none or it is gone now, else one line on what is left and how to remove it by hand. The
    record stays until it is gone, so the next `vmgen list` tries again. `key`: the one a launch
    just made, which may not have been recorded yet."""
    key = key or recorded_key(state)
    if key is None:
        return ""
    by_hand = f"remove deploy key {key.key_id} at https://github.com/{key.repo.full_name}/settings/keys"
    if client is None:
        return f"its deploy key is still on {key.repo.full_name} (no github_token to remove it): {by_hand}"
    try:
        client.delete(key)
    except DeployKeyError as exc:
        return f"its deploy key is still on {key.repo.full_name} ({exc}): {by_hand}"
    state.discard(RECORD)
    return ""
