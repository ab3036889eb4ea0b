"""What a workspace with a dev container installs (docs/devcontainers.md): rootless Podman, which
the agent runs, and the official devcontainers CLI on vmgen's Node.js. Installed only when the
repository has a devcontainer.json; a baked image without them redoes these steps."""

from __future__ import annotations

from dataclasses import dataclass

from ..stamps import label_value

# Debian 12's Podman 4.3 runs rootless with these: newuidmap/newgidmap (uidmap), the network
# (slirp4netns, which needs /dev/net/tun), the OCI runtime vmgen measured (crun), and the
# agent's own systemd session bus (dbus-user-session) for its lingering user manager.
PACKAGES = ("podman", "uidmap", "slirp4netns", "fuse-overlayfs", "crun", "dbus-user-session")
CLI_PACKAGE = "@devcontainers/cli"
CLI_VERSION = "0.89.0"  # the version docs/devcontainers.md measured


@dataclass(frozen=True)
class DevcontainerCli:
    """The devcontainers CLI, installed with npm into /usr/local as root (like an npm agent)."""

    version: str = CLI_VERSION

    @property
    def install(self) -> str:
        return f"npm install -g --no-fund --no-audit {CLI_PACKAGE}@{self.version}"

    @property
    def stamp(self) -> str:
        return label_value(f"devcontainer-cli-{self.version}")


CLI = DevcontainerCli()
