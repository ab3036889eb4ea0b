"""The code UI on `code.<host>`: CloudCLI (`@cloudcli-ai/cloudcli`, formerly
`@siteboon/claude-code-ui`), what vmgen installs of it and where.

It is installed as an npm project of root's own (a package.json that pins CloudCLI), not with
`npm install -g`, for two reasons: a global install ignores the project's `overrides`, and
CloudCLI's dependencies bring two platform binaries the code UI never runs on a workspace, 730 MB
of a cold install's download and disk: the Agent SDK's own copy of Claude Code (on Linux CloudCLI
hands the SDK the `claude` on PATH, the agent's own, pinned install) and the Codex CLI. They are
overridden by an empty package. Native modules come prebuilt where their packages ship or fetch
binaries (node-pty, bcrypt; better-sqlite3 from its GitHub releases) and are compiled against
vmgen's Node headers otherwise.

It runs as the agent, bound to 127.0.0.1, in CloudCLI's platform mode (`VITE_IS_PLATFORM`): its
own login is off and every request is its one account's, because every request has passed
vmgen's login first (Caddy's check, or the login service's relay for websockets, closed at Sign
out). CloudCLI then holds no credential of its own: nothing of it answers without vmgen's session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..stamps import label_value
from .node import NodeRuntime

PACKAGE = "@cloudcli-ai/cloudcli"
OFF = "off"  # code_ui_version = "off": a domain without the code UI
DIR = "/opt/vmgen-code-ui"  # root's npm project; CloudCLI runs from it as the agent
ROOT = f"{DIR}/node_modules/{PACKAGE}"
SERVER = f"{ROOT}/dist-server/server/index.js"
# Its database code, which the setup step uses to make the database and seed the one account.
DATABASE_MODULES = f"{ROOT}/dist-server/server/modules/database"
LEFT_OUT_DIR = f"{DIR}/left-out"
LEFT_OUT = (
    "@anthropic-ai/claude-agent-sdk-linux-x64",
    "@anthropic-ai/claude-agent-sdk-linux-arm64",
    "@openai/codex-linux-x64",
    "@openai/codex-linux-arm64",
)


@dataclass(frozen=True)
class CodeUiInstall:
    version: str
    node: NodeRuntime

    @property
    def stamp(self) -> str:
        # Its native modules are built for one Node: another Node redoes the step.
        return label_value(f"cloudcli-{self.version}-node{self.node.version}")

    def project(self) -> str:
        """The package.json of root's npm project that installs it."""
        return json.dumps(
            {
                "name": "vmgen-code-ui",
                "private": True,
                "description": "The code UI vmgen installs (see vmgen/builder/codeui.py)",
                "dependencies": {PACKAGE: self.version},
                "overrides": dict.fromkeys(LEFT_OUT, f"file:{LEFT_OUT_DIR}"),
            },
            indent=2,
        )

    @staticmethod
    def left_out() -> str:
        """The empty package that stands in for what is left out."""
        return json.dumps(
            {"name": "vmgen-left-out", "version": "0.0.0", "description": "left out of the code UI by vmgen"}
        )
