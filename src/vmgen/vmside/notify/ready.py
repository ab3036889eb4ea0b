""" "Ready" and "restored and ready": said once, when the first boot's provisioning ends (its
`phase done` line in root's phase log) after the watchdog service started, so a reboot or
`vmgen start` says nothing. Both files are root's (written by provisioning and root's restore)."""

from __future__ import annotations

import os

from ...contract import codec
from ...contract.documents import RestoreResult
from ...contract.names import VM, VmPaths
from ...errors import DocumentError
from .policy import Notice, ready_notice

READ_MAX = 64 << 10  # the phase log's tail: a few hundred short lines


def provisioned_at(text: str) -> float | None:
    """When provisioning said `done` (`vmgen-phase <epoch> done`), or None."""
    for line in reversed(text.splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "vmgen-phase" and parts[2] == "done":
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def provisioned(paths: VmPaths = VM) -> float | None:
    """When this workspace's provisioning ended (wall clock), or None while it has not."""
    try:
        with open(paths.phases_log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - READ_MAX))
            return provisioned_at(f.read(READ_MAX).decode(errors="replace"))
    except OSError:
        return None


def ready_notice_of(paths: VmPaths = VM) -> Notice:
    """ "restored and ready" where root's restore succeeded, else "ready"."""
    try:
        result = codec.loads(RestoreResult, paths.restore_result.read_bytes()[:READ_MAX], strict=False)
    except (OSError, ValueError, DocumentError):
        return ready_notice(restored=False)
    return ready_notice(restored=result.ok)


__all__ = ["provisioned", "provisioned_at", "ready_notice_of"]
