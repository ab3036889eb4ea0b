"""The `vmgen` command: the laptop's commands, and the VM's under `vmgen vmside` (on a workspace
VM, where the laptop's dependencies are not installed, `vmside/main.py` is the console script).

The one module that joins the two halves: nothing in `laptop/` imports `vmside/`, nor the other
way round.
"""

from .laptop.cli import main

main.lazy["vmside"] = "vmgen.vmside.cli:vmside"

__all__ = ["main"]
