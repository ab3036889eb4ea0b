"""What a workspace installs, and the stamps that let a baked image skip it.

One plan feeds both the provisioning script cloud-init runs on a stock image and the bake script
a provider's bake (or Packer) runs to make an image. Each step records a stamp in
/etc/vmgen/stamps/<step> once it succeeded; a launch on an image whose stamp matches skips the
step, and a mismatch (say, a newer vmgen) redoes that step alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...contract.names import VM
from ..agents import Agent
from ..spec import VmgenInstall, WorkspaceSpec
from ..stamps import ImageStamp, label_value
from . import codeui
from .codeui import CodeUiInstall
from .devcontainer import CLI as DEVCONTAINER_CLI, PACKAGES as DEVCONTAINER_PACKAGES, DevcontainerCli
from .node import NODE, NodeRuntime

BASE_PACKAGES = (
    "git",
    "tmux",
    "curl",
    "ca-certificates",
    "python3",
    "python3-venv",
    "ufw",
    "fail2ban",
    "python3-systemd",
    "rsync",
)
WEB_PACKAGES = ("caddy",)
# noVNC in the browser <- websockify <- x11vnc <- Xvfb with a light window manager.
DESKTOP_PACKAGES = ("xvfb", "x11vnc", "openbox", "novnc", "websockify", "xterm")
# After the bake script, before any snapshot (Packer's template and every provider's bake alike): the
# next boot is a new instance for cloud-init, sshd gets fresh host keys (vmgen hands each
# workspace its own, pinned on the laptop), and a launch follows its own phase log, not the bake's.
BAKE_CLEANUP = (
    "cloud-init clean --logs",
    f"rm -rf /etc/ssh/ssh_host_* /root/.ssh/authorized_keys {VM.log} {VM.incoming}",
)


@dataclass(frozen=True)
class InstallPlan:
    packages: tuple[str, ...]
    agent_install: str  # a shell command, run as root
    vmgen: VmgenInstall
    stamp: ImageStamp
    code_ui: CodeUiInstall | None = None  # with a domain (unless code_ui_version = off)
    # Prints the installed agent's version (a bake records it: "latest" names no version).
    agent_version_command: str = ""
    node: NodeRuntime | None = None  # for an npm-installed agent and the code UI
    devcontainer: DevcontainerCli | None = None  # for a repository with a dev container


def plan_for(
    agent: Agent,
    agent_version: str,
    vmgen: VmgenInstall,
    extra_packages: tuple[str, ...] = (),
    code_ui_version: str = "",
    devcontainer: bool = False,
) -> InstallPlan:
    extra = extra_packages + (DEVCONTAINER_PACKAGES if devcontainer else ())
    packages = tuple(sorted(set(BASE_PACKAGES) | set(agent.packages) | set(extra)))
    digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:12]
    cli = DEVCONTAINER_CLI if devcontainer else None
    node = NODE if agent.node or code_ui_version or cli else None
    code_ui = CodeUiInstall(code_ui_version, NODE) if code_ui_version else None
    stamp = ImageStamp(
        packages=digest,
        agent=label_value(f"{agent.name}-{agent_version}"),
        vmgen=label_value(vmgen.build),
        code_ui=code_ui.stamp if code_ui else "",
        node=node.stamp if node else "",
        devcontainer=cli.stamp if cli else "",
    )
    return InstallPlan(
        packages=packages,
        agent_install=agent.install_command(agent_version),
        vmgen=vmgen,
        stamp=stamp,
        code_ui=code_ui,
        agent_version_command=agent.version_command,
        node=node,
        devcontainer=cli,
    )


def workspace_plan(
    agent: Agent,
    agent_version: str,
    vmgen: VmgenInstall,
    *,
    desktop: bool,
    domain: str,
    code_ui_version: str,
    extra_packages: tuple[str, ...] = (),
    devcontainer: bool = False,
) -> InstallPlan:
    """What a workspace with these choices installs: the desktop's packages with --desktop, the
    web server and the code UI with a domain. Launches and bakes both go through here, so a
    bake made with the same settings carries the stamps a launch looks for."""
    extra = extra_packages + (DESKTOP_PACKAGES if desktop else ()) + (WEB_PACKAGES if domain else ())
    code_ui = code_ui_version if domain and code_ui_version != codeui.OFF else ""
    return plan_for(agent, agent_version, vmgen, extra, code_ui_version=code_ui, devcontainer=devcontainer)


def plan_of(spec: WorkspaceSpec) -> InstallPlan:
    return workspace_plan(
        spec.agent,
        spec.agent_version,
        spec.vmgen,
        desktop=spec.desktop,
        domain=spec.web.domain,
        code_ui_version=spec.web.code_ui_version,
        extra_packages=spec.extra_packages,
        devcontainer=spec.devcontainer is not None,
    )
