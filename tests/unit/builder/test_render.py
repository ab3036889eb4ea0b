"""Rendering: valid cloud-config (the real `cloud-init schema`), size limits, hostile input."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from vmgen.backup.target import BackupTarget
from vmgen.contract.enums import StoreKind
from vmgen.errors import UserDataInvalid, UserDataTooLarge
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder import RenderOptions, check_schema, check_size, generate_host_key, render_user_data
from vmgen.laptop.builder.render import written_files
from vmgen.laptop.providers import PROVIDERS, provider_class
from vmgen.laptop.spec import GitSource, LocalSource, RestoreSource, VmgenInstall, WorkspaceSpec

USER_DATA_LIMITS = {name: provider_class(name).user_data_limit for name in PROVIDERS}

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0KjgNlbgsqOgjCm2oFkXzBeX1LM tester@laptop"
HOST_KEY = generate_host_key()


APP = GitSource("https://github.com/me/app")


def make_spec(source=APP, agent="claude", **changes) -> WorkspaceSpec:
    values = {
        "name": "app",
        "source": source,
        "agent": AGENTS[agent],
        "vmgen": VmgenInstall(version="0.1.0"),
        "ssh_keys": (KEY,),
        "agent_version": "2.1.332",
    }
    values.update(changes)
    return WorkspaceSpec(**values)


def render(spec: WorkspaceSpec, **options) -> str:
    return render_user_data(spec, RenderOptions(host_key=HOST_KEY, **options))


def files_of(user_data: str) -> dict[str, dict]:
    """Each written file's entry, its content decoded as cloud-init decodes it."""
    contents = written_files(user_data)
    return {f["path"]: f | {"content": contents[f["path"]]} for f in yaml.safe_load(user_data)["write_files"]}


def test_cloud_init_is_installed_for_the_schema_check(real_cloud_init: None) -> None:
    assert shutil.which("cloud-init"), "the test script installs cloud-init; the schema check needs it"


@pytest.mark.parametrize("agent", sorted(AGENTS))
@pytest.mark.parametrize("source", [GitSource("https://github.com/me/app", "main"), LocalSource(Path("/src/app"))])
def test_every_agent_and_source_renders_valid_cloud_config(agent: str, source) -> None:
    user_data = render(make_spec(source=source, agent=agent))
    assert user_data.startswith("#cloud-config\n")
    check_schema(user_data)
    for provider, limit in USER_DATA_LIMITS.items():
        check_size(user_data, limit, provider)


def test_the_agent_user_has_keys_only_and_no_sudo() -> None:
    config = yaml.safe_load(render(make_spec()))
    (user,) = config["users"]
    assert user["name"] == "agent" and user["lock_passwd"] is True
    assert "sudo" not in user and "sudo" not in user.get("groups", [])
    assert user["ssh_authorized_keys"] == [KEY]
    assert config["ssh_pwauth"] is False and config["disable_root"] is True
    sshd = files_of(render(make_spec()))["/etc/ssh/sshd_config.d/60-vmgen.conf"]["content"]
    assert "PermitRootLogin no" in sshd and "PasswordAuthentication no" in sshd


def test_claude_is_pinned_and_preconfigured_for_an_unattended_start() -> None:
    user_data = render(make_spec())
    files = files_of(user_data)
    assert "@anthropic-ai/claude-code@2.1.332" in files["/usr/local/lib/vmgen/provision.sh"]["content"]
    state = yaml.safe_load(files["/home/agent/.claude.json"]["content"])
    assert state["hasCompletedOnboarding"] is True
    assert state["projects"]["/home/agent/work/app"]["hasTrustDialogAccepted"] is True
    assert 'claude --resume "$session_id"' in files["/usr/local/lib/vmgen/agent-run"]["content"]


def test_gemini_starts_at_its_prompt_with_the_key_and_the_repository_trusted() -> None:
    files = files_of(render(make_spec(agent="gemini")))
    settings = json.loads(files["/home/agent/.gemini/settings.json"]["content"])
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["general"]["enableAutoUpdate"] is False
    trusted = json.loads(files["/home/agent/.gemini/trustedFolders.json"]["content"])
    assert trusted == {"/home/agent/work/app": "TRUST_FOLDER"}
    assert files["/home/agent/.gemini/settings.json"]["owner"] == "agent:agent"
    assert "/home/agent/.claude.json" not in files


def test_the_host_key_is_handed_over_and_redacted_when_printed() -> None:
    full = yaml.safe_load(render(make_spec()))
    assert full["ssh_keys"]["ed25519_private"] == HOST_KEY.private_openssh
    shown = render(make_spec(), redact_secrets=True)
    assert "PRIVATE KEY" not in shown
    assert HOST_KEY.public_openssh in shown


def test_no_credentials_in_user_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-must-not-appear")
    assert "test-key-must-not-appear" not in render(make_spec())


STORE = BackupTarget(
    kind=StoreKind.S3,
    bucket="vmgen",
    endpoint_url="https://acct.r2.cloudflarestorage.com",
    access_key_id="test-access",
    secret_access_key="test-secret-value",
)
RECIPIENT = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


def test_the_vm_gets_a_root_only_store_config_with_the_public_recipient_only() -> None:
    written = files_of(render(make_spec(), backup=(STORE, RECIPIENT)))["/etc/vmgen/backup.toml"]
    assert written["permissions"] == "0600" and written.get("owner", "root:root") == "root:root"
    config = tomllib.loads(written["content"])
    assert config["recipient"] == RECIPIENT and config["workspace"] == "app"
    assert config["secret_access_key"] == "test-secret-value" and "AGE-SECRET-KEY" not in written["content"]
    printed = render(make_spec(), backup=(STORE, RECIPIENT), redact_secrets=True)
    assert "test-secret-value" not in printed and "test-access" not in printed
    assert "/etc/vmgen/backup.toml" not in files_of(render(make_spec()))


def test_a_restore_skips_the_clone_and_names_the_backup() -> None:
    user_data = render(make_spec(source=RestoreSource("app", "20261125T150000Z-ab12")), backup=(STORE, RECIPIENT))
    check_schema(user_data)
    files = files_of(user_data)
    assert json.loads(files["/etc/vmgen/restore.json"]["content"]) == {
        "workspace": "app",
        "backup_id": "20261125T150000Z-ab12",
    }
    assert "git clone" not in "".join(written_files(user_data).values())
    assert "git clone" in "".join(written_files(render(make_spec())).values())


def test_a_restore_works_in_the_repository_folder_its_backup_names() -> None:
    """`restore app --as app2`, then app2's own backup restored as app2 (or app3): the
    repository is still in work/app, as the manifest says, and the agent starts there."""
    spec = make_spec(name="app3", source=RestoreSource("app2", "20261125T150000Z-ab12", repo_folder="app"))
    assert spec.repo_dir == "/home/agent/work/app"
    files = files_of(render(spec, backup=(STORE, RECIPIENT)))
    assert json.loads(files["/etc/vmgen/workspace.json"]["content"])["repo_dir"] == "/home/agent/work/app"
    assert make_spec(source=RestoreSource("app2")).repo_dir == "/home/agent/work/app2"  # an older manifest


def test_the_size_limit_is_enforced_with_a_clear_error() -> None:
    # Names that do not compress: the provisioning script travels gzipped.
    big = make_spec(extra_packages=tuple(hashlib.sha256(str(i).encode()).hexdigest() for i in range(2500)))
    user_data = render(big)
    with pytest.raises(UserDataTooLarge, match=r"hetzner accepts at most 32 KiB"):
        check_size(user_data, USER_DATA_LIMITS["hetzner"], "hetzner")


def test_schema_errors_are_reported(real_cloud_init: None) -> None:
    with pytest.raises(UserDataInvalid, match="cloud-init schema"):
        check_schema("#cloud-config\nusers: 12\npackages: {a: 1}\n")


# --- hostile input -------------------------------------------------------------------------

SENTINEL = "/tmp/vmgen-hostile-sentinel"
HOSTILE_URLS = [
    f"https://example.com/a;touch${{IFS}}{SENTINEL}",
    f"https://example.com/$(touch${{IFS}}{SENTINEL})",
    f"https://example.com/`touch${{IFS}}{SENTINEL}`",
    'https://example.com/it\'s"quoted"',
    "https://example.com/key:${IFS}value",
    "https://example.com/caf\u00e9/\u2603",
    "git@example.com:me/a|b&c>d",
]
HOSTILE_BRANCHES = [
    f"$(touch${{IFS}}{SENTINEL})",
    f"`touch${{IFS}}{SENTINEL}`",
    f"x;touch${{IFS}}{SENTINEL}",
    'it\'s"q"',
    "a#b",
    "br\u00e4nch-\u2603",
    "-",
]
# Stubs for every command provision.sh runs: record argv, execute nothing. PATH is empty, so a
# command without a stub fails the test instead of running on this machine.
STUBS = """
record() {  # one write per call: the install steps run side by side and append at once
  local entry; entry=$(printf '%s' "$1"; shift; for a in "$@"; do printf '\\037%s' "$a"; done)
  printf '%s\\036' "$entry" >> "$RECORD"
}
for cmd in apt-get cat rm ufw systemctl systemd-tmpfiles npm python3 ln install runuser date find chown id useradd \\
           curl tar sha512sum sha256sum cut \\
           /usr/local/bin/node /usr/local/bin/npm /opt/vmgen/bin/pip; do
  eval "$(printf '%q() { record %q "$@"; }' "$cmd" "$cmd")"
done
tee() { /bin/cat; record tee "$@"; }
mktemp() { /bin/mkdir -p "$RECORD.d" && echo "$RECORD.d"; }
command() { return 0; }
dpkg() { record dpkg "$@"; echo amd64; }
"""


def run_provision(user_data: str, tmp_path: Path) -> list[list[str]]:
    script = files_of(user_data)["/usr/local/lib/vmgen/provision.sh"]["content"]
    (tmp_path / "provision.sh").write_text(script)
    record = tmp_path / "record"
    record.touch()
    subprocess.run(
        ["/bin/bash", "-c", STUBS + f"\nsource {tmp_path / 'provision.sh'}"],
        env={"RECORD": str(record), "PATH": str(tmp_path / "empty")},
        check=True,
        capture_output=True,
    )
    return [entry.split("\x1f") for entry in record.read_text().split("\x1e") if entry]


def test_a_failed_background_install_is_reported_under_its_own_name(tmp_path: Path) -> None:
    """npm fails while the clone runs: the report must name the agent's install and show npm's
    words, not the phase that happened to be printed last."""
    from vmgen.laptop.readiness import failure_report

    script = files_of(render(make_spec()))["/usr/local/lib/vmgen/provision.sh"]["content"]
    (tmp_path / "provision.sh").write_text(script)
    (tmp_path / "record").touch()
    failing_npm = 'npm() { echo "npm error 404 No matching version found for claude-code@0.0.0"; return 1; }\n'
    failing_npm += 'cat() { /bin/cat "$@"; }\n'  # the step's output is shown, not only recorded
    result = subprocess.run(
        ["/bin/bash", "-c", STUBS + failing_npm + f"date() {{ echo 1.0; }}\nsource {tmp_path / 'provision.sh'}"],
        env={"RECORD": str(tmp_path / "record"), "PATH": str(tmp_path / "empty")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    report = failure_report(result.stdout.splitlines())
    assert "phase 'agent-install'" in report and "No matching version found" in report
    assert "phase agent-unit" not in result.stdout  # it stopped before the units


@pytest.mark.parametrize("url", HOSTILE_URLS)
@pytest.mark.parametrize("branch", [None, *HOSTILE_BRANCHES[:3]])
def test_hostile_urls_and_branches_reach_git_verbatim_and_run_nothing(url, branch, tmp_path: Path) -> None:
    Path(SENTINEL).unlink(missing_ok=True)
    user_data = render(make_spec(source=GitSource(url, branch)))
    check_schema(user_data)
    calls = run_provision(user_data, tmp_path)
    clone = next(call for call in calls if call[0] == "runuser" and "clone" in call)
    expected_branch = ["--branch", branch] if branch else []
    assert clone == [
        "runuser",
        "-u",
        "agent",
        "--",
        "git",
        "clone",
        *expected_branch,
        "--",
        url,
        "/home/agent/work/app",
    ]
    assert not Path(SENTINEL).exists(), "a hostile value was executed"


@pytest.mark.parametrize("branch", HOSTILE_BRANCHES)
def test_hostile_branches_survive_yaml(branch: str) -> None:
    user_data = render(make_spec(source=GitSource("https://example.com/app", branch)))
    record = yaml.safe_load(files_of(user_data)["/etc/vmgen/workspace.json"]["content"])
    assert record["source"] == f"https://example.com/app#{branch}"


def test_hostile_key_comment_stays_data() -> None:
    key = KEY.rsplit(" ", 1)[0] + " evil: #comment - [x] $(touch /tmp/x) '\""
    config = yaml.safe_load(render(make_spec(ssh_keys=(key,))))
    assert config["users"][0]["ssh_authorized_keys"] == [key]


def test_a_server_made_again_from_a_kept_disk_changes_nothing_on_it() -> None:
    """Booting a kept snapshot is a new instance to cloud-init: no default user (Debian's has
    sudo), and the host keys stay (the laptop pins them)."""
    from vmgen.laptop.builder.render import render_kept_boot

    user_data = render_kept_boot("app", (KEY,))
    check_schema(user_data)
    config = yaml.safe_load(user_data)
    assert config["users"] == [
        {"name": "agent", "lock_passwd": True, "shell": "/bin/bash", "ssh_authorized_keys": [KEY]}
    ]  # no "default"
    assert config["ssh_deletekeys"] is False and config["ssh_genkeytypes"] == ["ed25519"]
    assert config["disable_root"] is True and config["ssh_pwauth"] is False


LAST = "0d4b2a6e-1f0c-4c8e-9a51-3b7f2d9e6c10"


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), f"--resume {LAST} --dangerously-skip-permissions"),  # a home from before sessions were recorded
        (("--new",), "--session-id * --dangerously-skip-permissions"),
        (("--session", LAST), f"--resume {LAST} --dangerously-skip-permissions"),
        (("--session", "9" * 36), "--session-id * --dangerously-skip-permissions"),  # not an id: a fresh one
    ],
)
def test_a_further_session_starts_a_fresh_conversation_where_the_first_resumes(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    runner = files_of(render(make_spec()))["/usr/local/lib/vmgen/agent-run"]["content"]
    runner = runner.replace("/home/agent", str(tmp_path)).replace("exec bash -l", "exit 0")
    (tmp_path / "work/app").mkdir(parents=True)
    (tmp_path / ".claude/projects/-home-agent-work-app").mkdir(parents=True)
    (tmp_path / f".claude/projects/-home-agent-work-app/{LAST}.jsonl").write_text("{}\n")  # a conversation
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/claude").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/claude-args\n')
    (tmp_path / "bin/claude").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    env.pop("TMUX_PANE", None)
    subprocess.run(["bash", "-c", runner, "agent-run", *args], env=env, capture_output=True, check=True, timeout=30)
    called = (tmp_path / "claude-args").read_text().strip()
    assert fnmatch.fnmatch(called, expected), called
    assert ("*" not in expected) or LAST not in called, called  # a fresh one: not the last conversation
