"""Backups and restores as run on the VM, by root (the store's credentials are root-only).

The agent user asks for either by creating a request file that a systemd path unit watches; the
result is written where the agent user (and so the CLI over SSH) can read it, without secrets.
"""

from __future__ import annotations

import json
import os
import pwd
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from ..backup.crypto import parse_identity
from ..backup.pipeline import create_backup, restore_backup
from ..backup.target import load_vm_config
from ..errors import VmgenError
from .jsonfile import write_json
from .paths import VmPaths

# vmgen's own per-boot state and what the CLI delivers again at every launch: restoring an old
# handover mark would start the agent before its credentials arrive, old leases would hold the
# new VM up, and the delivered API key has no business in a backup.
RUNTIME_EXCLUDES = (
    ".vmgen/handover-done", ".vmgen/backup-request", ".vmgen/leases.json", ".vmgen/agent-events.jsonl",
    ".config/vmgen/agent.env",
)


class BackupNotConfigured(VmgenError):
    """No backup store was configured for this workspace."""


def run_backup(request_id: str = "", paths: VmPaths = VmPaths()) -> dict:
    """Back up the agent's home; returns (and records) the manifest summary or the error."""
    started = time.monotonic()
    try:
        config = load_vm_config(paths.config)
        if config is None:
            raise BackupNotConfigured("this workspace has no backup store configured")
        manifest = create_backup(paths.home, config.target.open(), config.workspace, config.recipient,
                                 excludes=config.target.excludes + RUNTIME_EXCLUDES, keep_last=config.target.keep_last)
        result = {"ok": True, "backup_id": manifest.backup_id, "ciphertext_bytes": manifest.ciphertext_bytes,
                  "plaintext_bytes": manifest.plaintext_bytes, "excluded": _excluded(manifest)}
    except Exception as exc:  # noqa: BLE001 - reported to the CLI as one line
        result = {"ok": False, "error": str(exc) or type(exc).__name__, "trace": traceback.format_exc(limit=3)}
    result |= {"request_id": request_id, "seconds": round(time.monotonic() - started, 2), "finished_at": time.time()}
    write_json(paths.backup_result, result)
    return result


def run_backup_request(paths: VmPaths = VmPaths()) -> dict:
    """Triggered by the path unit: consume the request file first, so a later request retriggers."""
    try:
        request_id = paths.backup_request.read_text().strip()
    except FileNotFoundError:
        request_id = ""
    paths.backup_request.unlink(missing_ok=True)
    return run_backup(request_id, paths)


def run_restore(paths: VmPaths = VmPaths()) -> dict:
    """Restore the requested backup into the agent's home, using the identity the CLI pushed into
    /run (tmpfs) for this restore only; the identity is removed as soon as it is read."""
    started = time.monotonic()
    try:
        try:
            identity = parse_identity(paths.restore_identity.read_text())
        finally:
            paths.restore_identity.unlink(missing_ok=True)
        request = json.loads(paths.restore_request.read_text())
        config = load_vm_config(paths.config)
        if config is None:
            raise BackupNotConfigured("this workspace has no backup store configured")
        agent = pwd.getpwnam(paths.user)
        owner = (agent.pw_uid, agent.pw_gid)
        # The new VM's keys are the ones the user launched it with, not the backed-up ones.
        keys = paths.authorized_keys.read_bytes() if paths.authorized_keys.is_file() else None
        manifest = restore_backup(config.target.open(), request["workspace"], request.get("backup_id") or None,
                                  identity, paths.home, merge=True, owner=owner)
        if keys is not None:
            _put_back(paths.authorized_keys, keys, owner)
        result = {"ok": True, "backup_id": manifest.backup_id, "plaintext_bytes": manifest.plaintext_bytes}
    except Exception as exc:  # noqa: BLE001 - reported to the CLI as one line
        result = {"ok": False, "error": str(exc) or type(exc).__name__}
    result |= {"seconds": round(time.monotonic() - started, 2), "finished_at": time.time()}
    write_json(paths.restore_result, result)
    return result


def _put_back(path: Path, content: bytes, owner: tuple[int, int]) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, *owner)
    path.write_bytes(content)
    os.chmod(path, 0o600)
    os.chown(path, *owner)


def _excluded(manifest) -> list[dict]:
    return [asdict(stat) for stat in manifest.summary.excluded
            if stat.entries and stat.pattern not in RUNTIME_EXCLUDES]
