"""The workspace's web login: a generated password, of which the VM gets only a bcrypt hash."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import bcrypt

USER = "vmgen"


@dataclass(frozen=True)
class Login:
    user: str
    password: str  # stays on the laptop (state dir, 0600); shown by `vmgen login`
    password_hash: str  # bcrypt, what Caddy's basicauth checks

    @classmethod
    def from_password(cls, password: str, user: str = USER) -> Login:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()
        return cls(user=user, password=password, password_hash=hashed)


def new_login() -> Login:
    return Login.from_password(secrets.token_urlsafe(18))
