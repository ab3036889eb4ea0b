"""The fixed words of vmgen's settings and documents, each set spelled once.

StrEnums: a member is its word wherever it is written (TOML, JSON, a message), and a document
read with a word outside its set is refused (see codec.py).
"""

from __future__ import annotations

import enum


class IdleAction(enum.StrEnum):
    """What the watchdog does once the workspace is idle (or its hard lifetime is over)."""

    POWEROFF = "poweroff"
    DELETE = "delete"  # through the provider's API; docker powers off
    BACKUP_THEN_DELETE = "backup-then-delete"  # deletes only after a verified backup


class BudgetAction(enum.StrEnum):
    """What a running workspace does once its share of `budget_month` is spent."""

    WARN = "warn"  # tells (`vmgen status`, the page, the notifier) and goes on
    STOP = "stop"  # the idle action's safe path: backup, then delete or stop as the provider does


class StoreKind(enum.StrEnum):
    """Where a workspace's backups go."""

    LOCAL = "local"  # a folder (docker: mounted into the workspace)
    S3 = "s3"  # an S3-compatible bucket: Cloudflare R2 in production


class TlsMode(enum.StrEnum):
    """Where the workspace's hostnames get their certificates."""

    ACME = "acme"  # Let's Encrypt, or another ACME server (acme_ca), by HTTP-01
    INTERNAL = "internal"  # Caddy's own CA, for networks no ACME server reaches


class WorkspaceStatus(enum.StrEnum):
    """A workspace's state as its provider reports it, in vmgen's words."""

    RUNNING = "running"
    STOPPED = "stopped"
    STARTING = "starting"
    STOPPING = "stopping"
    DELETING = "deleting"
    UNKNOWN = "unknown"  # a word of the provider's that vmgen does not know


class PermissionMode(enum.StrEnum):
    """Whether the agent asks before it acts: `bypass` skips every prompt (the VM is its sandbox);
    the others are Claude Code's own permission modes, whose prompts the page can answer."""

    BYPASS = "bypass"  # claude --dangerously-skip-permissions
    DEFAULT = "default"  # asks before each tool that changes anything
    ACCEPT_EDITS = "acceptEdits"  # edits in the workspace without asking; asks for the rest (Bash)
    PLAN = "plan"  # reads and plans; asks before anything else


__all__ = ["BudgetAction", "IdleAction", "PermissionMode", "StoreKind", "TlsMode", "WorkspaceStatus"]
