"""A real S3 server process for R2: moto's standalone server over HTTP, started per test module."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from tests.polling import wait_until

CREDENTIALS = {"access_key_id": "test-key", "secret_access_key": "test-secret"}


@contextmanager
def moto_server(log: Path, host: str = "127.0.0.1") -> Iterator[int]:
    """Run the server bound to `host` (the fake cloud's gateway, so VMs reach it too); yields its port."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", "0"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        # The server prints its port once bound; it is another process, so poll its log.
        text = wait_until(log.read_text, lambda t: "Running on http://" in t or proc.poll() is not None, timeout=60)
        found = re.search(r"Running on http://[^:]+:(\d+)", text)
        assert found, f"moto server did not start:\n{text}"
        port = int(found.group(1))
        assert wait_until(lambda: _answers(host, port), bool, timeout=30), "moto server does not answer"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["access_key_id"],
        aws_secret_access_key=CREDENTIALS["secret_access_key"],
    )
