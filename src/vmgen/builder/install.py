"""What a workspace installs, and the stamps that let a baked image skip it.

One plan feeds both the provisioning script cloud-init runs on a stock image and the bake script
Packer (or the docker provider) runs to make an image. Each step records a stamp in
/etc/vmgen/stamps/<step> once it succeeded; a launch on an image whose stamp matches skips the
step, and a mismatch (say, a newer vmgen) redoes that step alone.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from ..agents import Agent
from ..spec import VmgenInstall, WorkspaceSpec
from ..stamps import ImageStamp, label_value

BASE_PACKAGES = ("git", "tmux", "curl", "ca-certificates", "python3", "python3-venv", "ufw",
                 "fail2ban", "python3-systemd", "rsync")
WEB_PACKAGES = ("caddy",)
# CloudCLI compiles node-pty and sqlite3: prebuilt binaries would come from GitHub, node headers
# from nodejs.org; Debian's headers (npm_config_nodedir=/usr) and a compiler avoid both.
CODE_UI_PACKAGES = ("build-essential", "python3", "libnode-dev")
CODE_UI_PACKAGE = "@siteboon/claude-code-ui"
# noVNC in the browser <- websockify <- x11vnc <- Xvfb with a light window manager.
DESKTOP_PACKAGES = ("xvfb", "x11vnc", "openbox", "novnc", "websockify", "xterm")
STAMP_DIR = "/etc/vmgen/stamps"


@dataclass(frozen=True)
class InstallPlan:
    packages: tuple[str, ...]
    agent_install: str  # a shell command, run as root
    vmgen: VmgenInstall
    stamp: ImageStamp
    code_ui_install: str = ""  # a shell command, run as root; empty without a domain


def plan_for(agent: Agent, agent_version: str, vmgen: VmgenInstall,
             extra_packages: tuple[str, ...] = (), code_ui_version: str = "") -> InstallPlan:
    if code_ui_version:
        extra_packages = extra_packages + WEB_PACKAGES + CODE_UI_PACKAGES
    packages = tuple(sorted(set(BASE_PACKAGES) | set(agent.packages) | set(extra_packages)))
    digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:12]
    stamp = ImageStamp(packages=digest, agent=label_value(f"{agent.name}-{agent_version}"),
                       vmgen=label_value(vmgen.version),
                       code_ui=label_value(f"cloudcli-{code_ui_version}") if code_ui_version else "")
    code_ui = (f"npm_config_nodedir=/usr npm install -g --no-fund --no-audit "
               f"{CODE_UI_PACKAGE}@{shlex.quote(code_ui_version)}") if code_ui_version else ""
    return InstallPlan(packages=packages, agent_install=agent.install_command(agent_version), vmgen=vmgen,
                       stamp=stamp, code_ui_install=code_ui)


def plan_of(spec: WorkspaceSpec) -> InstallPlan:
    extra = spec.extra_packages + (DESKTOP_PACKAGES if spec.desktop else ())
    return plan_for(spec.agent, spec.agent_version, spec.vmgen, extra,
                    code_ui_version=spec.web.code_ui_version if spec.web.domain else "")

