"""Who made a workspace or an image, on a Docker engine or a cloud project that several people share.

`user@host` is for people to read, but it does not tell users apart who share a uid on one
machine (everyone who is root there is root@host). What does is the user's own vmgen state
folder: it holds a random owner id, made on first use, and everything vmgen makes carries it in a
label beside `user@host`. Things made by a vmgen from before owner ids carry `user@host` alone.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
from collections.abc import Callable

from ..contract.names import OWNER_ID_LABEL, OWNER_LABEL
from .config import state_dir

_ID_RE = re.compile(r"^[0-9a-f]{16}$")


def local_owner() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a container's user)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def owner_id() -> str:
    """This user's owner id, from their vmgen state folder (made there on first use)."""
    path = state_dir() / "owner-id"
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if _ID_RE.match(found):
        return found
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = secrets.token_hex(8)
    try:
        # O_EXCL: two first runs at once agree on one id, the one written first.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        found = path.read_text().strip()
        if _ID_RE.match(found):
            return found
        path.unlink()  # not an id (a broken write): replaced
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(made + "\n")
    return made


def owner_labels(value: Callable[[str], str] = str) -> dict[str, str]:
    """The labels that say who made something; `value` fits user@host to the provider's rules."""
    return {OWNER_LABEL: value(local_owner()), OWNER_ID_LABEL: owner_id()}


def owned(owner: str, made_by: str, value: Callable[[str], str] = str) -> bool | None:
    """True when this user made it (the owner id says so), False when someone else did; None when
    it cannot tell: made by a vmgen from before owner ids by this user@host (or by anyone, before
    vmgen recorded owners at all)."""
    if made_by:
        return made_by == owner_id()
    me = local_owner()
    if owner and owner not in (me, value(me)):
        return False
    return None


def describe_owner(owner: str, made_by: str) -> str:
    """For an OWNER column: user@host, and the id's start, which tells two root@host apart."""
    if not owner:
        return "-"
    return f"{owner} ({made_by[:6]})" if made_by else owner
