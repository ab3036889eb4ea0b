"""vmgen: personal cloud workspaces for coding agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vmgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
