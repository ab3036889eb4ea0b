"""vmgen's own age streaming (agestream) against the age reference tool and pyrage, both ways,
at every size that matters to the chunking, and its refusal of every damage: a flipped bit
anywhere, a cut anywhere (also exactly at a chunk boundary), trailing bytes, another key."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import subprocess
from pathlib import Path

import pyrage
import pytest

from vmgen.backup import agestream, generate_identity, parse_identity

C = agestream.CHUNK
SIZES = [0, 1, C - 1, C, C + 1, 2 * C, 16 * C, 16 * C + 5, 17 * C, 3 * 1024 * 1024 + 7]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    text, recipient = generate_identity()
    path = tmp_path_factory.mktemp("age") / "identity.txt"
    path.write_text(text)
    return text, recipient, path


def encrypt(data: bytes, recipient: str) -> bytes:
    out = bytearray()
    digest, size = agestream.encrypt(io.BytesIO(data).readinto, out.extend, recipient)
    assert (digest, size) == (hashlib.sha256(out).hexdigest(), len(out))
    return bytes(out)


def decrypt(data: bytes, secret: str) -> bytes:
    out = bytearray()
    src = agestream.Source(io.BytesIO(data).read)
    agestream.decrypt(src, out.extend, agestream.identity_key(secret))
    assert (src.sha.hexdigest(), src.size) == (hashlib.sha256(data).hexdigest(), len(data))
    return bytes(out)


@pytest.mark.parametrize("size", SIZES)
def test_interoperates_with_age_and_pyrage_both_ways(keys, size):
    text, recipient, path = keys
    secret = parse_identity(text).secret
    data = os.urandom(size)
    ours = encrypt(data, recipient)
    assert decrypt(ours, secret) == data
    assert pyrage.decrypt(ours, [pyrage.x25519.Identity.from_str(secret)]) == data
    age = subprocess.run(["age", "-d", "-i", str(path)], input=ours, capture_output=True, check=True)
    assert age.stdout == data
    by_age = subprocess.run(["age", "-r", recipient], input=data, capture_output=True, check=True).stdout
    assert decrypt(by_age, secret) == data
    by_pyrage = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(recipient)])
    assert decrypt(by_pyrage, secret) == data


def _payload_start(sealed: bytes, size: int) -> int:
    chunks = max(1, -(-size // C))
    return len(sealed) - size - chunks * agestream.TAG - 16  # header | nonce | chunks


@pytest.mark.parametrize("size", [0, C, 2 * C + 3, 17 * C])
def test_refuses_any_damage(keys, size):
    text, recipient, _path = keys
    secret = parse_identity(text).secret
    sealed = encrypt(os.urandom(size), recipient)
    start = _payload_start(sealed, size)
    first_chunk_end = start + 16 + min(size, C) + agestream.TAG
    cuts = {1, 10, 40, start - 1, start, start + 16, first_chunk_end, len(sealed) - 16, len(sealed) - 1}
    for cut in sorted(c for c in cuts if 0 < c < len(sealed)):
        with pytest.raises(agestream.AgeError):
            decrypt(sealed[:cut], secret)
    for flip in sorted({5, 30, 60, start - 3, start + 3, start + 20, len(sealed) // 2, len(sealed) - 1}):
        damaged = bytearray(sealed)
        damaged[flip] ^= 0x01
        with pytest.raises(agestream.AgeError):
            decrypt(bytes(damaged), secret)
    with pytest.raises(agestream.AgeError):
        decrypt(sealed + b"\0", secret)


def test_a_stanza_for_another_key_is_skipped_and_no_stanza_for_ours_refused(keys):
    text, recipient, _path = keys
    secret = parse_identity(text).secret
    other = pyrage.x25519.Identity.generate()
    both = pyrage.encrypt(b"hello", [other.to_public(), pyrage.x25519.Recipient.from_str(recipient)])
    assert decrypt(both, secret) == b"hello"
    with pytest.raises(agestream.NoMatchingKeys):
        decrypt(pyrage.encrypt(b"hello", [other.to_public()]), secret)


def test_the_digest_covers_the_whole_input_after_a_failure(keys):
    text, recipient, _path = keys
    sealed = bytearray(encrypt(os.urandom(3 * C), recipient))
    sealed[100] ^= 0x01
    src = agestream.Source(io.BytesIO(bytes(sealed)).read)
    with pytest.raises(agestream.AgeError):
        agestream.decrypt(src, lambda _data: None, agestream.identity_key(parse_identity(text).secret))
    src.drain()
    assert (src.sha.hexdigest(), src.size) == (hashlib.sha256(sealed).hexdigest(), len(sealed))


def test_malformed_keys_are_refused():
    _text, recipient = generate_identity()
    with pytest.raises(ValueError):
        agestream.recipient_key(recipient[:-1] + ("q" if recipient[-1] != "q" else "p"))  # checksum
    with pytest.raises(ValueError):
        agestream.recipient_key(recipient.upper()[:5] + recipient[5:])  # mixed case


@functools.cache
def sealed_by_age(armored: bool) -> bytes:
    """What `age -p [-a]` makes of a small secret, made once per form for the module: pyrage
    picks the scrypt work factor that takes it about a second here, and the work-factor test
    below only needs its header (an encryption of its own was all of its 3 CPU-s)."""
    return pyrage.passphrase.encrypt(b"AGE-SECRET-KEY-1TEST\n", "correct horse", armored=armored)


@pytest.mark.parametrize("armored", [True, False])
def test_opens_what_age_p_makes_with_the_passphrase_only(armored):
    sealed = sealed_by_age(armored)
    assert agestream.decrypt_with_passphrase(sealed, "correct horse") == b"AGE-SECRET-KEY-1TEST\n"
    with pytest.raises(agestream.NoMatchingKeys):
        agestream.decrypt_with_passphrase(sealed, "wrong")


def test_a_work_factor_beyond_the_limit_is_refused_before_any_work():
    sealed = sealed_by_age(False)
    head, rest = sealed.split(b"\n", 2)[:2], sealed.split(b"\n", 2)[2]
    stanza = head[1].split(b" ")
    greedy = b"\n".join([head[0], b" ".join([*stanza[:3], b"30"]), rest])
    with pytest.raises(agestream.AgeError, match="work factor"):
        agestream.decrypt_with_passphrase(greedy, "correct horse")
