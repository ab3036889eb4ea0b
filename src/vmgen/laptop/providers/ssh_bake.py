"""The part of a bake that happens on a cloud build VM, over SSH as root: what Packer's
provisioners did (put vmgen's wheel in place, wait for cloud-init's bake script, clean up), done
with vmgen's own SSH, so a cloud bake needs no other tool."""

from __future__ import annotations

from collections.abc import Callable

from ...contract.names import VM
from ...errors import BakeFailed, BootFailed
from ...selfwheel import VmgenWheel
from ..builder.install import BAKE_CLEANUP
from ..readiness import follow_boot, ssh_lines, wait_for_ssh
from ..ssh import SSHTarget, run, write_file_while_booting
from ..stamps import installed_version

Progress = Callable[[str], None]


def bake_over_ssh(
    target: SSHTarget, wheel: VmgenWheel, progress: Progress, timeout: float, agent_version_command: str = ""
) -> str:
    """Returns once the VM holds the baked install steps and nothing of this bake's access: the
    agent version it installed ("" when not known)."""
    try:
        wait_for_ssh(lambda: target, timeout, progress)
    except BootFailed as exc:
        raise BakeFailed(f"the build VM did not answer over SSH: {exc}") from None
    progress("sending vmgen's wheel to the build VM")
    write_file_while_booting(target, str(VM.incoming / wheel.relative_path), wheel.content)
    try:
        phases = follow_boot(lambda: ssh_lines(target), timeout, progress, lambda: _log_tail(target))
    except BootFailed as exc:
        raise BakeFailed(f"the install steps failed: {exc}") from None
    if not phases or phases[-1].name != "baked":
        raise BakeFailed("cloud-init finished but the bake script did not: " + _log_tail(target))
    version = ""
    if agent_version_command:
        said = run(target, ["bash", "-lc", f"{agent_version_command} 2>&1"], check=False, timeout=60)
        version = installed_version(said.stdout.decode(errors="replace"))
    progress("cleaning up (cloud-init clean, host keys, this bake's key)")
    run(target, ["bash", "-c", " && ".join((*BAKE_CLEANUP, "sync"))], timeout=120)
    return version


def _log_tail(target: SSHTarget) -> str:
    result = run(target, ["tail", "-n", "15", "/var/log/cloud-init-output.log"], check=False, timeout=20)
    return result.stdout.decode(errors="replace").strip()
