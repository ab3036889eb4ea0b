"""Per-workspace backup identities on the laptop.

Each workspace has its own age X25519 identity. The private half stays here (0600, sealed with
VMGEN_PASSPHRASE when set); the VM only ever gets the public recipient. An identity outlives
`vmgen destroy` when backups in the store were encrypted to it: it is what makes them
restorable. One that nothing was encrypted to (a workspace that never came up, or never backed
up) goes with its workspace; `vmgen identities` lists the rest and removes them on request.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..backup.crypto import Identity, generate_identity, is_protected, load_identity, save_identity
from ..errors import UsageError
from .config import state_dir

if TYPE_CHECKING:
    from ..backup.store import Store


def identity_path(name: str) -> Path:
    return state_dir() / "identities" / f"{name}.age-identity"


def recipient_path(name: str) -> Path:
    return state_dir() / "identities" / f"{name}.recipient"


def has_identity(name: str) -> bool:
    return identity_path(name).is_file()


def discard_identity(name: str) -> None:
    """For a workspace that never came up: nothing was ever encrypted to its recipient."""
    identity_path(name).unlink(missing_ok=True)
    recipient_path(name).unlink(missing_ok=True)


def ensure_identity(name: str) -> str:
    """The workspace's recipient, creating its identity on first use."""
    recipient_file = recipient_path(name)
    if recipient_file.is_file() and identity_path(name).is_file():
        return recipient_file.read_text().strip()
    text, recipient = generate_identity()
    save_identity(identity_path(name), text, passphrase=os.environ.get("VMGEN_PASSPHRASE") or None)
    recipient_file.write_text(recipient + "\n")
    return recipient


def load_for_restore(name: str) -> Identity:
    path = identity_path(name)
    if not path.is_file():
        raise UsageError(f"no backup identity for {name!r} at {path}: backups of it cannot be decrypted here")
    passphrase = os.environ.get("VMGEN_PASSPHRASE") or None
    if passphrase is None and is_protected(path.read_bytes()) and sys.stdin.isatty():
        import click

        passphrase = click.prompt(f"passphrase for {name}'s backup identity", hide_input=True)
    return load_identity(path, passphrase)


def identity_names() -> list[str]:
    """Every workspace name with an identity on this machine."""
    folder = state_dir() / "identities"
    return sorted(path.name.removesuffix(".age-identity") for path in folder.glob("*.age-identity"))


def recipient_of(name: str) -> str:
    try:
        return recipient_path(name).read_text().strip()
    except FileNotFoundError:
        return ""


def backups_encrypted_to(name: str, store: Store) -> int:
    """How many of NAME's backups in the store were encrypted to its identity here: the ones that
    cannot be restored without it."""
    from ..backup.manifest import list_backups

    recipient = recipient_of(name)
    return sum(1 for manifest in list_backups(store, name) if manifest.recipient == recipient)
