"""The ssh provider on its simulated VM: a container on the user's own server, which it cannot
delete; the watchdog powers it off and the workspace's volume on that server keeps the disk, as
on the local engine (`vmgen start` brings it back)."""

from __future__ import annotations

from .docker import DockerSelf

PROVIDER = DockerSelf()
