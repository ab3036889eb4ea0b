"""The workspace's web login: a generated password that stays on the laptop; the VM gets only a
salted hash of it (see `vmgen.contract.weblogin` for why a fast one)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ...contract.weblogin import make_verifier

USER = "vmgen"


@dataclass(frozen=True)
class Login:
    user: str
    password: str  # stays on the laptop (state dir, 0600); shown by `vmgen login`
    verifier: str  # what the VM's login service checks a password against

    @classmethod
    def from_password(cls, password: str, user: str = USER) -> Login:
        return cls(user=user, password=password, verifier=make_verifier(password))


def new_login() -> Login:
    return Login.from_password(secrets.token_urlsafe(18))
