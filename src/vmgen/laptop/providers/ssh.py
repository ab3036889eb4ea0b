"""Workspaces on a server the user already has, with Docker: the docker provider's simulated VMs
(systemd containers with real cloud-init) on that server's engine, reached through the server.

What differs from the local engine, and only that, is here:
- the engine's address: `ssh://user@host:port` through the Docker SDK and the system's ssh
  (the user's keys, agent and known hosts), after one login that says in one line what failed;
- where a workspace is reached: its SSH port is published on the server's addresses and reached
  at the server's name (a local engine publishes on 127.0.0.1 only);
- what the workspace sees: none of this machine's folders (a local backup store, a wheel folder):
  a local repository is uploaded over SSH, as on a cloud;
- the base image lives on the server's engine: a missing one is an error with the command that
  puts it there.

The server comes from the setting `ssh_host` (`--host user@server` of `vmgen launch`, `restore` or
`sizes` for one command). Each workspace records the server it was made on beside its local
state, so `vmgen list`, `start`, `stop`, `destroy` and `restore` find it whatever `ssh_host` says later."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import docker
from docker.errors import DockerException, ImageNotFound

from ...errors import ProviderUnavailable, UsageError, VmgenError
from ..config import state_dir
from ..spec import SIZE_PRESETS, WorkspaceSpec
from ..stamps import BakedImage
from ..state import WorkspaceState
from .base import BakeOptions, KeptDisk, Leftover, SelfDelete, Size, Workspace
from .docker import DockerProvider
from .docker_engine import SHIPPED_IMAGE
from .ssh_host import SETTING, SshHost, check_reachable, parse_ssh_host

if TYPE_CHECKING:
    from ...selfwheel import VmgenWheel
    from ..builder.install import InstallPlan
    from ..config import Settings

NAME = "ssh"
# Beside a workspace's local state: the server it was made on (`user@host:port`).
HOST_FILE = "ssh-host"
# On the server: the workspace's SSH port on every address of the server, as a cloud VM's is.
PUBLISH_ON = "0.0.0.0"


class ServerEngine(DockerProvider):
    """The docker provider on one server's engine, reached over SSH."""

    name = NAME
    shares_local_folders = False
    publish_on = PUBLISH_ON

    def __init__(self, server: SshHost, image: str, client: docker.DockerClient | None = None) -> None:
        self.server = server
        self.reached_at = server.host
        if client is None:
            check_reachable(server)
            try:
                client = docker.DockerClient(base_url=server.docker_url, use_ssh_client=True)
            except DockerException as exc:
                raise ProviderUnavailable(f"cannot reach the Docker engine on {server}: {exc}") from None
        try:
            super().__init__(image, client)
        except ProviderUnavailable:
            raise ProviderUnavailable(f"the Docker engine on {server} does not answer over SSH") from None

    def ensure_image(self) -> None:
        if self.image == SHIPPED_IMAGE:
            super().ensure_image()  # built on the server's engine from the Dockerfile vmgen ships
            return
        try:
            self.client.images.get(self.image)
        except ImageNotFound:
            raise VmgenError(missing_image(self.image, self.server)) from None

    def sizes(self, location: str | None = None) -> list[Size]:
        info = self.client.info()
        cores, memory_gb = int(info.get("NCPU", 0)), round(int(info.get("MemTotal", 0)) / 2**30, 1)
        return [Size(str(self.server), p, p, cores, memory_gb, 0, 0.0, 0.0) for p in SIZE_PRESETS]


def missing_image(image: str, server: SshHost) -> str:
    """The base image is not on the server's engine: how to put it there (pure)."""
    ssh = f"ssh -p {server.port} {server.user}@{server.host}"
    return (
        f"docker image {image!r} is not on {server}'s engine: copy it there with "
        f"`docker save {image} | {ssh} docker load` (or build it there: "
        f"DOCKER_HOST={server.docker_url} images/debian12-test/build.sh), or set docker_image"
    )


class SshProvider:
    name = NAME
    user_data_limit = DockerProvider.user_data_limit
    public = False  # the server's own address; DNS names and HTTPS are a cloud's
    shares_local_folders = False  # the engine is on another machine: this one's folders are not there
    stop_bills = False  # your own server: a stopped workspace costs nothing more than it did
    snapshots = False  # the disk is the workspace's volume on the server, kept while stopped
    auto_bakes = False
    metadata_address = ""
    price_source = "your own server: nothing billed by vmgen's count"
    currency = ""
    bake_methods: tuple[str, ...] = ()
    secret_variables: tuple[str, ...] = ()
    host_setting = SETTING

    def __init__(
        self,
        server: SshHost | None,
        image: str,
        connect: Callable[[SshHost, str], ServerEngine] = ServerEngine,
    ) -> None:
        self.server = server
        self.image = image
        self._connect = connect
        self._engines: dict[SshHost, ServerEngine] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SshProvider:
        return cls(parse_ssh_host(settings.ssh_host) if settings.ssh_host else None, settings.docker_image)

    @classmethod
    def configured_image(cls, settings: Settings) -> str:
        return ""  # docker_image names the simulated-VM image, as for the docker provider

    # --- which server ------------------------------------------------------------------------

    def recorded_server(self, name: str) -> SshHost | None:
        """The server NAME was made on, as its local state records it."""
        with contextlib.suppress(OSError, VmgenError):
            return parse_ssh_host((WorkspaceState(name).dir / HOST_FILE).read_text())
        return None

    def _configured(self) -> SshHost:
        if self.server is None:
            raise UsageError(
                f"the {NAME} provider needs your server: `--host user@server` on the command, "
                f'or the setting {SETTING} = "user@server[:port]"'
            )
        return self.server

    def servers(self) -> list[SshHost]:
        """The configured server and every server a workspace of this machine was made on."""
        found = [self.server] if self.server else []
        base = state_dir() / "workspaces"
        for folder in sorted(base.iterdir()) if base.is_dir() else ():
            recorded = self.recorded_server(folder.name)
            if recorded is not None and recorded not in found:
                found.append(recorded)
        return found

    def engine(self, server: SshHost | None = None) -> ServerEngine:
        server = server or self._configured()
        if server not in self._engines:
            self._engines[server] = self._connect(server, self.image)
        return self._engines[server]

    def _engine_of(self, name: str) -> ServerEngine | None:
        server = self.recorded_server(name) or self.server
        return self.engine(server) if server else None

    def _require_engine_of(self, name: str) -> ServerEngine:
        engine = self._engine_of(name)
        if engine is None:
            raise UsageError(f"no server is recorded for {name!r}; set {SETTING} to the server it runs on")
        return engine

    # --- operations --------------------------------------------------------------------------

    def check(self, spec: WorkspaceSpec) -> None:
        if spec.size not in SIZE_PRESETS:
            raise UsageError(
                f"{NAME} workspaces have no size or type {spec.size!r}: use --size {'|'.join(SIZE_PRESETS)} "
                "(a container uses what the server has)"
            )
        self._configured()

    def create(self, spec: WorkspaceSpec, user_data: str) -> Workspace:
        server = self._configured()
        engine = self.engine(server)
        # Recorded first: a launch cut short leaves what `vmgen destroy` needs to find the rest.
        WorkspaceState(spec.name).write(HOST_FILE, f"{server}\n")
        return engine.create(spec, user_data)

    def get(self, name: str) -> Workspace | None:
        engine = self._engine_of(name)
        return engine.get(name) if engine else None

    def workspaces(self) -> list[Workspace]:
        found = [w for server in self.servers() for w in self.engine(server).workspaces()]
        return sorted(found, key=lambda w: w.name)

    def start(self, name: str) -> Workspace:
        return self._require_engine_of(name).start(name)

    def stop(self, name: str) -> Workspace:
        return self._require_engine_of(name).stop(name)

    def delete(self, name: str) -> str | None:
        engine = self._engine_of(name)
        if engine is not None:
            engine.delete(name)
        return None

    def leftovers(self, name: str | None = None) -> list[Leftover]:
        if name is not None:
            engine = self._engine_of(name)
            return engine.leftovers(name) if engine else []
        return [left for server in self.servers() for left in self.engine(server).leftovers()]

    def kept_disks(self, name: str | None = None) -> list[KeptDisk]:
        return []  # a workspace without a backup is powered off: its volume stays on the server

    def restore_kept(self, name: str, snapshot: str, ssh_public_key: str, user_data: str) -> Workspace:
        raise UsageError(f"a {NAME} workspace keeps its disk in its volume: `vmgen start {name}` brings it back")

    def remove_kept(self, snapshot: str) -> None:
        raise UsageError(f"the {NAME} provider keeps no snapshots: a workspace's disk is its volume")

    def self_delete_spec(self) -> SelfDelete:
        return SelfDelete(provider=self.name)  # a container cannot delete itself: it powers off

    def baked_images(self, base: str | None = None) -> list[BakedImage]:
        return self.engine().baked_images(base)

    def newest_baked(self, spec: WorkspaceSpec | None = None) -> BakedImage | None:
        return self.engine().newest_baked(spec)

    def remove_baked(self, image: BakedImage) -> None:
        self.engine().remove_baked(image)

    def bake(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], options: BakeOptions
    ) -> BakedImage | None:
        # docker commit on the server's engine: the same bake as the local engine's.
        return self.engine().bake(plan, wheel, progress, options)

    def price_hourly(self, spec: WorkspaceSpec) -> float | None:
        return 0.0

    def sizes(self, location: str | None = None) -> list[Size]:
        return self.engine().sizes(location)

    def stop_note(self) -> str:
        return "the container is stopped on your server; its disk and /home are kept"

    def image_cost_note(self) -> str:
        server = self.server or "your server"
        return f"a docker image on {server}'s disk (about 2 GB; `vmgen image prune` removes old ones)"
