"""git push scoped to the one repository (issue 28 part 5), against the fake GitHub REST API
(tests/fakes/github.py): a launch of a GitHub repository with a github_token registers a deploy key
with write access and hands its private half over; a refusal (401, 404, 422) is one line, the
launch goes on without push access and nothing stays registered; a failed launch, `vmgen destroy`
and the `vmgen list` that finds the workspace gone remove the key; the token reaches neither the
user-data nor any output. The files the agent gets: the key 0600, an ssh config that uses it
alone, github.com's published host keys."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from tests.fakes.github import TOKEN, FakeGitHub
from tests.unit.cli.test_cli import vmgen
from tests.unit.test_launch import FakeProvider, ScriptedClient, run_launch, spec_for
from vmgen.errors import BootFailed, DeployKeyError
from vmgen.laptop.builder.render import written_files
from vmgen.laptop.deploykeys import (
    GITHUB_HOST_KEYS,
    RECORD,
    DeployKey,
    GitHubDeployKeys,
    GitHubRepo,
    agent_files,
    github_repo,
    github_repo_of,
    new_key_pair,
    record_key,
    recorded_key,
)
from vmgen.laptop.spec import parse_source
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState

REPO = "https://github.com/octo/app.git"
DOCKER_IMAGE = os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")


@pytest.fixture
def github():
    with FakeGitHub(repos=["octo/app", "octo/other"]) as fake:
        yield fake


def public_of(private_openssh: bytes, tmp_path: Path) -> str:
    """The public half of a private key file, as OpenSSH's own ssh-keygen reads it."""
    path = tmp_path / "key"
    path.write_bytes(private_openssh)
    path.chmod(0o600)
    return subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True).stdout


# --- what vmgen pins and parses --------------------------------------------------------------


def test_the_pinned_host_keys_are_the_ones_github_publishes() -> None:
    # SHA256 fingerprints from https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints
    published = {
        "ssh-ed25519": "+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
        "ecdsa-sha2-nistp256": "p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM",
        "ssh-rsa": "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
    }
    pinned = {}
    for line in GITHUB_HOST_KEYS:
        kind, blob = line.split()
        pinned[kind] = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
    assert pinned == published


@pytest.mark.parametrize(
    ("source", "repo"),
    [
        ("https://github.com/octo/app", "octo/app"),
        ("https://github.com/octo/app.git", "octo/app"),
        ("https://github.com/octo/my.app.git#main", "octo/my.app"),
        ("git@github.com:octo/app.git", "octo/app"),
        ("ssh://git@github.com/octo/app.git", "octo/app"),
        ("https://gitlab.com/octo/app.git", None),
        ("https://github.com.evil.example/octo/app.git", None),
        ("https://github.com/octo/app/tree/main", None),
    ],
)
def test_a_github_repository_is_recognised_in_the_launch_source(source: str, repo: str | None) -> None:
    found = github_repo(parse_source(source))
    assert (found.full_name if found else None) == repo
    of_record = github_repo_of(source)
    assert (of_record.full_name if of_record else None) == repo


def test_a_local_directory_is_no_github_repository(tmp_path: Path) -> None:
    assert github_repo(parse_source(str(tmp_path))) is None


# --- the API, against the fake -----------------------------------------------------------------


def test_a_key_is_created_with_write_access_and_deleted_once(github: FakeGitHub, tmp_path: Path) -> None:
    client = GitHubDeployKeys(TOKEN, github.endpoint)
    pair = new_key_pair("vmgen:app:0123456789abcdef")
    key = client.create(GitHubRepo("octo", "app"), "vmgen:app:0123456789abcdef", pair.public_openssh)
    [registered] = github.keys("octo/app")
    assert registered["id"] == key.key_id and registered["read_only"] is False
    assert registered["title"] == "vmgen:app:0123456789abcdef"
    assert registered["key"] == " ".join(public_of(pair.private_openssh, tmp_path).split()[:2])
    assert client.delete(key) is True and github.keys("octo/app") == []
    assert client.delete(key) is False  # 404: already gone


@pytest.mark.parametrize(
    ("token", "repo", "words"),
    [
        ("ghp_test0wrong0token", "octo/app", "401 Bad credentials; the github_token was refused"),
        (TOKEN, "octo/nope", "404 Not Found; the github_token cannot administer octo/nope"),
    ],
)
def test_a_refusal_is_one_line_without_the_token(github: FakeGitHub, token: str, repo: str, words: str) -> None:
    owner, name = repo.split("/")
    with pytest.raises(DeployKeyError) as raised:
        GitHubDeployKeys(token, github.endpoint).create(GitHubRepo(owner, name), "t", new_key_pair("c").public_openssh)
    message = str(raised.value)
    assert words in message and "\n" not in message and token not in message
    assert github.keys("octo/app") == []


def test_a_key_in_use_is_a_422_line(github: FakeGitHub) -> None:
    pair = new_key_pair("c")
    github.add_key("octo/other", pair.public_openssh)
    with pytest.raises(
        DeployKeyError, match=r"^GitHub refused adding a deploy key to octo/app: 422 key is already in use$"
    ):
        GitHubDeployKeys(TOKEN, github.endpoint).create(GitHubRepo("octo", "app"), "t", pair.public_openssh)


# --- a launch ------------------------------------------------------------------------------------


def test_a_launch_registers_a_key_and_hands_its_private_half_to_the_agent(home, github, tmp_path) -> None:
    provider, client = FakeProvider(), ScriptedClient()
    result, messages = run_launch(
        spec_for(home, REPO),
        provider,
        client,
        deploy_keys=GitHubDeployKeys(TOKEN, github.endpoint),
        deploy_key_owner="0123456789abcdef",
    )
    [registered] = github.keys("octo/app")
    assert registered["title"] == "vmgen:app:0123456789abcdef" and registered["read_only"] is False
    assert result.push_repo == "octo/app" and result.push_refused == ""
    handover = client.handover
    assert handover is not None and handover.deploy_key is not None
    assert registered["key"] == " ".join(public_of(handover.deploy_key, tmp_path).split()[:2])
    assert handover.push_url == "git@github.com:octo/app.git"
    assert recorded_key(WorkspaceState("app")) == DeployKey(GitHubRepo("octo", "app"), registered["id"])
    # The VM gets the key, never the token; nothing the user reads shows it.
    assert TOKEN not in provider.user_data["app"] and not any(TOKEN in m for m in messages)
    # The key travels over SSH after boot, not in user-data (whose private key is the VM's host key).
    # (Its first lines are the format's header, the same in every ed25519 key: the rest is its own.)
    own_lines = handover.deploy_key.decode().splitlines()[3:-1]
    rendered = provider.user_data["app"] + "".join(written_files(provider.user_data["app"]).values())
    assert own_lines and not any(line in rendered for line in own_lines) and TOKEN not in rendered


def test_a_launch_that_fails_after_the_key_was_added_removes_it(home, github) -> None:
    provider, client = FakeProvider(), ScriptedClient(fail_at="agent")
    with pytest.raises(BootFailed):
        run_launch(spec_for(home, REPO), provider, client, deploy_keys=GitHubDeployKeys(TOKEN, github.endpoint))
    assert client.handover is not None and client.handover.deploy_key is not None  # it was added
    assert github.keys("octo/app") == [] and not WorkspaceState("app").any_left()


def test_a_key_in_use_leaves_the_launch_going_without_push_access(home, github, monkeypatch) -> None:
    pair = new_key_pair("c")
    github.add_key("octo/other", pair.public_openssh)
    monkeypatch.setattr("vmgen.laptop.launch.new_key_pair", lambda comment: pair)
    provider, client = FakeProvider(), ScriptedClient()
    result, messages = run_launch(
        spec_for(home, REPO), provider, client, deploy_keys=GitHubDeployKeys(TOKEN, github.endpoint)
    )
    assert result.push_repo == "" and "422 key is already in use" in result.push_refused
    [warning] = [m for m in messages if m.startswith("warning:")]
    assert (
        warning == "warning: no push access: GitHub refused adding a deploy key to octo/app: 422 key is already in use"
    )
    assert github.keys("octo/app") == [] and client.handover is not None and client.handover.deploy_key is None
    assert not WorkspaceState("app").has(RECORD)
    assert client.calls[-1] == "verdict"  # it came up


@pytest.mark.parametrize(("token", "source"), [("ghp_test0wrong0token", REPO), (TOKEN, "https://github.com/octo/nope")])
def test_a_refused_token_or_repository_leaves_the_launch_going_without_push_access(home, github, token, source) -> None:
    provider, client = FakeProvider(), ScriptedClient()
    result, messages = run_launch(
        spec_for(home, source), provider, client, deploy_keys=GitHubDeployKeys(token, github.endpoint)
    )
    [warning] = [m for m in messages if m.startswith("warning:")]
    assert ("401" in warning or "404" in warning) and token not in warning and token not in result.push_refused
    assert github.keys("octo/app") == [] and client.handover is not None and client.handover.deploy_key is None
    assert client.calls[-1] == "verdict"


def test_without_a_token_or_a_github_source_github_is_not_asked(home, github, tmp_path) -> None:
    run_launch(spec_for(home, REPO), FakeProvider(), ScriptedClient())
    run_launch(
        spec_for(home, "https://gitlab.com/octo/app.git", name="lab"),
        FakeProvider(),
        ScriptedClient(),
        deploy_keys=GitHubDeployKeys(TOKEN, github.endpoint),
    )
    assert github.requests == []


def test_a_relaunch_of_a_gone_workspace_removes_the_key_the_earlier_one_left(home, github) -> None:
    old = github.add_key("octo/app", new_key_pair("old").public_openssh, title="vmgen:app:old", read_only=False)
    state = WorkspaceState("app")
    state.create(
        WorkspaceRecord("app", "fake", 0.0, REPO, "claude"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0Kj"
    )
    record_key(state, DeployKey(GitHubRepo("octo", "app"), old["id"]))
    run_launch(
        spec_for(home, REPO), FakeProvider(), ScriptedClient(), deploy_keys=GitHubDeployKeys(TOKEN, github.endpoint)
    )
    [new] = github.keys("octo/app")
    assert new["id"] != old["id"] and recorded_key(state) == DeployKey(GitHubRepo("octo", "app"), new["id"])


# --- what the agent gets ---------------------------------------------------------------------------


def test_the_agents_files_use_the_key_alone_and_pin_githubs_host_keys(tmp_path: Path) -> None:
    pair = new_key_pair("c")
    files = {Path(f.path).name: f for f in agent_files(pair.private_openssh, PurePosixPath(tmp_path))}
    assert {name: f.mode for name, f in files.items()} == {
        "vmgen_deploy_key": "600",
        "vmgen_github_known_hosts": "644",
        "config": "600",
    }
    for f in files.values():
        Path(f.path).parent.mkdir(exist_ok=True)
        Path(f.path).write_bytes(f.content)
        Path(f.path).chmod(int(f.mode, 8))
    assert files["vmgen_deploy_key"].content == pair.private_openssh
    # OpenSSH's own reading of the config, for github.com.
    said = subprocess.run(
        ["ssh", "-G", "-F", files["config"].path, "github.com"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    options = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in said if " " in line}
    assert options["user"] == "git" and options["identitiesonly"] == "yes"
    assert options["identityfile"] == files["vmgen_deploy_key"].path
    assert options["userknownhostsfile"] == files["vmgen_github_known_hosts"].path
    assert options["stricthostkeychecking"] == "true"
    # ssh-keygen finds each of github.com's keys for the name github.com.
    for kind in ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"):
        found = subprocess.run(
            ["ssh-keygen", "-F", "github.com", "-f", files["vmgen_github_known_hosts"].path],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert kind in found


# --- destroy and list -------------------------------------------------------------------------------


def gone_with_key(home: Path, github: FakeGitHub, name: str) -> int:
    """The record of a docker workspace that came up and is gone (its idle watchdog deleted it),
    with the deploy key its launch registered."""
    key = github.add_key("octo/app", new_key_pair(name).public_openssh, title=f"vmgen:{name}:x", read_only=False)
    state = WorkspaceState(name)
    state.create(
        WorkspaceRecord(name, "docker", 0.0, REPO, "claude"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0Kj"
    )
    record_key(state, DeployKey(GitHubRepo("octo", "app"), key["id"]))
    return int(key["id"])


def test_destroy_removes_the_deploy_key(home, github) -> None:
    gone_with_key(home, github, "vmgenkeytest-a")
    result = vmgen(
        home,
        "destroy",
        "vmgenkeytest-a",
        "--yes",
        GITHUB_TOKEN=TOKEN,
        VMGEN_GITHUB_API_URL=github.endpoint,
        VMGEN_DOCKER_IMAGE=DOCKER_IMAGE,
    )
    assert result.returncode == 0, result.stderr
    assert github.keys("octo/app") == [] and TOKEN not in result.stdout + result.stderr


def test_the_list_that_finds_a_workspace_gone_removes_its_key_and_says_when_it_cannot(home, github) -> None:
    key_id = gone_with_key(home, github, "vmgenkeytest-b")
    refused = vmgen(home, "list", GITHUB_TOKEN="ghp_test0wrong0token", VMGEN_GITHUB_API_URL=github.endpoint)
    assert refused.returncode == 0, refused.stderr
    assert "vmgenkeytest-b: its deploy key is still on octo/app" in refused.stderr
    assert f"remove deploy key {key_id} at https://github.com/octo/app/settings/keys" in refused.stderr
    assert "ghp_test0wrong0token" not in refused.stdout + refused.stderr
    assert [k["id"] for k in github.keys("octo/app")] == [key_id]  # still there, still recorded: tried again
    listed = vmgen(home, "list", GITHUB_TOKEN=TOKEN, VMGEN_GITHUB_API_URL=github.endpoint)
    assert listed.returncode == 0 and "deploy key" not in listed.stderr
    assert github.keys("octo/app") == [] and not WorkspaceState("vmgenkeytest-b").has(RECORD)
    assert WorkspaceState("vmgenkeytest-b").exists()  # the record of the gone workspace stays, as before


def test_config_show_masks_the_github_token(home) -> None:
    result = vmgen(home, "config", "show", GITHUB_TOKEN=TOKEN)
    assert result.returncode == 0 and TOKEN not in result.stdout + result.stderr
    assert f"****{TOKEN[-4:]}" in result.stdout


def test_the_ready_message_says_how_to_push(capsys) -> None:
    from vmgen.laptop.cli.access import print_push_line

    print_push_line("app", "octo/app", "")
    with_key = capsys.readouterr().err
    assert "git push to octo/app works from the workspace" in with_key and "ssh -A" not in with_key
    print_push_line("app", "", "")
    without = capsys.readouterr().err
    assert "`ssh -A vmgen-app` forwards your own ssh keys for git push" in without
    print_push_line("app", "", "GitHub refused adding a deploy key to octo/app: 401 Bad credentials")
    refused = capsys.readouterr().err
    assert "no deploy key (GitHub refused adding a deploy key to octo/app: 401 Bad credentials)" in refused
    assert "ssh -A vmgen-app" in refused
