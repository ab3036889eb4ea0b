"""What the CLI says is true (issue 25), where no workspace needs to boot to tell: `config show`
lines are as long as what they say, `vmgen backups` shows what each backup left out."""

from __future__ import annotations

import os
from pathlib import Path

from .test_cli import vmgen

URL = "https://github.com/me/app"
DOCKER_IMAGE = os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")


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
