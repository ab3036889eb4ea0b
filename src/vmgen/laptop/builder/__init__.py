"""Turn a WorkspaceSpec into cloud-init user-data, and check it before anything is created."""

from .hostkeys import HostKey, generate_host_key
from .render import RenderOptions, render_user_data
from .validate import check_schema, check_size

__all__ = [
    "HostKey",
    "RenderOptions",
    "check_schema",
    "check_size",
    "generate_host_key",
    "render_user_data",
]
