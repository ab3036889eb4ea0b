"""age identities (X25519) and streaming encryption through pyrage.

Identity files are byte-compatible with `age-keygen` output, so `age -d -i FILE` works on any
backup without vmgen. A passphrase-protected identity is the same text encrypted with age's
scrypt passphrase mode (armored), i.e. what `age -p -a` produces: `age -d FILE` unlocks it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyrage

from vmgen.backup import agestream
from vmgen.errors import ArchiveError, IdentityError, IdentityExists, PassphraseRequired, WrongIdentity, WrongPassphrase

_SECRET_PREFIX = "AGE-SECRET-KEY-1"
_ENCRYPTED_MARKERS = ("-----BEGIN AGE ENCRYPTED FILE-----", "age-encryption.org/v1")
# The age spec's message when no stanza opens with the given identities.
_NO_MATCH = "no matching keys"


@dataclass(frozen=True)
class Identity:
    """A loaded X25519 identity. `secret` is the AGE-SECRET-KEY-1... line."""

    secret: str

    def __repr__(self) -> str:  # never print the secret in logs or tracebacks
        return f"Identity(recipient={self.recipient!r})"

    @property
    def recipient(self) -> str:
        return str(self._pyrage().to_public())

    def _pyrage(self) -> pyrage.x25519.Identity:
        try:
            return pyrage.x25519.Identity.from_str(self.secret)
        except pyrage.IdentityError as e:
            raise IdentityError(f"not a valid age X25519 identity: {e}") from e


def generate_identity() -> tuple[str, str]:
    """(identity file text as age-keygen writes it, recipient 'age1...')."""
    ident = pyrage.x25519.Identity.generate()
    recipient = str(ident.to_public())
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {recipient}\n{ident}\n"
    return text, recipient


def parse_identity(text: str) -> Identity:
    """The first AGE-SECRET-KEY line of an identity file (comments and blanks are allowed)."""
    for line in map(str.strip, text.splitlines()):
        if line.startswith(_SECRET_PREFIX):
            identity = Identity(line)
            _ = identity.recipient  # deriving it validates the key
            return identity
    raise IdentityError("no AGE-SECRET-KEY-1 line in the identity text")


def check_recipient(recipient: str) -> str:
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except pyrage.RecipientError as e:
        raise IdentityError(f"not a valid age recipient {recipient!r}: {e}") from e
    return recipient


def save_identity(path: Path | str, text: str, passphrase: str | None = None, overwrite: bool = False) -> None:
    """Write the identity 0600, atomically; optionally sealed with a passphrase (age scrypt)."""
    path = Path(path)
    parse_identity(text)
    if path.exists() and not overwrite:
        # Replacing an identity makes every backup made for the old one unreadable.
        raise IdentityExists(f"identity file {path} already exists; refusing to overwrite it")
    data = text.encode()
    if passphrase:
        data = pyrage.passphrase.encrypt(data, passphrase, armored=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # O_EXCL + mode at creation: the secret is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_protected(data: bytes) -> bool:
    head = data.lstrip()[:64].decode("ascii", "replace")
    return head.startswith(_ENCRYPTED_MARKERS)


def load_identity(path: Path | str, passphrase: str | None = None) -> Identity:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise IdentityError(f"cannot read identity file {path}: {e.strerror or e}") from e
    if is_protected(data):
        if not passphrase:
            raise PassphraseRequired(f"identity file {path} is passphrase-protected; give the passphrase")
        try:
            data = agestream.decrypt_with_passphrase(data, passphrase)
        except agestream.NoMatchingKeys as e:
            raise WrongPassphrase(f"the passphrase does not unlock identity file {path}") from e
        except agestream.AgeError as e:
            raise IdentityError(f"identity file {path} cannot be unlocked: {e}") from e
    return parse_identity(data.decode("utf-8", "replace"))


# The age stages run in their own processes (see pipeline.py) with stdin and stdout being pipes
# (or, for a restore from a local store, the object's file as stdin). They stream with
# agestream (OpenSSL's ChaCha20-Poly1305): pyrage's encrypt_file/decrypt_file ran at ~500 MB/s
# and moved 8 KiB per syscall. Identities and recipients stay pyrage's (and age-keygen's) text.


def encrypt_stdio(recipient: str) -> tuple[str, int]:
    """stdin to stdout, encrypted to `recipient`; the ciphertext's sha256 (hex) and size."""
    check_recipient(recipient)
    return agestream.encrypt(_readinto_stdin, _write_stdout, recipient)


def decrypt_stdio(identity: Identity, src: agestream.Source) -> None:
    """The age file `src` reads (stdin) to stdout, decrypted; `src` hashes what it read."""
    try:
        agestream.decrypt(src, _write_stdout, agestream.identity_key(identity.secret))
    except agestream.NoMatchingKeys as e:
        raise WrongIdentity(f"identity {identity.recipient} cannot decrypt this backup") from e
    except agestream.AgeError as e:
        raise ArchiveError(f"age decryption failed (damaged or truncated object): {e}") from e


def stdin_source() -> agestream.Source:
    return agestream.Source(_read_stdin)


def _read_stdin(n: int) -> bytes:
    return os.read(0, n)


def _readinto_stdin(buffer: memoryview) -> int:
    return os.readv(0, [buffer])


def _write_stdout(data: memoryview) -> None:
    while data:
        data = data[os.write(1, data) :]
