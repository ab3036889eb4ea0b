"""What a workspace installs, and the stamps that let a baked image skip it.

One plan feeds both the provisioning script cloud-init runs on a stock image and the bake script
Packer (or the docker provider) runs to make an image. Each step records a stamp in
/etc/vmgen/stamps/<step> once it succeeded; a launch on an image whose stamp matches skips the
step, and a mismatch (say, a newer vmgen) redoes that step alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..agents import Agent
from ..spec import VmgenInstall, WorkspaceSpec
from ..stamps import ImageStamp, label_value

BASE_PACKAGES = ("git", "tmux", "curl", "ca-certificates", "python3", "python3-venv", "ufw",
                 "fail2ban", "python3-systemd", "rsync")
WEB_PACKAGES = ("caddy",)
# noVNC in the browser <- websockify <- x11vnc <- Xvfb with a light window manager.
DESKTOP_PACKAGES = ("xvfb", "x11vnc", "openbox", "novnc", "websockify", "xterm")
STAMP_DIR = "/etc/vmgen/stamps"


@dataclass(frozen=True)
class InstallPlan:
    packages: tuple[str, ...]
    agent_install: str  # a shell command, run as root
    vmgen: VmgenInstall
    stamp: ImageStamp


def plan_for(agent: Agent, agent_version: str, vmgen: VmgenInstall,
             extra_packages: tuple[str, ...] = ()) -> InstallPlan:
    packages = tuple(sorted(set(BASE_PACKAGES) | set(agent.packages) | set(extra_packages)))
    digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:12]
    stamp = ImageStamp(packages=digest, agent=label_value(f"{agent.name}-{agent_version}"),
                       vmgen=label_value(vmgen.version))
    return InstallPlan(packages=packages, agent_install=agent.install_command(agent_version), vmgen=vmgen,
                       stamp=stamp)


def plan_of(spec: WorkspaceSpec) -> InstallPlan:
    extra = spec.extra_packages + (WEB_PACKAGES if spec.web.domain else ()) + (DESKTOP_PACKAGES if spec.desktop else ())
    return plan_for(spec.agent, spec.agent_version, spec.vmgen, extra)

