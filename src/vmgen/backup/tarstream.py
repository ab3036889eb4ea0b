"""Reading a tar stream's members, forward only, over chunks of decompressed data.

tarfile's own reader parsed each 512-byte header with ~15 slice/decode/int calls, two
checksum passes and several layers of buffered reads: on a tree of small files that was most
of a restore's Python time. This reader slices headers straight out of the 1 MiB chunks the
decompressor hands over, and produces tarfile.TarInfo objects, so what is extracted is decided
as before (extract._Guard). It reads what tarfile reads for our purposes: ustar headers (with
the prefix field, base-256 numbers, signed or unsigned checksums), PAX extended and global
headers, GNU long names and link names, and sparse files in GNU tar's PAX 1.0 format (what
archive.py writes; their map is read and checked here, older sparse formats are flagged as
type "S" for the guard to refuse). Unlike tarfile, a damaged header after the first is an
error, not a silent end of archive."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator

from vmgen.errors import ArchiveError

BLOCK = tarfile.BLOCKSIZE
_ENC, _ERRORS = "utf-8", "surrogateescape"  # what TarFile uses on Linux
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_PAX_LOCAL = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_GNU_LONG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_ZERO_BLOCK = bytes(BLOCK)
DUMPDIR = "GNU.dumpdir"  # GNU tar's PAX keyword for a directory's listing in an increment
# A PAX header or GNU long name is read whole: a directory's dumpdir of ~100,000 names fits.
MAX_EXTENDED_HEADER = 16 << 20
# GNU tar's PAX keywords of a sparse file in format 1.0 (its map is at the start of the data).
SPARSE_MAJOR, SPARSE_MINOR = "GNU.sparse.major", "GNU.sparse.minor"
SPARSE_NAME, SPARSE_REALSIZE = "GNU.sparse.name", "GNU.sparse.realsize"
MAX_SPARSE_REGIONS = 1 << 17  # a map is read whole; archive.py writes at most half as many
_MAX_DIGITS = 19  # a map's numbers are 64-bit


def _text(field: bytes) -> str:
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode(_ENC, _ERRORS)


def _number(field: bytes) -> int:
    if field[0] in (0o200, 0o377):  # GNU base-256, for values too large for octal
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0o377 else n
    end = field.find(b"\0")
    digits = (field if end < 0 else field[:end]).strip()
    try:
        return int(digits or b"0", 8)
    except ValueError:
        raise ArchiveError("the archive is not a valid tar stream: invalid header") from None


def _checksum_ok(block: bytes) -> bool:
    want = _number(block[148:156])
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    if want == unsigned:
        return True
    # Some old tars summed signed chars; tarfile accepts both, so do we.
    return want == unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)


def _pax_records(data: bytes) -> Iterator[tuple[str, str]]:
    """`"%d %s=%s\\n" % (length, keyword, value)` records."""
    pos = 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArchiveError("the archive is not a valid tar stream: bad PAX header") from None
        record = data[space + 1 : pos + length - 1]
        keyword, eq, value = record.partition(b"=")
        if length <= 0 or not eq:
            raise ArchiveError("the archive is not a valid tar stream: bad PAX header")
        yield keyword.decode(_ENC, _ERRORS), value.decode(_ENC, _ERRORS)
        pos += length


class TarReader:
    """Members of the tar stream that `read_chunk()` yields (b"" at its end), in order.

    next() returns the next member (None at the end); for a regular file, data() then yields
    its contents. Whatever of a member's data is not read is skipped by the next next()."""

    def __init__(self, read_chunk: Callable[[], bytes]) -> None:
        self._read_chunk = read_chunk
        self._buf, self._pos = b"", 0
        self._skip = 0  # unread data + padding of the current member
        self._left = 0  # unread data of the current member
        self._global_pax: dict[str, str] = {}
        self._started = False

    # ----- raw bytes -----

    def _fill(self) -> bool:
        if self._pos < len(self._buf):
            return True
        self._buf, self._pos = self._read_chunk(), 0
        return bool(self._buf)

    def _take(self, n: int) -> bytes:
        """Exactly n bytes, or fewer only at the end of the stream."""
        end = self._pos + n
        if end <= len(self._buf):
            piece, self._pos = self._buf[self._pos : end], end
            return piece
        parts, got = [], 0
        while got < n and self._fill():
            piece = self._buf[self._pos : self._pos + n - got]
            self._pos += len(piece)
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def _discard(self, n: int) -> None:
        while n:
            if not self._fill():
                raise ArchiveError("the archive is not a valid tar stream: unexpected end of data")
            step = min(n, len(self._buf) - self._pos)
            self._pos += step
            n -= step

    # ----- members -----

    def data(self) -> Iterator[bytes]:
        """The current member's contents, in pieces of at most one chunk."""
        while self._left:
            if not self._fill():
                return  # the caller sees the shortfall
            step = min(self._left, len(self._buf) - self._pos)
            whole = step == len(self._buf) and self._pos == 0
            piece = self._buf if whole else self._buf[self._pos : self._pos + step]
            self._pos += step
            self._left -= step
            self._skip -= step
            yield piece

    def next(self) -> tarfile.TarInfo | None:
        self._discard(self._skip)
        self._skip = self._left = 0
        names: dict[bytes, str] = {}
        pax = dict(self._global_pax)
        while True:
            block = self._header_block()
            if block is None:
                return None
            kind = block[156:157]
            if kind in _GNU_LONG or kind in _PAX_LOCAL or kind == tarfile.XGLTYPE:
                size = _number(block[124:136])
                if not 0 <= size <= MAX_EXTENDED_HEADER:  # it is held in memory
                    raise ArchiveError(f"the archive is not a valid tar stream: a {size}-byte extended header")
                payload = self._take(size)
                self._discard(-len(payload) % BLOCK)
                if kind in _GNU_LONG:
                    names[kind] = _text(payload)
                    continue
                records = dict(_pax_records(payload))
                if kind == tarfile.XGLTYPE:  # for every member from here on
                    self._global_pax.update(records)
                    if sum(len(k) + len(v) for k, v in self._global_pax.items()) > MAX_EXTENDED_HEADER:
                        raise ArchiveError("the archive is not a valid tar stream: too many global headers")
                pax.update(records)
                continue
            return self._member(block, kind, names, pax)

    def _header_block(self) -> bytes | None:
        block = self._take(BLOCK)
        first, self._started = not self._started, True
        if not block and not first:
            return None  # the stream ended without the end-of-archive blocks; tarfile accepts that
        if block == _ZERO_BLOCK:
            return None
        if len(block) != BLOCK or not _checksum_ok(block):
            what = "empty file" if not block else "truncated header" if len(block) != BLOCK else "bad checksum"
            raise ArchiveError(f"the archive is not a valid tar stream: {what}")
        return block

    def _member(self, block: bytes, kind: bytes, names: dict[bytes, str], pax: dict[str, str]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(_text(block[0:100]))
        prefix = _text(block[345:500])
        if prefix and kind != tarfile.GNUTYPE_SPARSE:
            info.name = prefix + "/" + info.name
        info.mode, info.size, info.mtime = _number(block[100:108]), _number(block[124:136]), _number(block[136:148])
        info.type, info.linkname = kind, _text(block[157:257])
        if kind == tarfile.AREGTYPE and info.name.endswith("/"):  # old V7 directories
            info.type = tarfile.DIRTYPE
        info.name = names.get(tarfile.GNUTYPE_LONGNAME, info.name)
        info.linkname = names.get(tarfile.GNUTYPE_LONGLINK, info.linkname)
        self._apply_pax(info, pax)
        sparse_1_0 = kind in _REGULAR and pax.get(SPARSE_MAJOR) == "1" and pax.get(SPARSE_MINOR) == "0"
        if not sparse_1_0 and (kind == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse.") for k in pax)):
            info.type = tarfile.GNUTYPE_SPARSE  # an older sparse format: the guard refuses the type
        if info.isdir():
            info.name = info.name.rstrip("/")
        if info.type in _REGULAR or info.type not in tarfile.SUPPORTED_TYPES:
            self._left, self._skip = info.size, info.size + (-info.size % BLOCK)
        if sparse_1_0:
            self._sparse_map(info, pax)
        return info

    def _sparse_map(self, info: tarfile.TarInfo, pax: dict[str, str]) -> None:
        """Read a PAX 1.0 sparse file's map from the start of its data and check it: regions in
        order, apart, inside the real size, holding exactly the data that follows. Then
        info.size is the real size, info.sparse the regions, and data() yields their bytes."""
        try:
            realsize = int(pax[SPARSE_REALSIZE])
            info.name = pax[SPARSE_NAME].rstrip("/") or info.name
        except (KeyError, ValueError):
            raise ArchiveError(f"the archive's sparse file {info.name!r} has no real size or name") from None
        numbers: list[int] = []  # how many regions, then offset and length of each
        partial = b""
        while not numbers or len(numbers) < 1 + 2 * numbers[0]:
            if (
                len(partial) > _MAX_DIGITS
                or not (partial.isdigit() or not partial)
                or numbers[:1] > [MAX_SPARSE_REGIONS]
            ):
                raise ArchiveError(f"the archive's sparse map of {info.name!r} is not a map")
            if self._left < BLOCK:
                raise ArchiveError(f"the archive's sparse map of {info.name!r} is cut short")
            block = self._take(BLOCK)
            if len(block) != BLOCK:
                raise ArchiveError("the archive is not a valid tar stream: unexpected end of data")
            self._left -= BLOCK
            self._skip -= BLOCK
            *lines, partial = (partial + block).split(b"\n")
            for line in lines:
                if not line.isdigit() or len(line) > _MAX_DIGITS:
                    raise ArchiveError(f"the archive's sparse map of {info.name!r} is not a map")
                numbers.append(int(line))
        count = numbers[0]
        regions = list(zip(numbers[1 : 1 + 2 * count : 2], numbers[2 : 2 + 2 * count : 2], strict=True))
        end = 0
        for offset, length in regions:
            if offset < end:
                raise ArchiveError(f"the archive's sparse map of {info.name!r} has regions that overlap")
            end = offset + length
            if end > realsize:
                raise ArchiveError(f"the archive's sparse map of {info.name!r} reaches beyond its size")
        if sum(length for _offset, length in regions) != self._left:
            raise ArchiveError(
                f"the archive's sparse file {info.name!r} holds {self._left} bytes, not what its map says"
            )
        # typeshed types `sparse` as bytes; tarfile keeps (offset, size) pairs, as here.
        info.sparse = regions  # type: ignore[assignment]
        info.size = realsize

    @staticmethod
    def _apply_pax(info: tarfile.TarInfo, pax: dict[str, str]) -> None:
        try:
            for key, value in pax.items():
                if key == "path":
                    info.name = value.rstrip("/")
                elif key == "linkpath":
                    info.linkname = value
                elif key == "size":
                    info.size = int(value)
                elif key == "mtime":
                    info.mtime = float(value)
                elif key == DUMPDIR:  # an increment's listing of a directory
                    info.pax_headers = {DUMPDIR: value}
        except ValueError:
            raise ArchiveError("the archive is not a valid tar stream: bad PAX value") from None
