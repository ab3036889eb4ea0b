"""The fake GitHub deploy-key API answers as GitHub does, driven with requests as vmgen's launch and destroy will."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes.github import TOKEN, FakeGitHub

AUTH = {
    "Authorization": f"Bearer {TOKEN}",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}
DOCS = "https://docs.github.com/rest/deploy-keys/deploy-keys"


def public_key(comment: str = "vmgen@ws1") -> str:
    blob = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{blob} {comment}"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    tokens = {TOKEN: ("octo", None), "ghp_onlyother": ("octo", {"octo/other"})}
    with FakeGitHub(repos=["octo/app", "octo/other"], tokens=tokens) as fake:
        yield fake


def test_create_get_list_and_delete_a_deploy_key(github: FakeGitHub) -> None:
    pub = public_key()
    keys = f"{github.endpoint}/repos/octo/app/keys"
    created = requests.post(keys, json={"title": "vmgen ws1", "key": pub, "read_only": False}, headers=AUTH, timeout=5)
    assert created.status_code == 201
    key = created.json()
    assert set(key) == {
        "id",
        "key",
        "url",
        "title",
        "verified",
        "created_at",
        "read_only",
        "added_by",
        "last_used",
        "enabled",
    }
    assert key["key"] == pub.rsplit(" ", 1)[0]  # the comment is not kept
    assert (key["title"], key["read_only"], key["verified"], key["added_by"]) == ("vmgen ws1", False, True, "octo")
    assert key["url"] == f"{keys}/{key['id']}" == created.headers["Location"]
    assert requests.get(key["url"], headers=AUTH, timeout=5).json() == key
    assert requests.get(keys, headers=AUTH, timeout=5).json() == [key]
    deleted = requests.delete(key["url"], headers=AUTH, timeout=5)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert github.keys("octo/app") == []
    gone = requests.get(key["url"], headers=AUTH, timeout=5)
    assert gone.status_code == 404
    assert gone.json() == {"message": "Not Found", "documentation_url": f"{DOCS}#get-a-deploy-key", "status": "404"}
    again = requests.delete(key["url"], headers=AUTH, timeout=5)
    assert again.status_code == 404 and again.json()["documentation_url"] == f"{DOCS}#delete-a-deploy-key"


def test_credentials_401_and_repositories_the_token_cannot_administer_404(github: FakeGitHub) -> None:
    keys = f"{github.endpoint}/repos/octo/app/keys"
    bad = requests.get(keys, headers={"Authorization": "Bearer ghp_wrong"}, timeout=5)
    assert bad.status_code == 401
    assert bad.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    assert requests.get(keys, timeout=5).json()["message"] == "Requires authentication"
    assert requests.get(keys, headers={"Authorization": "token ghp_onlyother"}, timeout=5).status_code == 404
    missing = requests.post(
        f"{github.endpoint}/repos/octo/nope/keys", json={"key": public_key()}, headers=AUTH, timeout=5
    )
    assert missing.status_code == 404 and missing.json()["documentation_url"] == f"{DOCS}#create-a-deploy-key"
    assert github.keys("octo/app") == [] and github.keys("octo/other") == []


def test_a_key_in_use_anywhere_is_refused_with_422(github: FakeGitHub) -> None:
    pub = public_key()
    github.add_key("octo/other", pub)
    taken = requests.post(
        f"{github.endpoint}/repos/octo/app/keys", json={"title": "t", "key": pub}, headers=AUTH, timeout=5
    )
    assert taken.status_code == 422
    assert taken.json() == {
        "message": "Validation Failed",
        "errors": [{"resource": "PublicKey", "code": "custom", "field": "key", "message": "key is already in use"}],
        "documentation_url": f"{DOCS}#create-a-deploy-key",
        "status": "422",
    }
    invalid = requests.post(
        f"{github.endpoint}/repos/octo/app/keys", json={"key": "ssh-ed25519 not-base64!"}, headers=AUTH, timeout=5
    )
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["message"].startswith("key is invalid")
    no_key = requests.post(f"{github.endpoint}/repos/octo/app/keys", json={"title": "t"}, headers=AUTH, timeout=5)
    assert no_key.status_code == 422 and '"key" wasn\'t supplied' in no_key.json()["message"]
    broken = requests.post(f"{github.endpoint}/repos/octo/app/keys", data=b"{", headers=AUTH, timeout=5)
    assert broken.status_code == 400 and broken.json()["message"] == "Problems parsing JSON"
    assert github.keys("octo/app") == []


def test_lists_paginate_with_link_headers(github: FakeGitHub) -> None:
    for i in range(3):
        github.add_key("octo/app", public_key(), title=f"k{i}")
    first = requests.get(f"{github.endpoint}/repos/octo/app/keys?per_page=2", headers=AUTH, timeout=5)
    assert [k["title"] for k in first.json()] == ["k0", "k1"] and first.links["next"]["url"].endswith("page=2")
    second = requests.get(first.links["next"]["url"], headers=AUTH, timeout=5)
    assert [k["title"] for k in second.json()] == ["k2"] and "next" not in second.links


def test_an_injected_rate_limit_comes_first(github: FakeGitHub) -> None:
    github.fail_next()
    limited = requests.get(f"{github.endpoint}/repos/octo/app/keys", headers=AUTH, timeout=5)
    assert limited.status_code == 403 and limited.headers["Retry-After"] == "60"
    assert "secondary rate limit" in limited.json()["message"]
    assert requests.get(f"{github.endpoint}/repos/octo/app/keys", headers=AUTH, timeout=5).status_code == 200
    assert [r.status for r in github.requests] == [403, 200]
