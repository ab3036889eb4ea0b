"""age v1 files (X25519 recipients) streamed through OpenSSL's ChaCha20-Poly1305.

pyrage's age ran at ~500 MB/s and copied between pipes 8 KiB per syscall: the age stage alone
was most of a restore's CPU. This is the same format (https://age-encryption.org/v1), written
and read with the `cryptography` package (already a dependency) at several GB/s, 64 KiB chunk
by chunk into preallocated 1 MiB buffers, and it hashes the ciphertext as it passes, so the
stage that writes (or reads) the object is the one that knows its sha256: nobody reads the
bytes a second time to hash them.

What is read is checked as strictly as age does: the header's version line, stanza grammar and
canonical base64, the header MAC, every payload chunk's tag with its counter, the final-chunk
flag (a stream cut at a chunk boundary fails), no empty final chunk after full ones. The output
is interoperable both ways with `age` and pyrage (see tests/unit/backup/test_agestream.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION_LINE = b"age-encryption.org/v1"
X25519_LABEL = b"age-encryption.org/v1/X25519"
CHUNK = 64 << 10  # plaintext bytes per payload chunk (the spec's)
TAG = 16
SEALED = CHUNK + TAG
IO_CHUNKS = 16  # chunks per read/write: 1 MiB of plaintext per syscall
HEADER_MAX = 1 << 16  # far more than any header with a few stanzas
_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class AgeError(Exception):
    """The stream is not an age file this identity can open, or it is damaged or truncated."""


class NoMatchingKeys(AgeError):
    """The header has no stanza for this identity."""


# ----- keys -----


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _bech32_decode(text: str, hrp: str) -> bytes:
    """The 32-byte key of a Bech32 string (BIP 173, no length limit, as age does)."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    sep = text.rfind("1")
    if text[:sep] != hrp or len(text) - sep - 1 < 6:
        raise ValueError(f"not a {hrp!r} Bech32 string")
    try:
        data = [_B32.index(c) for c in text[sep + 1 :]]
    except ValueError:
        raise ValueError("not Bech32 characters") from None
    if _polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data) != 1:
        raise ValueError("bad Bech32 checksum")
    acc, bits, out = 0, 0, bytearray()
    for v in data[:-6]:
        acc, bits = (acc << 5) | v, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise ValueError("non-canonical Bech32 padding")
    if len(out) != 32:
        raise ValueError("not a 32-byte key")
    return bytes(out)


def recipient_key(recipient: str) -> bytes:
    return _bech32_decode(recipient, "age")


def identity_key(secret: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_bech32_decode(secret, "age-secret-key-"))


# ----- primitives -----


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """age's base64: standard alphabet, no padding, canonical (re-encodes to the same text)."""
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise AgeError("not an age file: bad base64 in the header") from None
    if b"=" in text or _b64(data) != text:
        raise AgeError("not an age file: non-canonical base64 in the header")
    return data


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# ----- encryption -----


def header_for(recipient: str, file_key: bytes) -> bytes:
    """The header (with its MAC and newline) wrapping `file_key` to one X25519 recipient."""
    their = recipient_key(recipient)
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(their))
    except ValueError:  # a low-order point: no key can be agreed with it
        raise AgeError("invalid X25519 recipient") from None
    wrap_key = _hkdf(shared, share + their, X25519_LABEL)
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    header = b"%s\n-> X25519 %s\n%s\n---" % (VERSION_LINE, _b64(share), _b64(body))
    mac = hmac.new(_hkdf(file_key, None, b"header"), header, "sha256").digest()
    return header + b" " + _b64(mac) + b"\n"


def encrypt(
    readinto: Callable[[memoryview], int], write: Callable[[memoryview], None], recipient: str
) -> tuple[str, int]:
    """Encrypt everything `readinto(buffer)` delivers (0 at its end) to `recipient`, handing
    the age file to `write` in pieces of about 1 MiB (each valid only during the call).
    Returns the file's sha256 (hex) and size."""
    file_key = os.urandom(16)
    sha, size = hashlib.sha256(), 0

    def emit(view: memoryview) -> None:
        nonlocal size
        sha.update(view)
        size += len(view)
        write(view)

    emit(memoryview(header_for(recipient, file_key)))
    nonce = os.urandom(16)
    emit(memoryview(nonce))
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    out = bytearray(IO_CHUNKS * SEALED)
    out_view = memoryview(out)
    # Plaintext is read into one buffer; a chunk is sealed only once more plaintext follows it
    # (or EOF does: then it is the last). What is left over moves to the front (< 64 KiB).
    buf = bytearray((IO_CHUNKS + 1) * CHUNK)
    view = memoryview(buf)
    have, counter, eof = 0, 0, False
    while not eof:
        got = readinto(view[have:])
        eof = got == 0
        have += got
        used = filled = 0
        while have - used > CHUNK or (eof and (used < have or counter == 0)):
            piece = view[used : min(used + CHUNK, have)]
            last = eof and used + len(piece) == have
            if filled + SEALED > len(out):
                emit(out_view[:filled])
                filled = 0
            aead.encrypt_into(_nonce(counter, last), piece, None, out_view[filled : filled + len(piece) + TAG])
            filled += len(piece) + TAG
            used += len(piece)
            counter += 1
            if last:
                break
        if filled:
            emit(out_view[:filled])
        if used:
            buf[: have - used] = view[used:have]
            have -= used
    return sha.hexdigest(), size


# ----- decryption -----


class Source:
    """The age file as `read(n)` returns it, hashed and counted as it is consumed."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.sha, self.size = hashlib.sha256(), 0
        self.buf = b""
        self.eof = False

    def more(self) -> bool:
        """Append the next piece to buf; False at EOF."""
        if self.eof:
            return False
        data = self._read(IO_CHUNKS * SEALED)
        if not data:
            self.eof = True
            return False
        self.sha.update(data)
        self.size += len(data)
        self.buf = self.buf + data if self.buf else data
        return True

    def drain(self) -> None:
        """Hash the rest (after a failure: whether the object is damaged decides the error)."""
        while self.more():
            self.buf = b""


def _read_header(src: Source) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes]:
    """(stanzas as (arguments, body), the header bytes the MAC covers, the MAC); src.buf is
    left at the payload nonce."""
    lines: list[bytes] = []
    pos = 0

    def line() -> bytes:
        nonlocal pos
        while (end := src.buf.find(b"\n", pos)) < 0:
            if len(src.buf) > HEADER_MAX or not src.more():
                raise AgeError("not an age file: no complete header")
        text, pos = src.buf[pos:end], end + 1
        lines.append(text)
        return text

    if line() != VERSION_LINE:
        raise AgeError("not an age file (or not age v1)")
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        text = line()
        if text.startswith(b"--- "):
            mac = _unb64(text[4:])
            covered = src.buf[: pos - len(text) - 1 + 3]  # up to and including "---"
            src.buf = src.buf[pos:]
            return stanzas, covered, mac
        if not text.startswith(b"-> "):
            raise AgeError("not an age file: bad header line")
        args = text[3:].split(b" ")
        if not all(args) or not all(0x21 <= c <= 0x7E for arg in args for c in arg):
            raise AgeError("not an age file: bad stanza")
        body = b""
        while True:
            piece = line()
            if len(piece) > 64:
                raise AgeError("not an age file: stanza body line too long")
            body += piece
            if len(piece) < 64:
                break
        stanzas.append((args, _unb64(body)))


def _file_key(stanzas: list[tuple[list[bytes], bytes]], identity: X25519PrivateKey) -> bytes:
    ours = identity.public_key().public_bytes_raw()
    for args, body in stanzas:
        if args[0] != b"X25519":
            continue  # another kind of recipient (or grease): not ours
        if len(args) != 2:
            raise AgeError("not an age file: bad X25519 stanza")
        share = _unb64(args[1])
        if len(share) != 32 or len(body) != 32:
            raise AgeError("not an age file: bad X25519 stanza")
        try:
            shared = identity.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:
            raise AgeError("not an age file: invalid X25519 share") from None
        wrap_key = _hkdf(shared, share + ours, X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(bytes(12), body, None)
        except InvalidTag:
            continue
    raise NoMatchingKeys("no matching keys")


SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
# The work factors a passphrase file may ask for: the reference implementation's limit. rage
# (pyrage) instead refuses by its estimate of the time on this machine now, which a busy machine
# turns into a refusal of the identity it sealed itself a moment ago.
SCRYPT_MAX_LOG_N = 22
ARMOR_BEGIN, ARMOR_END = b"-----BEGIN AGE ENCRYPTED FILE-----", b"-----END AGE ENCRYPTED FILE-----"


def _passphrase_file_key(stanzas: list[tuple[list[bytes], bytes]], passphrase: str) -> bytes:
    if len(stanzas) != 1 or stanzas[0][0][0] != b"scrypt":
        raise NoMatchingKeys("not a passphrase-encrypted age file (one scrypt stanza)")
    args, body = stanzas[0]
    if len(args) != 3 or not args[2].isdigit() or args[2].startswith(b"0") or len(body) != 32:
        raise AgeError("not an age file: bad scrypt stanza")
    salt, log_n = _unb64(args[1]), int(args[2])
    if len(salt) != 16:
        raise AgeError("not an age file: bad scrypt salt")
    if log_n > SCRYPT_MAX_LOG_N:
        raise AgeError(f"the passphrase's work factor (2^{log_n}) is beyond 2^{SCRYPT_MAX_LOG_N}")
    n = 1 << log_n
    key = hashlib.scrypt(
        passphrase.encode(), salt=SCRYPT_LABEL + salt, n=n, r=8, p=1, maxmem=129 * 8 * n + (1 << 20), dklen=32
    )
    try:
        return ChaCha20Poly1305(key).decrypt(bytes(12), body, None)
    except InvalidTag:
        raise NoMatchingKeys("the passphrase does not open it") from None


def decrypt_with_passphrase(data: bytes, passphrase: str) -> bytes:
    """What `age -d` gives for a (small) file `age -p [-a]` made: armored or not."""
    text = data.strip()
    if text.startswith(ARMOR_BEGIN):
        if not text.endswith(ARMOR_END):
            raise AgeError("not an armored age file: no end line")
        try:
            data = base64.b64decode(b"".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split()), validate=True)
        except ValueError:
            raise AgeError("not an armored age file: bad base64") from None
    pieces = [data]
    out = bytearray()
    src = Source(lambda _n: pieces.pop() if pieces else b"")
    _decrypt(src, out.extend, lambda stanzas: _passphrase_file_key(stanzas, passphrase))
    return bytes(out)


def decrypt(src: Source, write: Callable[[memoryview], None], identity: X25519PrivateKey) -> None:
    """Decrypt the age file `src` reads, handing the plaintext to `write` in pieces of about
    1 MiB. Nothing is written before the header's MAC checked out, and nothing of a chunk
    before its tag did. `src` hashes and counts what it read; after a failure, drain() it to
    have the digest of the whole object (whether it is damaged decides which error is true)."""
    _decrypt(src, write, lambda stanzas: _file_key(stanzas, identity))


def _decrypt(
    src: Source, write: Callable[[memoryview], None], file_key_of: Callable[[list[tuple[list[bytes], bytes]]], bytes]
) -> None:
    stanzas, covered, mac = _read_header(src)
    file_key = file_key_of(stanzas)
    if len(file_key) != 16:
        raise AgeError("not an age file: bad file key")
    if not hmac.compare_digest(hmac.new(_hkdf(file_key, None, b"header"), covered, "sha256").digest(), mac):
        raise AgeError("the age header's MAC does not match (damaged header)")
    while len(src.buf) < 16 and src.more():
        pass
    if len(src.buf) < 16:
        raise AgeError("the age file ends before its payload")
    nonce, src.buf = src.buf[:16], src.buf[16:]
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    out = bytearray(IO_CHUNKS * CHUNK)
    out_view = memoryview(out)
    counter = 0
    while True:
        while len(src.buf) <= SEALED * IO_CHUNKS and src.more():
            pass  # fill up, so that whether a chunk is the last is known (EOF follows it)
        view = memoryview(src.buf)
        used = filled = 0
        # Open every chunk that more ciphertext follows; at EOF, the rest is the last chunk.
        while len(view) - used > SEALED or (src.eof and used < len(view)):
            piece = view[used : used + SEALED]
            last = used + len(piece) == len(view) and src.eof
            if len(piece) < TAG or (last and len(piece) == TAG and counter > 0):
                raise AgeError("the age payload ends in a truncated or empty chunk")
            if filled + CHUNK > len(out):
                write(out_view[:filled])
                filled = 0
            try:
                aead.decrypt_into(_nonce(counter, last), piece, None, out_view[filled : filled + len(piece) - TAG])
            except InvalidTag:
                raise AgeError(f"age payload chunk {counter} failed authentication (damaged or truncated)") from None
            filled += len(piece) - TAG
            used += len(piece)
            counter += 1
        if filled:
            write(out_view[:filled])
        view.release()
        src.buf = src.buf[used:]
        if src.eof and not src.buf:
            if counter == 0:
                raise AgeError("the age file has no payload")
            return
