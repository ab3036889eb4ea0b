"""Where backup objects live: a local directory or any S3-compatible endpoint (R2 in
production). Both take the same keys (`ws/<name>/<id>.tar.zst.age`, `ws/<name>/<id>.json`)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, Self, TypeVar

from vmgen.errors import ObjectNotFound, StoreError, StoreUnreachable

if TYPE_CHECKING:
    from botocore.response import StreamingBody

COPY_CHUNK = 1 << 20
MIB = 1 << 20
T = TypeVar("T")


class Readable(Protocol):
    """A byte stream read in chunks until it returns b"": a file, a pipe, a pipeline stage."""

    def read(self, size: int, /) -> bytes: ...


class Download(Protocol):
    """An object as a store hands it out: read it (to the end with -1), then close it."""

    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    """What a store says of an object without reading it."""

    size: int
    # The store's own checksum of the object, in the store's form ("" if it keeps none): S3's
    # ChecksumSHA256, "<base64>-<parts>" for a multipart upload. It stays with the object it
    # was made for: an object written over since has another one, or none.
    checksum: str = ""


def same_checksum(stored: str, recorded: str) -> bool:
    """Whether a checksum a store reports now is the one recorded at the backup. Stores differ
    in whether they append a multipart upload's part count ("-3"); a count on both must match."""
    digest, _, parts = stored.partition("-")
    want_digest, _, want_parts = recorded.partition("-")
    return digest == want_digest and (parts == want_parts or not parts or not want_parts)


class Store(Protocol):
    # Whether an object just stored must be read back to be trusted. A remote store: yes (what
    # arrived is only known by reading it). A local folder: its file was written and fsync'd by
    # this process, and reading it back would be served from the page cache, proving nothing.
    reads_back: bool

    def describe(self) -> str: ...
    def put_stream(self, key: str, src: Readable) -> int: ...
    def get_stream(self, key: str) -> Download: ...
    def size(self, key: str) -> int | None: ...
    def head(self, key: str) -> StoredObject | None: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...


def _check_key(key: str) -> str:
    # Keys map to paths in LocalStore: refuse anything that could leave the root.
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid object key {key!r}")
    return key


def read_full(src: Readable, size: int) -> bytearray:
    """Up to `size` bytes, fewer only at EOF, into one preallocated buffer (no join copies)."""
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        data = src.read(min(COPY_CHUNK, size - got))
        if not data:
            break
        view[got : got + len(data)] = data
        got += len(data)
    view.release()
    del buf[got:]
    return buf


@dataclass
class LocalStore:
    """A directory. Objects are written under a hidden temp name and renamed into place, so a
    reader never sees a partial object under its real key."""

    root: Path
    reads_back = False

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def describe(self) -> str:
        return f"local store {self.root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_stream(self, key: str, src: Readable) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
        written = 0
        try:
            with open(tmp, "xb") as f:
                # A source that can move itself into a file (a pipe: splice) is not copied here.
                splice_into = getattr(src, "splice_into", None)
                if splice_into is not None:
                    written = splice_into(f.fileno())
                while data := src.read(COPY_CHUNK):
                    f.write(data)
                    written += len(data)
                f.flush()
                os.fsync(f.fileno())  # durable before it becomes visible under its key
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return written

    def put_bytes(self, key: str, data: bytes) -> None:
        import io

        self.put_stream(key, io.BytesIO(data))

    def get_stream(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as e:
            raise ObjectNotFound(f"{key} not found in {self.describe()}") from e

    def get_bytes(self, key: str) -> bytes:
        with self.get_stream(key) as f:
            return f.read()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def head(self, key: str) -> StoredObject | None:
        size = self.size(key)
        return None if size is None else StoredObject(size)  # a folder keeps no checksum

    def list_keys(self, prefix: str) -> list[str]:
        keys = []
        for dirpath, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in names:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class S3Settings:
    bucket: str
    endpoint_url: str | None = None  # None: AWS; R2: https://<account>.r2.cloudflarestorage.com
    region_name: str = "auto"  # what R2 expects
    prefix: str = ""  # optional key prefix inside the bucket, e.g. "vmgen/"
    access_key_id: str | None = None  # None: boto3's usual chain (env, config files)
    secret_access_key: str | None = None
    part_size: int = 64 * MIB  # R2 wants equal parts; S3's minimum is 5 MiB
    max_buffered_parts: int = 2  # parts held in memory at once: bounds RSS to ~this x part_size
    attempts: int = 5  # per request, on 5xx / throttling / connection errors
    backoff: float = 0.5  # seconds, doubled per attempt
    max_backoff: float = 8.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    addressing_style: Literal["auto", "virtual", "path"] = "path"


class S3Store:
    reads_back = True

    def __init__(self, settings: S3Settings) -> None:
        import boto3
        from botocore.config import Config

        if settings.part_size < 5 * MIB:
            raise StoreError("S3 part size must be at least 5 MiB")
        self.settings = settings
        config = Config(
            region_name=settings.region_name,
            signature_version="s3v4",
            # R2 rejects the newer default CRC checksums on multipart uploads; integrity is
            # ours anyway (sha256 in the manifest, verified by reading the object back).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Retries are ours (see _call) so every request gets the same, tested policy.
            retries={"total_max_attempts": 1},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            s3={"addressing_style": settings.addressing_style},
            max_pool_connections=max(10, settings.max_buffered_parts + 2),
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url,
            config=config,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
        )

    def describe(self) -> str:
        where = self.settings.endpoint_url or "AWS"
        return f"s3://{self.settings.bucket}/{self.settings.prefix} at {where}"

    def _key(self, key: str) -> str:
        return self.settings.prefix + _check_key(key)

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.settings.backoff
        for attempt in range(1, self.settings.attempts + 1):
            try:
                return fn(Bucket=self.settings.bucket, **kwargs)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if status == 404 or code in ("NoSuchKey", "NotFound", "NoSuchUpload"):
                    raise ObjectNotFound(f"{what}: not found in {self.describe()}") from e
                # BadDigest: what arrived is not what was sent (its checksum): send it again.
                retryable = status >= 500 or status == 429 or code in ("SlowDown", "RequestTimeout", "BadDigest")
                if not retryable or attempt == self.settings.attempts:
                    msg = e.response.get("Error", {}).get("Message", "")
                    raise StoreError(f"{what} failed on {self.describe()}: {code or status} {msg}".rstrip()) from e
            except (BotoCoreError, OSError) as e:
                if attempt == self.settings.attempts:
                    raise StoreUnreachable(
                        f"{what}: cannot reach {self.describe()} after {attempt} attempts: {e}"
                    ) from e
            time.sleep(min(delay, self.settings.max_backoff))  # backoff, not synchronisation
            delay *= 2
        raise AssertionError("unreachable")

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(f"put {key}", self.client.put_object, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        with self.get_stream(key) as body:
            return body.read()

    def get_stream(self, key: str) -> Download:
        response = self._call(f"get {key}", self.client.get_object, Key=self._key(key))
        return _S3Body(response["Body"], key, self.describe())

    def size(self, key: str) -> int | None:
        stored = self.head(key)
        return None if stored is None else stored.size

    def head(self, key: str) -> StoredObject | None:
        try:
            head = self._call(f"head {key}", self.client.head_object, Key=self._key(key), ChecksumMode="ENABLED")
        except ObjectNotFound:
            return None
        return StoredObject(int(head["ContentLength"]), str(head.get("ChecksumSHA256") or ""))

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            extra: dict[str, str] = {"ContinuationToken": token} if token else {}
            page = self._call(
                f"list {prefix}", self.client.list_objects_v2, Prefix=self.settings.prefix + prefix, **extra
            )
            keys += [o["Key"][len(self.settings.prefix) :] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Key=self._key(key))

    def put_stream(self, key: str, src: Readable) -> int:
        size = self.settings.part_size
        first = read_full(src, size)
        if len(first) < size:  # fits one part: a plain PUT is one request instead of three
            self._call(f"put {key}", self.client.put_object, Key=self._key(key), Body=bytes(first), **_sha256_of(first))
            return len(first)
        upload = self._call(
            f"start upload {key}", self.client.create_multipart_upload, Key=self._key(key), ChecksumAlgorithm="SHA256"
        )
        upload_id = upload["UploadId"]
        handoff = [first]  # the part buffers' only references live in _upload_parts: RSS bound
        del first
        try:
            parts, total = self._upload_parts(key, upload_id, src, handoff)
            self._call(
                f"complete upload {key}",
                self.client.complete_multipart_upload,
                Key=self._key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return total
        except BaseException:
            # Leave no orphaned parts (billed storage) behind; best effort, the original
            # error is what the user must see. A killed process cannot do this: configure a
            # lifecycle rule aborting incomplete multipart uploads on the bucket.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.settings.bucket, Key=self._key(key), UploadId=upload_id)
            raise

    def _upload_parts(
        self, key: str, upload_id: str, src: Readable, handoff: list[bytearray]
    ) -> tuple[list[dict[str, Any]], int]:
        """Read parts and upload them on worker threads; a semaphore caps the parts alive in
        memory (read-ahead + uploading) at max_buffered_parts, so RSS is independent of size."""
        held = threading.BoundedSemaphore(max(2, self.settings.max_buffered_parts))
        held.acquire()  # for the first part, already read
        futures: list[Future[dict[str, Any]]] = []
        workers = max(1, self.settings.max_buffered_parts - 1)
        total, number, buf = 0, 1, handoff.pop()
        with ThreadPoolExecutor(workers, thread_name_prefix="s3-part") as pool:
            try:
                while buf:
                    total += len(buf)
                    future = pool.submit(self._upload_part, key, upload_id, number, buf)
                    future.add_done_callback(lambda _f: held.release())
                    futures.append(future)
                    del buf
                    held.acquire()
                    _raise_first_error(futures)
                    buf = read_full(src, self.settings.part_size)
                    number += 1
                held.release()
                parts = [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return parts, total

    def _upload_part(self, key: str, upload_id: str, number: int, buf: bytearray) -> dict[str, Any]:
        checksum = _sha256_of(buf)
        response = self._call(
            f"upload part {number} of {key}",
            self.client.upload_part,
            Key=self._key(key),
            UploadId=upload_id,
            PartNumber=number,
            Body=buf,
            **checksum,
        )
        return {"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum["ChecksumSHA256"]}


def _sha256_of(data: bytes | bytearray) -> dict[str, str]:
    """A request's SHA-256 checksum, computed here and sent as a header (botocore, asked to
    compute one, may send it as an aws-chunked trailer, which not every S3-compatible store
    takes): the store checks what arrived against it (BadDigest otherwise) and keeps it with
    the object (for a multipart upload, a checksum of its parts' checksums)."""
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": digest}


def _raise_first_error(futures: list[Future[Any]]) -> None:
    for f in futures:
        error = f.exception() if f.done() else None
        if error is not None:
            raise error


class _S3Body:
    """A readable over a GetObject body whose network failures become StoreErrors."""

    def __init__(self, body: StreamingBody, key: str, where: str) -> None:
        self.body, self.key, self.where = body, key, where

    def read(self, n: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            return self.body.read(None if n < 0 else n)
        except (BotoCoreError, OSError) as e:
            raise StoreUnreachable(f"reading {self.key} from {self.where} failed: {e}") from e

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
