"""What the workspace serves besides its page, as `vmgen open` needs to know before it opens a
tunnel: whether it has a desktop, and whether its code UI is installed, still installing (and how
far), or failed. Read as the agent user: every file here is world-readable, and systemd says
whether a unit failed to anyone."""

from __future__ import annotations

import json
import subprocess

from ..contract.documents import WebServices
from ..contract.names import UNITS, VM, VmPaths

# How far the code UI's install is, in words (its phases: vmgen/cloudinit_templates/code-ui.sh.j2).
CODE_UI_STEPS = {
    "code-ui-install": "starting",
    "code-ui-download": "downloading",
    "code-ui-native": "setting up its native modules",
    "code-ui-compiler": "installing a compiler (no prebuilt binary here)",
    "code-ui-compile": "compiling a native module (no prebuilt binary here)",
    "code-ui-setup": "setting up its account",
    "code-ui-ready": "starting",
    "code-ui-failed": "failed",
}


def code_ui_progress(paths: VmPaths = VM) -> dict[str, object]:
    """The code UI's install for the workspace page, polled every few seconds: its state, and
    while it installs the step in words and since when. From files alone (the install unit writes
    its failure to the phase log), so that a poll starts no process."""
    if not paths.unit(UNITS.code_ui_install).exists():
        return {"state": "absent"}
    if paths.code_ui_ready.exists():
        return {"state": "ready"}
    step, at = _latest_code_ui_phase(paths)
    return {
        "state": "failed" if step == "code-ui-failed" else "installing",
        "step": CODE_UI_STEPS.get(step, step),
        "since": at,
        "log": str(paths.code_ui_log),
    }


def web_services(paths: VmPaths = VM) -> WebServices:
    try:
        desktop = bool(json.loads(paths.workspace_info.read_text()).get("desktop"))
    except (OSError, ValueError, AttributeError):
        desktop = False
    # The code UI's install unit is rendered only for a workspace with a domain.
    if not paths.unit(UNITS.code_ui_install).exists():
        return WebServices(desktop, "absent")
    if paths.code_ui_ready.exists():
        return WebServices(desktop, "ready")
    step, at = _latest_code_ui_phase(paths)
    return WebServices(desktop, "failed" if _failed(UNITS.code_ui_install) else "installing", step, at)


def _failed(unit: str) -> bool:
    try:
        return subprocess.run(["systemctl", "is-failed", "--quiet", unit], check=False, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _latest_code_ui_phase(paths: VmPaths) -> tuple[str, float]:
    """The install's own phases go to the phase log like provisioning's: `vmgen-phase <t> code-ui-...`."""
    try:
        lines = paths.phases_log.read_text(errors="replace").splitlines()
    except OSError:
        return "", 0.0
    for line in reversed(lines):
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("vmgen-phase", "vmgen-skip") and parts[2].startswith("code-ui"):
            try:
                return parts[2], float(parts[1])
            except ValueError:
                continue
    return "", 0.0
