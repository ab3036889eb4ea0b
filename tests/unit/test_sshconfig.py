"""`ssh vmgen-<name>` with no flags: vmgen's own file of entries, one Include line on top of the
user's ~/.ssh/config and nothing else of it touched, read by the real OpenSSH client (`ssh -G`
resolves a host's options without connecting; one test connects to a real sshd)."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.unit.test_ssh import sshd  # noqa: F401 - the real sshd fixture
from vmgen.errors import SshConfigError
from vmgen.laptop.builder.hostkeys import generate_host_key
from vmgen.laptop.sshconfig import (
    CONNECT_TIMEOUT,
    SshEntry,
    SshFiles,
    connect_lines,
    include_line,
    render_entry,
    sync,
)
from vmgen.laptop.state import SshReach, WorkspaceRecord, WorkspaceState
from vmgen.laptop.values import SSHEndpoint

USER_CONFIG = (
    b"# my own config\r\n"
    b"Host *\n"
    b"  User bob\n"
    b"  StrictHostKeyChecking no\n"
    b"  UserKnownHostsFile /elsewhere/known_hosts\n"
    b"  IdentitiesOnly no\n"
    b"\n"
    b"Host work\n"
    b"  HostName work.example.com\n"
    b"  Port 2222"  # no newline at the end
)


def resolved(config: Path, host: str) -> dict[str, list[str]]:
    """What the real ssh makes of HOST with this config (`ssh -G`: nothing is connected)."""
    result = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=True)
    options: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return options


def reachable(state_root: Path, name: str, port: int, user: str = "agent", identities=()) -> WorkspaceState:
    state = WorkspaceState(name, state_root)
    state.create(WorkspaceRecord(name, "docker", time.time(), "/src", "claude"), "ssh-ed25519 AAAAC3hostkey")
    state.record_reach(SshReach(SSHEndpoint("127.0.0.1", port, user), tuple(identities)))
    return state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_entry_wins_over_the_users_host_star_and_leaves_the_users_hosts_as_they_were(home: Path) -> None:
    files = SshFiles.of_home(home)
    files.user_config.write_bytes(USER_CONFIG)
    root = home / "state"
    key = home / ".ssh" / "id_ed25519"
    state = reachable(root, "app", 32771, identities=[key])
    assert files.install_include() == ""
    assert sync(files, root)
    app = resolved(files.user_config, "vmgen-app")
    assert app["hostname"] == ["127.0.0.1"] and app["port"] == ["32771"] and app["user"] == ["agent"]
    assert app["stricthostkeychecking"] == ["true"]
    assert app["userknownhostsfile"] == [str(state.known_hosts)] and app["hostkeyalias"] == ["vmgen-app"]
    assert app["identityfile"][0] == str(key) and app["identitiesonly"] == ["yes"]
    assert app["connecttimeout"] == [str(CONNECT_TIMEOUT)]
    # The user's own hosts resolve as before, vmgen's line on top notwithstanding.
    work = resolved(files.user_config, "work")
    assert work["hostname"] == ["work.example.com"] and work["port"] == ["2222"] and work["user"] == ["bob"]
    assert work["stricthostkeychecking"] == ["false"]


def test_one_line_on_top_once_and_the_uninstall_gives_back_every_byte(home: Path) -> None:
    files = SshFiles.of_home(home)
    files.user_config.write_bytes(USER_CONFIG)
    files.user_config.chmod(0o644)
    files.install_include()
    added = files.user_config.read_bytes()
    assert added == include_line(files.vmgen_config).encode() + b"\n" + USER_CONFIG
    assert mode(files.user_config) == 0o644  # the user's mode is kept
    files.install_include()
    sync(files, home / "state")
    assert files.user_config.read_bytes() == added  # idempotent
    done = files.uninstall()
    assert files.user_config.read_bytes() == USER_CONFIG and mode(files.user_config) == 0o644
    assert any("Include line" in line for line in done)
    assert not files.vmgen_dir.exists()
    assert sorted(p.name for p in files.ssh_dir.iterdir()) == ["config", "id_ed25519", "id_ed25519.pub"]


def test_a_line_the_user_moved_or_wrote_is_not_added_again(home: Path) -> None:
    files = SshFiles.of_home(home)
    own = USER_CONFIG + b"\n" + include_line(files.vmgen_config).encode() + b"\n"
    files.user_config.write_bytes(own)
    files.install_include()
    assert files.user_config.read_bytes() == own
    files.user_config.write_bytes(b"Include ~/.ssh/vmgen/config\n" + USER_CONFIG)
    files.install_include()
    assert files.user_config.read_bytes() == b"Include ~/.ssh/vmgen/config\n" + USER_CONFIG


def test_a_missing_config_is_made_owner_only_and_goes_with_the_uninstall(home: Path) -> None:
    files = SshFiles.of_home(home)
    old = os.umask(0)
    try:
        files.install_include()
        sync(files, home / "state")
    finally:
        os.umask(old)
    assert files.user_config.read_bytes() == include_line(files.vmgen_config).encode() + b"\n"
    assert mode(files.user_config) == 0o600 and mode(files.vmgen_config) == 0o600 and mode(files.vmgen_dir) == 0o700
    files.uninstall()
    assert not files.user_config.exists() and not files.vmgen_dir.exists()


def test_a_symlinked_config_is_never_edited_and_the_user_is_told_the_line(home: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "ssh_config").write_bytes(USER_CONFIG)
    files = SshFiles.of_home(home)
    files.user_config.symlink_to(dotfiles / "ssh_config")
    note = files.install_include()
    assert "is a symlink" in note and include_line(files.vmgen_config) in note
    assert files.user_config.is_symlink() and (dotfiles / "ssh_config").read_bytes() == USER_CONFIG
    # Once the user added it there, nothing is said; the uninstall leaves their file to them.
    (dotfiles / "ssh_config").write_bytes(include_line(files.vmgen_config).encode() + b"\n" + USER_CONFIG)
    assert files.install_include() == ""
    files.uninstall()
    assert files.user_config.is_symlink()
    assert (dotfiles / "ssh_config").read_bytes() == include_line(files.vmgen_config).encode() + b"\n" + USER_CONFIG


def test_entries_follow_the_records_and_a_file_nobody_wanted_is_not_made(home: Path) -> None:
    files = SshFiles.of_home(home)
    root = home / "state"
    assert not sync(files, root, create=False) and not files.vmgen_config.exists()  # an opted-out user
    reachable(root, "app", 2201)
    reachable(root, "web", 2202)
    WorkspaceState("never-up", root).create(
        WorkspaceRecord("never-up", "docker", time.time(), "/src", "claude"), "ssh-ed25519 A"
    )
    assert sync(files, root)
    hosts = [line for line in files.vmgen_config.read_text().splitlines() if line.startswith("Host ")]
    assert hosts == ["Host vmgen-app", "Host vmgen-web"]
    assert not sync(files, root)  # unchanged: not rewritten
    WorkspaceState("app", root).remove()
    assert sync(files, root, create=False)
    assert "vmgen-app" not in files.vmgen_config.read_text() and "Host vmgen-web" in files.vmgen_config.read_text()
    leftovers = [p.name for p in files.vmgen_dir.iterdir() if p.name not in ("config", ".lock")]
    assert leftovers == []  # no temp file left behind


def test_a_path_ssh_cannot_be_given_is_refused_not_mangled(home: Path) -> None:
    with pytest.raises(SshConfigError, match="quote"):
        render_entry(SshEntry("vmgen-app", "127.0.0.1", 22, "agent", home / 'a"b', ()))
    with pytest.raises(SshConfigError):
        render_entry(SshEntry("vmgen-app", "127.0.0.1", 22, "agent", home / "${HOME}", ()))


def test_ssh_with_no_flags_but_the_config_reaches_the_workspace_pinned(sshd, home: Path) -> None:  # noqa: F811
    """Through the real sshd, with paths ssh would split (a space) or expand (a %) on the way."""
    port, host_key, identity = sshd
    odd_identity = home / "my keys" / "id 100%"
    odd_identity.parent.mkdir()
    odd_identity.write_bytes(identity.read_bytes())
    odd_identity.chmod(0o600)
    files = SshFiles.of_home(home)
    root = home / "state 100%"
    state = reachable(root, "box", port, user=getpass.getuser(), identities=[odd_identity])
    state.write("known_hosts", f"{state.host_alias} {host_key.public_openssh}\n")
    files.user_config.write_bytes(USER_CONFIG)
    files.install_include()
    sync(files, root)
    ok = subprocess.run(["ssh", "-F", str(files.user_config), "vmgen-box", "echo", "reached"], capture_output=True)
    assert ok.returncode == 0 and ok.stdout == b"reached\n", ok.stderr
    state.write("known_hosts", f"vmgen-box {generate_host_key().public_openssh}\n")  # another key
    refused = subprocess.run(["ssh", "-F", str(files.user_config), "vmgen-box", "true"], capture_output=True)
    assert refused.returncode == 255 and b"Host key verification failed" in refused.stderr


def test_the_ide_lines_open_the_repository_folder() -> None:
    lines = dict(connect_lines("app"))
    assert lines["ssh"] == "ssh vmgen-app"
    assert lines["VS Code"] == "code --remote ssh-remote+vmgen-app /home/agent/work/app"
    assert lines["Cursor"] == "cursor --remote ssh-remote+vmgen-app /home/agent/work/app"
    assert "host vmgen-app" in lines["Gateway"] and lines["Gateway"].endswith("project /home/agent/work/app")
    assert dict(connect_lines("copy", "/home/agent/work/app"))["VS Code"].endswith(" /home/agent/work/app")


def test_a_home_with_a_space_is_included_whole(tmp_path: Path) -> None:
    files = SshFiles(tmp_path / "my home" / ".ssh")
    files.install_include()
    root = tmp_path / "state"
    reachable(root, "app", 2201)
    sync(files, root)
    assert resolved(files.user_config, "vmgen-app")["port"] == ["2201"]


def test_opting_out_leaves_ssh_alone_and_opting_in_writes_the_entry(home: Path) -> None:
    import click

    from vmgen.laptop.cli.access import offer_ssh_entry
    from vmgen.laptop.cli.app import main
    from vmgen.laptop.config import Settings

    WorkspaceState("app").create(WorkspaceRecord("app", "docker", time.time(), "/src", "claude"), "ssh-ed25519 A")
    before = sorted(p.name for p in (home / ".ssh").iterdir())
    with click.Context(main) as context:
        context.obj = Settings(ssh_config=False)
        assert not offer_ssh_entry("app", SSHEndpoint("127.0.0.1", 2201), ())
    assert sorted(p.name for p in (home / ".ssh").iterdir()) == before and WorkspaceState("app").reach() is None
    with click.Context(main) as context:
        context.obj = Settings()
        assert offer_ssh_entry("app", SSHEndpoint("127.0.0.1", 2201), ())
    assert resolved(home / ".ssh" / "config", "vmgen-app")["port"] == ["2201"]
