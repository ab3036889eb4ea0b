"""What the CLI says is true (issue 25), where no workspace needs to boot to tell: an unknown
workspace is called unknown, a size no provider has is refused before anything is made (and the
credentials warning, which matters only for a launch that goes ahead, is not printed for one that
is refused), the watchdog's interval and warning lead are options, `config show` lines are as
long as what they say, `vmgen backups` shows what each backup left out, and `vmgen identities`
lists and removes identities deliberately."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from vmgen.laptop.builder.render import written_files
from vmgen.laptop.identities import ensure_identity, has_identity

from .test_cli import one_error_line, vmgen

URL = "https://github.com/me/app"
DOCKER_IMAGE = os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")


def test_login_of_an_unknown_workspace_says_there_is_none(home: Path) -> None:
    result = vmgen(home, "login", "nothing-here")
    line = one_error_line(result)
    assert result.returncode == 2 and "no workspace named 'nothing-here'" in line and "domain" not in line


def test_a_size_no_provider_has_is_refused_in_one_line(home: Path) -> None:
    for provider in ("docker", "hetzner"):
        result = vmgen(home, "render", URL, "--provider", provider, "--size", "huge")
        assert result.returncode == 2
        assert "unknown size 'huge': use small, medium, large" in one_error_line(result)


def test_a_server_type_on_docker_is_refused_before_anything_is_made_and_without_the_warning(home: Path) -> None:
    (home / "repo").mkdir()
    name = f"t25-{secrets.token_hex(3)}"  # a name of its own: the engine may be shared
    result = vmgen(
        home,
        "launch",
        str(home / "repo"),
        "--name",
        name,
        "--provider",
        "docker",
        "--type",
        "cx33",
        VMGEN_DOCKER_IMAGE=DOCKER_IMAGE,
    )
    assert result.returncode == 2
    assert "docker workspaces have no size or type 'cx33'" in one_error_line(result)  # no credentials warning
    assert not (home / f".local/state/vmgen/workspaces/{name}").exists()
    assert not (home / f".local/state/vmgen/identities/{name}.age-identity").exists()


def watch_settings(user_data: str) -> str:
    return written_files(user_data)["/etc/vmgen/idlewatch.toml"]


def test_the_watchdogs_interval_and_warning_lead_are_options(home: Path) -> None:
    result = vmgen(home, "render", URL, "--idle-interval", "7", "--idle-warn", "3")
    assert result.returncode == 0, result.stderr
    settings = watch_settings(result.stdout)
    assert "interval_seconds = 7.0" in settings and "warn_minutes = 3.0" in settings
    # The configured value when the option is not given; the option's when it is.
    configured = {"VMGEN_IDLE_WARN_MINUTES": "4"}
    assert "warn_minutes = 4.0" in watch_settings(vmgen(home, "render", URL, **configured).stdout)
    given = vmgen(home, "render", URL, "--idle-warn", "2", **configured)
    assert "warn_minutes = 2.0" in watch_settings(given.stdout)
    refused = vmgen(home, "render", URL, "--idle-interval", "0.2")
    assert (
        refused.returncode == 2
        and "--idle-interval (idle_interval_seconds) is 0.2: it takes a number from 1 to 3600"
        in one_error_line(refused)
    )


def test_config_show_lines_are_as_long_as_what_they_say(home: Path) -> None:
    result = vmgen(home, "config", "show")
    lines = result.stdout.splitlines()
    assert lines and all(line == line.rstrip() for line in lines)
    assert max(len(line) for line in lines if not line.startswith("backup_excludes")) < 120, lines


def test_backups_show_what_each_backup_left_out(home: Path) -> None:
    from vmgen.backup import LocalStore, create_backup, generate_identity

    work = home / "work"
    (work / "node_modules/pkg").mkdir(parents=True)
    (work / "node_modules/pkg/index.js").write_text("x" * 4096)
    (work / "a.txt").write_text("a")
    _text, recipient = generate_identity()
    create_backup(work, LocalStore(home / ".local/share/vmgen/backups"), "app", recipient, excludes=("node_modules",))
    listed = vmgen(home, "backups", "app", "--provider", "docker")
    header, row = listed.stdout.splitlines()[:2]
    assert "EXCLUDED" in header and "node_modules 4.0 KiB" in row, listed.stdout


def test_identities_are_listed_and_removed_deliberately(home: Path) -> None:
    assert "no backup identities" in vmgen(home, "identities").stderr
    ensure_identity("app")
    listed = vmgen(home, "identities")
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == ["app"])
    assert row.split()[1:4] == ["-", "0", "no"]  # no workspace; no backup needs it; no passphrase
    refused = vmgen(home, "identities", "rm", "app")
    assert refused.returncode == 2 and "pass --yes" in one_error_line(refused) and has_identity("app")
    removed = vmgen(home, "identities", "rm", "app", "--yes")
    assert removed.returncode == 0 and not has_identity("app")
    assert "no backup in the store needs it" in removed.stderr


def gone_workspace(home: Path, name: str, backed_up: bool) -> None:
    """The local record of a docker workspace that came up and is gone (it deleted itself), with
    its identity; `backed_up`: with a backup of it in the local store, encrypted to that identity."""
    from vmgen.backup import LocalStore, create_backup
    from vmgen.laptop.state import WorkspaceRecord, WorkspaceState

    store = home / ".local/share/vmgen/backups"
    recipient = ensure_identity(name)
    if backed_up:
        work = home / f"work-{name}"
        work.mkdir()
        (work / "a.txt").write_text("a")
        create_backup(work, LocalStore(store), name, recipient)
    record = WorkspaceRecord(
        name=name, provider="docker", created_at=0.0, source="x", agent="claude", backup_store=f"local folder {store}"
    )
    WorkspaceState(name).create(record, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0Kj")


def test_destroy_keeps_an_identity_backups_need_and_removes_one_they_do_not(home: Path) -> None:
    gone_workspace(home, "kept", backed_up=True)
    gone_workspace(home, "unused", backed_up=False)
    kept = vmgen(home, "destroy", "kept", "--yes", VMGEN_DOCKER_IMAGE=DOCKER_IMAGE)
    assert kept.returncode == 0 and has_identity("kept")
    assert "kept its backup identity" in kept.stderr and "1 backup(s) in local folder" in kept.stderr
    assert "`vmgen identities rm kept`" in kept.stderr
    unused = vmgen(home, "destroy", "unused", "--yes", VMGEN_DOCKER_IMAGE=DOCKER_IMAGE)
    assert unused.returncode == 0 and not has_identity("unused")
    assert "its backup identity went with it (no backup in local folder" in unused.stderr
    row = next(line for line in vmgen(home, "identities").stdout.splitlines() if line.split()[:1] == ["kept"])
    assert row.split()[1:3] == ["-", "1"], row  # no workspace; one backup needs it


def test_image_list_names_the_agent_version_a_bake_installed() -> None:
    from datetime import UTC, datetime

    from vmgen.laptop.cli.images import agent_baked
    from vmgen.laptop.stamps import BakedImage, ImageStamp, installed_version

    def baked(pin: str, installed: str) -> BakedImage:
        return BakedImage(
            ref="x",
            name="x",
            created_at=datetime.now(UTC),
            stamp=ImageStamp("p", pin, "v"),
            base="",
            agent_version=installed,
        )

    assert installed_version("2.1.332 (Claude Code)\n") == "2.1.332"
    assert agent_baked(baked("claude-latest", "2.1.332")) == "claude-latest (2.1.332)"
    assert agent_baked(baked("claude-2.1.332", "2.1.332")) == "claude-2.1.332"
    assert agent_baked(baked("claude-latest", "")) == "claude-latest"  # baked before vmgen recorded it


def test_a_program_that_hangs_past_its_deadline_is_one_line_not_a_traceback() -> None:
    import subprocess

    import click
    from click.testing import CliRunner

    from vmgen.laptop.cli.app import VmgenGroup

    @click.group(cls=VmgenGroup)
    def group() -> None:
        pass

    @group.command()
    def hang() -> None:
        raise subprocess.TimeoutExpired(["ssh", "-p", "22", "agent@203.0.113.9", "true"], 15)

    result = CliRunner().invoke(group, ["hang"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: ssh did not finish within 15s"
