"""A local repository's dev container as the laptop sees it, before anything is created: which
devcontainer.json a launch would use (the devcontainers CLI's own search order, `--devcontainer
PATH` to pick one of several, `--no-devcontainer` for none), the file read as JSON with comments,
and the refusal policy (`contract.devcontainer`) applied to it and to its local features.

This is an early answer for the user: features from a registry and a base image's metadata are
not visible here (the VM's check of the CLI's merged configuration is the next slice, see
docs/devcontainers.md). `vmgen launch` and `vmgen render` call `devcontainer_for` before anything
is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import json5

from ..contract.devcontainer import (
    ALLOW_SETTING,
    UP_ERROR,
    UP_PHASE,
    UP_TAIL,
    UP_TAIL_LINES,
    Host,
    PortError,
    PortRequests,
    Refusal,
    refusals,
    requested_ports,
)
from ..contract.names import VM
from ..errors import DevcontainerFailed, DevcontainerInvalid, DevcontainerRefused, UsageError
from .spec import DevcontainerSpec, LocalSource, Source

# Where the CLI looks when it is given a workspace folder and no --config, in its order
# (spec-configuration/configurationCommonUtils.ts).
DEFAULT_PATHS = (".devcontainer/devcontainer.json", ".devcontainer.json")
MAX_BYTES = 1024 * 1024  # a devcontainer.json is a few KiB; a larger one is not one
LOG_NAME = VM.devcontainer_log.relative_to(VM.home).as_posix()


@dataclass(frozen=True)
class DevcontainerConfig:
    """The configuration a launch would bring up: its path in the repository (POSIX, relative)
    and its content as parsed."""

    path: str
    content: dict[str, Any]


@dataclass(frozen=True)
class Found:
    """What a launch brings up, and what to say about it: `warnings` (what
    `devcontainer_allow_privileged` let through) and `notes` (ports left out)."""

    spec: DevcontainerSpec | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def devcontainer_for(
    source: Source, workspace: str, *, chosen: str = "", disabled: bool = False, allow_privileged: bool = False
) -> Found:
    """The dev container a launch of `source` brings up (none, or `--no-devcontainer`: `spec`
    None), found, read and checked before anything is made, with its ports. A refusal is one line
    naming the field and the setting (DevcontainerRefused), a port vmgen cannot read one line
    naming the field (DevcontainerInvalid). Only a local repository is read here: a git source's
    files are first seen on the VM, which does not bring a dev container up yet."""
    if disabled:
        return Found()
    if not isinstance(source, LocalSource):
        if chosen:
            raise UsageError("--devcontainer needs a local repository (a git source's dev container is not used yet)")
        return Found()
    relative = find_config(source.path, chosen)
    if relative is None:
        return Found()
    config = read_config(source.path, relative)
    allowed = check_config(source.path, config, allow_privileged=allow_privileged, workspace=workspace)
    ports = ports_of(config)
    warnings = tuple(
        f"{relative}: {refusal.field} {refusal.value} gives the dev container {refusal.gives} "
        f"(allowed by {ALLOW_SETTING} = true)"
        for refusal in allowed
    )
    spec = DevcontainerSpec(
        config=relative, allow_privileged=allow_privileged, forward_ports=ports.ports, publish_ports=ports.publish
    )
    return Found(spec, warnings, tuple(f"{relative}: {note}" for note in ports.notes))


def ports_of(config: DevcontainerConfig) -> PortRequests:
    """The configuration's forwardPorts and appPort (contract.devcontainer.requested_ports); a
    value vmgen cannot read is one line naming the file and the field (DevcontainerInvalid)."""
    try:
        return requested_ports(config.content)
    except PortError as error:
        raise DevcontainerInvalid(f"{config.path}: {error}") from None


def find_config(repo: Path, chosen: str = "", disabled: bool = False) -> str | None:
    """The repository's devcontainer.json, relative to `repo`: `chosen` (`--devcontainer`) when
    given, else the CLI's default; None without one (or with `disabled`). Several configurations
    in `.devcontainer/*/` and none at the default paths is an error that lists them."""
    if disabled:
        return None
    if chosen:
        relative = _inside(repo, chosen)
        if not (repo / relative).is_file():
            raise DevcontainerInvalid(f"--devcontainer {chosen}: no such file in {repo}")
        return relative
    for candidate in DEFAULT_PATHS:
        if (repo / candidate).is_file():
            return _inside(repo, candidate)
    several = sorted(p.relative_to(repo).as_posix() for p in repo.glob(".devcontainer/*/devcontainer.json"))
    if several:
        raise DevcontainerInvalid(
            f"{repo} has several dev container configurations ({', '.join(several)}): "
            f"pick one with --devcontainer PATH, or --no-devcontainer for none"
        )
    return None


def read_config(repo: Path, relative: str) -> DevcontainerConfig:
    """The file parsed as JSON with comments (trailing commas allowed, as the CLI allows them);
    a syntax error, a duplicate key or anything but an object is one line naming the place."""
    return DevcontainerConfig(relative, _read_object(repo, relative))


def check_config(
    repo: Path, config: DevcontainerConfig, *, allow_privileged: bool, workspace: str = "workspace"
) -> list[Refusal]:
    """Refuse (DevcontainerRefused, one line) what the policy refuses in the configuration and
    in its local features (`"./feature"` folders beside it); with `allow_privileged`, return
    what would have been refused, for the launch to say it once."""
    host = Host(
        workspace_folder=str(VM.repo_dir(workspace)),
        environment={"HOME": str(VM.home), "USER": "agent"},
    )
    found = [(config.path, refusal) for refusal in refusals(config.content, host)]
    for feature_path, feature in local_features(repo, config):
        found += [(feature_path, refusal) for refusal in refusals(feature, host)]
    if found and not allow_privileged:
        where, first = found[0]
        raise DevcontainerRefused(first.line(where, more=len(found) - 1))
    return [refusal for _, refusal in found]


def local_features(repo: Path, config: DevcontainerConfig) -> list[tuple[str, dict[str, Any]]]:
    """The configuration's local features (`"./name"`, relative to its own folder), each as its
    path in the repository and its devcontainer-feature.json."""
    features = config.content.get("features")
    if not isinstance(features, Mapping):
        return []
    folder = PurePosixPath(config.path).parent
    found = []
    for reference in features:
        if not isinstance(reference, str) or not reference.startswith(("./", "../")):
            continue  # a feature from a registry or a URL: only the VM sees its metadata
        path = _inside(repo, str(folder / reference / "devcontainer-feature.json"))
        if not (repo / path).is_file():
            raise DevcontainerInvalid(f"{config.path}: the local feature {reference} has no devcontainer-feature.json")
        found.append((path, _read_object(repo, path)))
    return found


def _inside(repo: Path, relative: str) -> str:
    """`relative` as a POSIX path inside the repository, links resolved: the VM gets the
    repository, not this machine's files around it."""
    root = repo.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise DevcontainerInvalid(f"{relative} is outside the repository {repo}")
    return target.relative_to(root).as_posix()


def _read_object(repo: Path, relative: str) -> dict[str, Any]:
    path = repo / relative
    with path.open("rb") as file:
        data = file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise DevcontainerInvalid(f"{relative}: larger than {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
        content = json5.loads(text, allow_duplicate_keys=False)
    except UnicodeDecodeError:
        raise DevcontainerInvalid(f"{relative}: not UTF-8 text") from None
    except RecursionError:
        raise DevcontainerInvalid(f"{relative}: nested too deeply") from None
    except ValueError as error:
        detail = str(error).replace("<string>:", "line ")
        raise DevcontainerInvalid(f"{relative}: not valid JSON with comments: {detail}") from None
    if not isinstance(content, dict):
        raise DevcontainerInvalid(f"{relative}: must hold a JSON object, not {type(content).__name__}")
    return content


@dataclass
class UpFollower:
    """Reads what the VM's `devcontainer-up` prints (contract.devcontainer's line protocol): each
    phase becomes a launch progress line, the CLI's message and output tail are kept for the error."""

    progress: Callable[[str], None]
    message: str = ""
    tail: list[str] = field(default_factory=list)

    def line(self, text: str) -> None:
        if text.startswith(UP_PHASE):
            self.progress(f"dev container: {text.removeprefix(UP_PHASE).strip()}")
        elif text.startswith(UP_ERROR):
            self.message = text.removeprefix(UP_ERROR).strip()
        elif text.startswith(UP_TAIL):
            self.tail.append(text.removeprefix(UP_TAIL).rstrip())

    def failure(self, exit_code: int, stderr: str = "") -> DevcontainerFailed:
        """The launch's one error: the CLI's message first, then the last lines of its output
        (a failing postCreateCommand's own output among them)."""
        message = self.message or (stderr.strip().splitlines() or [f"exit {exit_code}"])[-1]
        shown = "\n".join(f"  {line}" for line in self.tail[-UP_TAIL_LINES:] if line.strip())
        return DevcontainerFailed(
            f"the dev container did not come up: {message}"
            + (
                f"\nthe last lines of `devcontainer up` (all of it in ~/{LOG_NAME} on the workspace):\n{shown}"
                if shown
                else ""
            )
        )
