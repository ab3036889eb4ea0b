"""Backups through a real S3 server process (moto's standalone server over HTTP), with a
fault-injecting proxy in front: multipart round trip, 500s and cut connections on parts
(retried), the backup process killed mid-upload (no manifest, the previous backup stays
latest), damaged objects refused, an unreachable store reported as such."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from tests.fakes.moto_server import CREDENTIALS, moto_server, s3_client
from tests.fakes.s3_faults import FaultProxy, Faults
from tests.unit.backup.test_pipeline_local import EXCLUDED, EXCLUDES, assert_same_tree, build_tree
from vmgen.backup import (
    S3Settings,
    S3Store,
    create_backup,
    generate_identity,
    latest_backup,
    list_backups,
    parse_identity,
    restore_backup,
)
from vmgen.backup.indexkeeper import IndexKeeper
from vmgen.backup.pipeline import check_chain
from vmgen.errors import DigestMismatch, ObjectTruncated, StoreError, StoreUnreachable

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def moto_port(tmp_path_factory: pytest.TempPathFactory):
    with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as port:
        yield port


def _client(endpoint: str):
    return s3_client(endpoint)


@pytest.fixture
def bucket(moto_port: int) -> str:
    name = f"bk-{uuid.uuid4().hex[:12]}"
    _client(f"http://127.0.0.1:{moto_port}").create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(moto_port: int):
    proxy = FaultProxy(moto_port).start()
    yield proxy
    proxy.stop()


def s3_store(endpoint: str, bucket: str, **overrides) -> S3Store:
    settings = dict(bucket=bucket, endpoint_url=endpoint, part_size=5 * MIB, backoff=0.01, attempts=4, **CREDENTIALS)
    return S3Store(S3Settings(**(settings | overrides)))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("home") / "agent"
    build_tree(root, random_mb=22)  # ~22 MiB of ciphertext: 5 parts of 5 MiB
    return root


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_identity()


def test_multipart_round_trip_through_s3(tree, keys, bucket, proxy, tmp_path):
    text, recipient = keys
    store = s3_store(proxy.url, bucket)
    made = create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    assert sorted(proxy.attempts) == [1, 2, 3, 4, 5] and set(proxy.attempts.values()) == {1}
    head = _client(proxy.url).head_object(Bucket=bucket, Key=made.object_key)
    assert head["ContentLength"] == made.ciphertext_bytes
    assert head["ETag"].endswith('-5"')  # a multipart object of 5 parts
    assert [m.backup_id for m in list_backups(store, "app")] == [made.backup_id]
    target = tmp_path / "agent"
    restore_backup(store, "app", None, parse_identity(text), target)
    assert_same_tree(tree, target)
    assert {e.pattern for e in made.summary.excluded} == {"node_modules", ".cache", "build"}
    assert EXCLUDED  # the same expectations as the local round trip


def test_part_failures_and_cut_connections_are_retried(tree, keys, bucket, proxy, tmp_path):
    text, recipient = keys
    proxy.faults = Faults(fail_500={1: 2, 4: 1}, cut={2: 1})
    store = s3_store(proxy.url, bucket)
    made = create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    assert sorted(proxy.injected) == [("500", 1), ("500", 1), ("500", 4), ("cut", 2)]
    assert (proxy.attempts[1], proxy.attempts[2], proxy.attempts[4]) == (3, 2, 2)
    restore_backup(store, "app", made.backup_id, parse_identity(text), tmp_path / "agent")
    assert_same_tree(tree, tmp_path / "agent")


def test_a_part_failing_every_attempt_aborts_the_upload(tree, keys, bucket, proxy):
    _text, recipient = keys
    proxy.faults = Faults(fail_500={3: 99})
    store = s3_store(proxy.url, bucket, attempts=3)
    with pytest.raises(StoreError, match="upload part 3") as failed:
        create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    assert "\n" not in str(failed.value)
    assert proxy.attempts[3] == 3
    client = _client(proxy.url)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


KILLED_BACKUP = """
import sys
from vmgen.backup import S3Settings, S3Store, create_backup
store = S3Store(S3Settings(bucket=sys.argv[2], endpoint_url=sys.argv[1], part_size=5 << 20,
                           access_key_id="test-key", secret_access_key="test-secret"))
create_backup(sys.argv[3], store, "app", sys.argv[4], excludes=["node_modules", ".cache", "build"])
"""


def test_backup_killed_mid_upload_leaves_no_manifest(tree, keys, bucket, proxy, tmp_path):
    text, recipient = keys
    store = s3_store(proxy.url, bucket)
    previous = create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    proxy.attempts.clear()
    # Held at part 2, the stages cannot have written all of the ~22 MiB stream: the uploader
    # takes at most two parts beyond those sent, the pipes 2 MiB. Held at part 3, they could
    # have, and exited before the kill (seen once part checksums slowed the uploader a little).
    proxy.faults = Faults(hold=2)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BACKUP, proxy.url, bucket, str(tree), recipient])
    try:
        assert proxy.part_started.wait(timeout=120), "the backup never reached part 2"
        stages = psutil.Process(proc.pid).children(recursive=True)
        assert len(stages) == 2  # the tar+zstd and age children
        os.kill(proc.pid, signal.SIGKILL)  # only the backup process itself
        assert proc.wait(timeout=30) == -signal.SIGKILL
        # Its pipeline stages notice (EPIPE) and exit by themselves: no orphans left running.
        _gone, alive = psutil.wait_procs(stages, timeout=30)
        assert alive == []
    finally:
        proxy.release()
        if proc.poll() is None:
            proc.kill()
    client = _client(proxy.url)
    names = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert names == [previous.manifest_key, previous.object_key]  # nothing of the killed run
    assert [m.backup_id for m in list_backups(store, "app")] == [previous.backup_id]
    assert latest_backup(store, "app").backup_id == previous.backup_id
    restore_backup(store, "app", None, parse_identity(text), tmp_path / "agent")
    assert_same_tree(tree, tmp_path / "agent")


def _rewrite_object(endpoint: str, bucket: str, key: str, change) -> None:
    client = _client(endpoint)
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=change(bytearray(data)))


def _flip(data: bytearray) -> bytes:
    data[len(data) // 3] ^= 0x40
    return bytes(data)


@pytest.mark.parametrize(
    "damage,error,words",
    [
        (_flip, DigestMismatch, "damaged"),
        (lambda data: bytes(data[: len(data) - 4096]), ObjectTruncated, "truncated"),
    ],
    ids=["flipped-byte", "truncated"],
)
def test_damaged_objects_are_refused(tree, keys, bucket, proxy, tmp_path, damage, error, words):
    text, recipient = keys
    store = s3_store(proxy.url, bucket)
    made = create_backup(tree, store, "app", recipient, excludes=EXCLUDES)
    _rewrite_object(proxy.url, bucket, made.object_key, damage)
    target = tmp_path / "agent"
    with pytest.raises(error, match=words):
        restore_backup(store, "app", None, parse_identity(text), target)
    assert not target.exists() and os.listdir(tmp_path) == []


def test_unreachable_store_is_reported_in_one_line(keys, tree):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = s3_store(f"http://127.0.0.1:{port}", "nowhere", attempts=2, connect_timeout=2)
    with pytest.raises(StoreUnreachable, match="cannot reach") as failed:
        create_backup(tree, store, "app", keys[1], excludes=EXCLUDES)
    assert "\n" not in str(failed.value)
    with pytest.raises(StoreUnreachable):
        list_backups(store, "app")


def test_manifest_is_json_with_the_promised_fields(tree, keys, bucket, moto_port):
    store = s3_store(f"http://127.0.0.1:{moto_port}", bucket)
    made = create_backup(tree, store, "app", keys[1], excludes=EXCLUDES)
    raw = json.loads(store.get_bytes(made.manifest_key))
    assert {
        "format_version",
        "workspace",
        "backup_id",
        "created_at",
        "plaintext_bytes",
        "compressed_bytes",
        "ciphertext_bytes",
        "sha256",
        "recipient",
        "summary",
        "vmgen_version",
    } <= set(raw)
    assert raw["summary"]["excluded"][0]["pattern"] in {"node_modules", ".cache", "build"}


def test_the_store_keeps_each_objects_checksum_and_a_written_over_link_is_refused_before_anything_is_made(
    keys, bucket, moto_port, tmp_path
):
    """Every part and object goes up with its SHA-256 (x-amz-checksum-sha256), the store keeps
    it (HeadObject with ChecksumMode=ENABLED), the manifest records it, and a restore compares
    it for every link of the chain before it downloads anything: a middle link written over
    with as many other bytes is refused in one line, the target never made."""
    text, recipient = keys
    endpoint = f"http://127.0.0.1:{moto_port}"
    store = s3_store(endpoint, bucket)
    keeper = IndexKeeper(tmp_path / "keeper")
    tree = tmp_path / "home"
    build_tree(tree, random_mb=22)  # the full backup: 5 parts
    full = create_backup(tree, store, "app", recipient, excludes=EXCLUDES, keeper=keeper, max_increments=5)
    (tree / "work/app/src/mod1.py").write_text("changed\n")
    middle = create_backup(tree, store, "app", recipient, excludes=EXCLUDES, keeper=keeper, max_increments=5)
    newest = create_backup(tree, store, "app", recipient, excludes=EXCLUDES, keeper=keeper, max_increments=5)
    client = _client(endpoint)
    for made, parts in ((full, 5), (middle, 0), (newest, 0)):
        head = client.head_object(Bucket=bucket, Key=made.object_key, ChecksumMode="ENABLED")
        assert made.store_checksum and head["ChecksumSHA256"].split("-")[0] == made.store_checksum.split("-")[0]
        if not parts:  # one PUT: the object's own SHA-256, which the manifest's sha256 also is
            assert base64.b64decode(made.store_checksum).hex() == made.sha256
    assert [m.backup_id for m in check_chain(store, newest)] == [full.backup_id, middle.backup_id, newest.backup_id]

    _rewrite_object(endpoint, bucket, middle.object_key, _flip)  # same size, other bytes, no checksum
    reads: list[str] = []
    store.client.meta.events.register("before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"]))
    written_over = f"backup {middle.backup_id} is not the object that was backed up"
    with pytest.raises(DigestMismatch, match=written_over) as refused:
        check_chain(store, newest)
    assert "\n" not in str(refused.value)
    target = tmp_path / "agent"
    with pytest.raises(DigestMismatch, match=middle.backup_id):
        restore_backup(store, "app", None, parse_identity(text), target)
    assert not target.exists() and not [r for r in reads if r.endswith(".tar.zst.age")]  # no object downloaded
