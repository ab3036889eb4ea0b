"""The running vmgen as a wheel: what every workspace VM installs, the very code of the CLI that
launched it, whether that CLI came from a release, `pipx install .` or a source tree.

The wheel holds the `vmgen` package's files exactly as they are on this machine, and is built
the same way everywhere (sorted entries, fixed times and modes): the same code always makes the
same bytes, so its sha256 names the build. That hash is what a VM verifies before root installs
the wheel, what a baked image's vmgen stamp records, and what `vmgen --version` shows. The VM's
console script is the VM's own entry point; its dependencies are the hash-pinned set in
`vm-requirements.txt`, inside the wheel.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import vmgen

# A wheel of the package alone: the same for every Python 3 and platform.
TAG = "py3-none-any"
VM_ENTRY_POINT = "vmgen = vmgen.vmside.main:main"
LOCK = "vm-requirements.txt"  # inside the package: the VM's dependencies, hash-pinned
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_SKIPPED = ("__pycache__",)


@dataclass(frozen=True)
class VmgenWheel:
    version: str
    sha256: str
    content: bytes = field(repr=False)

    @property
    def filename(self) -> str:
        return f"vmgen-{self.version}-{TAG}.whl"

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    @property
    def relative_path(self) -> str:
        """Where it goes below a drop folder: one folder per build, so a stale wheel of another
        build (left in a baked image, or in a reused home) is never mistaken for this one."""
        return wheel_path(self.sha256, self.version)

    @property
    def build(self) -> str:
        """The version and the build, as a baked image's stamp records them."""
        return f"{self.version}+{self.short_hash}"


def wheel_path(sha256: str, version: str) -> str:
    """VmgenWheel.relative_path for a build known by its hash (what the renderer knows)."""
    return f"{sha256[:16]}/vmgen-{version}-{TAG}.whl"


def build_wheel(package: Path, version: str) -> VmgenWheel:
    """The package folder as a wheel, deterministic for the same files."""
    entries: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package.parent)
        if path.is_file() and not any(part in _SKIPPED for part in relative.parts) and path.suffix != ".pyc":
            entries[relative.as_posix()] = path.read_bytes()
    dist_info = f"vmgen-{version}.dist-info"
    entries[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: vmgen\nVersion: {version}\nRequires-Python: >=3.11\n"
        "Summary: vmgen's VM side, built by the CLI that launched this VM\n"
    ).encode()
    entries[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: vmgen\nRoot-Is-Purelib: true\nTag: {TAG}\n".encode()
    )
    entries[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{VM_ENTRY_POINT}\n".encode()
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries.items())
    entries[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    content = buffer.getvalue()
    return VmgenWheel(version=version, sha256=hashlib.sha256(content).hexdigest(), content=content)


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@cache
def own_wheel() -> VmgenWheel:
    """This process's vmgen as a wheel (built once per process: a few dozen milliseconds)."""
    return build_wheel(Path(vmgen.__file__).parent, vmgen.__version__)


def version_line() -> str:
    """What `vmgen --version` prints: the version, and which build of it."""
    wheel = own_wheel()
    return f"vmgen {wheel.version} (build {wheel.short_hash})"
