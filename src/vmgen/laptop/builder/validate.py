"""Checks on rendered user-data: the provider's size limit and the real `cloud-init schema`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import UserDataInvalid, UserDataTooLarge


def check_size(user_data: str, limit_bytes: int, provider: str) -> None:
    size = len(user_data.encode())
    if size > limit_bytes:
        raise UserDataTooLarge(
            f"rendered user-data is {size / 1024:.1f} KiB; {provider} accepts at most "
            f"{limit_bytes / 1024:.0f} KiB (fewer extra packages or files, or a baked image, help)"
        )


def check_schema(user_data: str) -> None:
    """Validate with cloud-init's own schema; skipped only where cloud-init is not installed."""
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        return
    with tempfile.TemporaryDirectory(prefix="vmgen-schema-") as tmp:
        path = Path(tmp) / "user-data"
        path.write_text(user_data)
        result = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)],
            check=False,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise UserDataInvalid("cloud-init schema rejected the user-data: " + " | ".join(detail[-5:]))
