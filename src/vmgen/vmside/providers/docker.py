"""The docker provider on its simulated VM: a container cannot delete itself, so the watchdog
powers it off and the workspace's volume keeps the disk (`vmgen start` brings it back)."""

from __future__ import annotations

from ...contract.documents import WatchSettings
from ...contract.names import VM, VmPaths
from ...errors import ActionFailed


class DockerSelf:
    deletes_itself = False
    snapshots = False
    stop_note = ""
    poweroff_keeps_disk = True

    def delete(self, settings: WatchSettings, paths: VmPaths = VM) -> None:
        raise ActionFailed("a docker workspace cannot delete its own container; it powers off")

    def snapshot(self, settings: WatchSettings, paths: VmPaths = VM) -> str:
        raise ActionFailed("a docker workspace keeps its disk in its volume; it takes no snapshots")


PROVIDER = DockerSelf()
