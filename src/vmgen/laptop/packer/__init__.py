"""Baked Hetzner snapshots with Packer: the HCL2 template and the bake command."""

from .build import build_with_packer, write_build_dir
from .template import render_template

__all__ = ["build_with_packer", "render_template", "write_build_dir"]
