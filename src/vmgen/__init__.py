"""vmgen: personal cloud workspaces for coding agents."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Read from the installed package's metadata when asked, not at every start: importing
    # importlib.metadata costs a tenth of a second of CPU, on the laptop and on the VM alike.
    if name != "__version__":
        raise AttributeError(f"module 'vmgen' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vmgen")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"
