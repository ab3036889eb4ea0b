"""Version stamps of baked images: what an image has installed, one short value per step.

A stamp is recorded on the VM in /etc/vmgen/stamps/<step> and as labels on the image (docker
image labels, Hetzner snapshot labels), so a launch can find a matching image and skip steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

STEPS = ("packages", "node", "agent", "vmgen", "code_ui", "devcontainer")
# Optional steps: an empty stamp means "not wanted", never a reason to redo anything.
OPTIONAL_STEPS = frozenset({"node", "code_ui", "devcontainer"})
# Label values must fit Hetzner's rules, so stamps are short and use only [A-Za-z0-9._-].
BAKED_LABEL = "vmgen-baked"
BASE_LABEL = "vmgen-base"
STAMP_LABEL_PREFIX = "vmgen-stamp-"
# The agent version a bake installed (its stamp names the pin asked for, which may be "latest").
AGENT_VERSION_LABEL = "vmgen-agent-version"
_VERSION_RE = re.compile(r"\d+\.\d+[0-9A-Za-z.+-]*")


@dataclass(frozen=True)
class ImageStamp:
    packages: str
    agent: str
    vmgen: str
    code_ui: str = ""  # CloudCLI, with a domain only
    node: str = ""  # vmgen's Node.js, for an npm-installed agent or the code UI
    devcontainer: str = ""  # the devcontainers CLI, for a repository with a dev container

    def labels(self, base: str) -> dict[str, str]:
        return {
            BAKED_LABEL: "1",
            BASE_LABEL: label_value(base),
            **{STAMP_LABEL_PREFIX + step: getattr(self, step) for step in STEPS if getattr(self, step)},
        }

    @classmethod
    def from_labels(cls, labels: dict[str, str] | None) -> ImageStamp | None:
        labels = labels or {}
        if labels.get(BAKED_LABEL) != "1":
            return None
        try:
            return cls(
                **{
                    step: labels[STAMP_LABEL_PREFIX + step]
                    if step not in OPTIONAL_STEPS
                    else labels.get(STAMP_LABEL_PREFIX + step, "")
                    for step in STEPS
                }
            )
        except KeyError:
            return None

    def differs_from(self, wanted: ImageStamp) -> tuple[str, ...]:
        """The steps a launch wanting `wanted` redoes on an image stamped `self`."""
        return tuple(
            step
            for step in STEPS
            if getattr(self, step) != getattr(wanted, step) and (getattr(wanted, step) or step not in OPTIONAL_STEPS)
        )

    def describe(self) -> str:
        return f"{self.agent}, vmgen {self.vmgen}, packages {self.packages}" + (
            f", {self.code_ui}" if self.code_ui else ""
        )


@dataclass(frozen=True)
class BakedImage:
    """A baked image a provider can launch from."""

    ref: str  # what the provider creates from: a docker image id, a snapshot id
    name: str  # for people: a tag or a snapshot description
    created_at: datetime
    stamp: ImageStamp
    base: str  # label value of the stock image it was baked from
    owner: str = ""  # who baked it (user@host); "" for images baked before vmgen recorded it
    owner_id: str = ""  # the baker's owner id (see owner.py); "" for images baked before owner ids
    agent_version: str = ""  # what the bake installed ("2.1.332"); "" when not recorded


def installed_version(output: str) -> str:
    """The version in an agent CLI's `--version` output ("2.1.332 (Claude Code)" -> "2.1.332"),
    as a label value; "" when it printed none."""
    found = _VERSION_RE.search(output)
    return label_value(found[0]) if found else ""


def label_value(text: str) -> str:
    """Hetzner label values: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("._-")[:63].rstrip("._-")
    return cleaned or "none"
