"""auto_bake: after a cold launch, bake its install plan in the background so the next launch
with the same plan boots baked, without the user baking by hand.

The bake runs as `vmgen image build --if-missing` in its own session: it outlives the launch's
terminal, takes a lock per plan (two launches never bake the same plan twice), checks once more
that no image has the plan, and bakes from a fresh build VM of the provider's base image; never
from the workspace just launched, which holds the user's code and credentials. A bake that fails
leaves its log and changes nothing for launches: they keep installing cold."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .builder.install import InstallPlan, plan_of
from .config import state_dir
from .providers import Provider
from .spec import WorkspaceSpec

YES = frozenset({"1", "true", "yes", "on"})
NO = frozenset({"0", "false", "no", "off"})


def wanted(setting: str, provider: Provider) -> bool:
    """The auto_bake setting for this provider: "auto" means the provider's default."""
    value = setting.strip().lower()
    if value == "auto":
        return provider.auto_bakes
    if value in YES or value in NO:
        return value in YES
    raise ConfigError(f"setting 'auto_bake': {setting!r} is not auto, yes or no")


def has_image_for(provider: Provider, spec: WorkspaceSpec) -> bool:
    """Whether a launch of this spec boots an image with every install step baked in."""
    baked = provider.newest_baked(spec)
    return baked is not None and not baked.stamp.differs_from(plan_of(spec).stamp)


def plan_settings(spec: WorkspaceSpec) -> dict[str, str]:
    """The settings (as environment variables) under which `vmgen image build` bakes this spec's
    plan: the choices of the launch's command line, not only those of the configuration."""
    return {
        "VMGEN_AGENT": spec.agent.name,
        "VMGEN_AGENT_VERSION": spec.agent_version,
        "VMGEN_DESKTOP": "yes" if spec.desktop else "no",
        "VMGEN_DOMAIN": spec.web.domain,
        "VMGEN_CODE_UI_VERSION": spec.web.code_ui_version,
    }


def plan_key(provider_name: str, plan: InstallPlan) -> str:
    return f"{provider_name}-" + hashlib.sha256(repr(plan.stamp).encode()).hexdigest()[:16]


def bakes_dir() -> Path:
    path = state_dir() / "bakes"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass(frozen=True)
class BackgroundBake:
    log: Path
    started: bool  # False: a bake of this plan was already running


@contextmanager
def plan_lock(key: str) -> Iterator[bool]:
    """Held for a bake of one plan; yields False when another process holds it."""
    with open(bakes_dir() / f"{key}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(provider: Provider, spec: WorkspaceSpec) -> BackgroundBake:
    """Start `vmgen image build --if-missing` for the spec's plan, detached from this process."""
    key = plan_key(provider.name, plan_of(spec))
    log = bakes_dir() / f"{key}.log"
    with plan_lock(key) as free:
        if not free:
            return BackgroundBake(log, started=False)
    with open(log, "w") as output:
        subprocess.Popen(
            [sys.executable, "-m", "vmgen", "image", "build", "--provider", provider.name, "--if-missing"],
            env={**os.environ, **plan_settings(spec)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C or a closed terminal after the launch does not stop it
        )
    return BackgroundBake(log, started=True)
