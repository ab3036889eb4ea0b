"""A fake GitHub REST API for repository deploy keys, over real HTTP, standard library only.

Endpoints (REST API version 2022-11-28 / 2026-03-10, operations repos/list-deploy-keys, repos/create-deploy-key,
repos/get-deploy-key, repos/delete-deploy-key): GET and POST /repos/{owner}/{repo}/keys, GET and DELETE
/repos/{owner}/{repo}/keys/{key_id}.

Shapes:
- The "deploy-key" schema of GitHub's OpenAPI description (github/rest-api-description,
  descriptions/api.github.com): id, key, url, title, verified, created_at, read_only required; added_by,
  last_used (nullable) and enabled. The key is answered as "<type> <base64>", its comment dropped; create
  answers 201 with a Location header, delete 204 with no body; lists paginate (per_page, page, Link).
- Errors as GitHub sends them: {"message", "documentation_url", "status"} with the operation's documentation
  page; 422 {"message": "Validation Failed", "errors": [{"resource": "PublicKey", "code": "custom",
  "field": "key", "message": "key is already in use"}]} recorded from the real API in PyGithub's test data
  (tests/ReplayData/Repository.testCreateKey.txt); 401 "Bad credentials" for an unknown token and
  "Requires authentication" for none; 404 "Not Found" for a repository the token cannot administer, as
  GitHub hides what it will not show; 422 "key is invalid" for a key not in OpenSSH format.
A public key is unique across GitHub: the same key on any repository of the fake is "already in use". A
create without read_only makes a read-write key (the reference: "If true, ... read. Otherwise, ... read and
write"); vmgen should say which it wants.

    with FakeGitHub(repos=["octo/app"]) as gh:
        requests.post(f"{gh.endpoint}/repos/octo/app/keys", json={"title": "vmgen ws1", "key": pub},
                      headers={"Authorization": f"Bearer {TOKEN}"})
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.served import FakeHandler, ServedFake

Json = dict[str, Any]
TOKEN = "ghp_test0token0not0real0000000000000000"
DOCS = "https://docs.github.com/rest/deploy-keys/deploy-keys"
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
API_VERSION = "2022-11-28"


class GitHubError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        documentation_url: str,
        errors: list[Json] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body: Json = {"message": message}
        if errors:
            self.body["errors"] = errors
        self.body |= {"documentation_url": documentation_url, "status": str(status)}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    status: int
    token: str | None


class FakeGitHub(ServedFake):
    """Repositories and their deploy keys. `tokens` maps a token to the login it belongs to and the repositories
    it administers (None: every repository of the fake)."""

    def __init__(
        self,
        repos: list[str] | tuple[str, ...] = ("octo/app",),
        *,
        tokens: dict[str, tuple[str, set[str] | None]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        public_host: str | None = None,
    ) -> None:
        self.tokens = tokens if tokens is not None else {TOKEN: ("octo", None)}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._repos: dict[str, dict[int, Json]] = {r.lower(): {} for r in repos}  # "owner/repo" -> id -> key
        self._next_id = 100_000_001
        self._faults: list[GitHubError] = []
        super().__init__(_Handler, host=host, port=port, public_host=public_host)

    @property
    def endpoint(self) -> str:
        """The API root, as https://api.github.com is for the real one."""
        return self.root_url

    # --- state for tests ---------------------------------------------------------------------

    def keys(self, repo: str) -> list[Json]:
        """The deploy keys of "owner/repo", oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._repos[repo.lower()].values()))

    def add_key(self, repo: str, key: str, title: str = "added by hand", read_only: bool = True) -> Json:
        """A deploy key the user added in the web interface (or a leftover of an earlier run)."""
        with self._lock:
            return copy.deepcopy(
                self._create(repo.lower(), {"key": key, "title": title, "read_only": read_only}, "octo")
            )

    def fail_next(
        self,
        status: int = 403,
        message: str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        retry_after: int | None = 60,
        count: int = 1,
    ) -> None:
        """The next `count` requests get `status` (by default a secondary rate limit) before any other check."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._faults.extend(
                [
                    GitHubError(
                        status,
                        message,
                        "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-"
                        "rest-api#about-secondary-rate-limits",
                        headers=headers,
                    )
                ]
                * count
            )

    # --- the API -----------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, authorization: str, raw: bytes
    ) -> tuple[int, Json | list[Json] | None, dict[str, str]]:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        token = _token(authorization)
        try:
            with self._lock:
                if self._faults:
                    raise self._faults.pop(0)
                status, body, headers = self._route(method, url.path, query, token, raw)
        except GitHubError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        with self._lock:
            self.requests.append(Recorded(method, target, status, token))
        return status, body, headers

    def _route(
        self, method: str, path: str, query: dict[str, str], token: str | None, raw: bytes
    ) -> tuple[int, Json | list[Json] | None, dict[str, str]]:
        match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/keys(?:/([^/]+))?/?", path)
        if not match:
            raise GitHubError(404, "Not Found", "https://docs.github.com/rest")
        owner, name, key_id = match.groups()
        operation = {
            ("GET", False): "list-deploy-keys",
            ("POST", False): "create-a-deploy-key",
            ("GET", True): "get-a-deploy-key",
            ("DELETE", True): "delete-a-deploy-key",
        }.get((method, key_id is not None))
        if operation is None:
            raise GitHubError(404, "Not Found", "https://docs.github.com/rest")
        docs = f"{DOCS}#{operation}"
        if token is None:
            raise GitHubError(401, "Requires authentication", docs)
        if token not in self.tokens:
            raise GitHubError(401, "Bad credentials", "https://docs.github.com/rest")
        login, allowed = self.tokens[token]
        repo = f"{owner}/{name}".lower()
        if repo not in self._repos or (allowed is not None and repo not in {r.lower() for r in allowed}):
            raise GitHubError(404, "Not Found", docs)
        keys = self._repos[repo]
        if key_id is None and method == "GET":
            return self._page(list(keys.values()), query, f"{self.endpoint}/repos/{owner}/{name}/keys", docs)
        if key_id is None:
            key = self._create(repo, _body(raw, docs), login, docs)
            return 201, key, {"Location": key["url"]}
        found = keys.get(int(key_id)) if key_id.isdigit() else None
        if found is None:
            raise GitHubError(404, "Not Found", docs)
        if method == "GET":
            return 200, found, {}
        del keys[found["id"]]
        return 204, None, {}

    def _create(self, repo: str, body: Json, login: str, docs: str = f"{DOCS}#create-a-deploy-key") -> Json:
        if "key" not in body:
            raise GitHubError(422, 'Invalid request.\n\n"key" wasn\'t supplied.', docs)
        for field, kind in (("key", str), ("title", str), ("read_only", bool)):
            if field in body and not isinstance(body[field], kind):
                raise GitHubError(
                    422,
                    f"Invalid request.\n\nFor 'properties/{field}', {json.dumps(body[field])} "
                    f"is not a {'boolean' if kind is bool else 'string'}.",
                    docs,
                )
        parts = body["key"].split()
        if len(parts) < 2 or parts[0] not in KEY_TYPES or not _is_base64(parts[1]):
            raise GitHubError(
                422,
                "Validation Failed",
                docs,
                [
                    {
                        "resource": "PublicKey",
                        "code": "custom",
                        "field": "key",
                        "message": "key is invalid. You must supply a key in OpenSSH public key format",
                    }
                ],
            )
        key = f"{parts[0]} {parts[1]}"
        if any(k["key"] == key for keys in self._repos.values() for k in keys.values()):
            raise GitHubError(
                422,
                "Validation Failed",
                docs,
                [{"resource": "PublicKey", "code": "custom", "field": "key", "message": "key is already in use"}],
            )
        owner, name = repo.split("/")
        key_id, self._next_id = self._next_id, self._next_id + 1
        record = {
            "id": key_id,
            "key": key,
            "url": f"{self.endpoint}/repos/{owner}/{name}/keys/{key_id}",
            "title": body.get("title") or (" ".join(parts[2:]) or ""),
            "verified": True,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "read_only": body.get("read_only", False),
            "added_by": login,
            "last_used": None,
            "enabled": True,
        }
        self._repos[repo][key_id] = record
        return copy.deepcopy(record)

    def _page(
        self, items: list[Json], query: dict[str, str], base: str, docs: str
    ) -> tuple[int, list[Json], dict[str, str]]:
        try:
            per_page = min(100, max(1, int(query.get("per_page", 30))))
            page = max(1, int(query.get("page", 1)))
        except ValueError:
            raise GitHubError(422, "Invalid request.\n\nInvalid per_page or page.", docs) from None
        last = max(1, math.ceil(len(items) / per_page))
        links = []
        if page < last:
            links += [
                f'<{base}?per_page={per_page}&page={page + 1}>; rel="next"',
                f'<{base}?per_page={per_page}&page={last}>; rel="last"',
            ]
        if page > 1:
            links += [
                f'<{base}?per_page={per_page}&page=1>; rel="first"',
                f'<{base}?per_page={per_page}&page={page - 1}>; rel="prev"',
            ]
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, copy.deepcopy(items[(page - 1) * per_page : page * per_page]), headers


def _token(authorization: str) -> str | None:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None if not authorization.strip() else authorization.strip()


def _is_base64(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) > 16
    except (binascii.Error, ValueError):
        return False


def _body(raw: bytes, docs: str) -> Json:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GitHubError(400, "Problems parsing JSON", docs)
    return body


class _Handler(FakeHandler):
    def _serve(self) -> None:
        raw = self.read_body()
        status, body, headers = self.fake.handle(self.command, self.path, self.headers.get("Authorization", ""), raw)
        content_type = None if body is None else "application/json; charset=utf-8"
        data = b"" if body is None else json.dumps(body).encode()
        self.reply(status, content_type, data, {"X-GitHub-Api-Version-Selected": API_VERSION, **headers})

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve
