"""Workspaces on Hetzner Cloud, through the official `hcloud` library.

Everything vmgen creates carries the label `vmgen=1`: the servers (plus `vmgen-ws=<name>`), one
shared firewall (inbound 22/80/443) and the user's SSH key. The shared pieces are removed with
the last workspace.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from hcloud import APIException, Client
from hcloud.actions import ActionException, ActionFailedException, ActionTimeoutException
from hcloud.firewalls import BoundFirewall, FirewallRule
from hcloud.images import BoundImage, Image
from hcloud.locations import Location
from hcloud.servers import BoundServer
from hcloud.ssh_keys import BoundSSHKey

from ... import __version__
from ...contract.enums import WorkspaceStatus
from ...contract.names import LOCATION_LABEL, RESCUE_LABEL, TYPE_LABEL
from ...errors import (
    BakeFailed,
    ProviderActionFailed,
    ProviderAuthError,
    ProviderLimit,
    ProviderUnavailable,
    ResourceLeftBehind,
    UsageError,
    VmgenError,
    WorkspaceExists,
    WorkspaceNotFound,
)
from ..spec import WorkspaceSpec
from ..stamps import AGENT_VERSION_LABEL, BAKED_LABEL, BASE_LABEL, BakedImage, ImageStamp, label_value
from .base import (
    LABEL,
    OWNER_ID_LABEL,
    OWNER_LABEL,
    WS_LABEL,
    BakeOptions,
    KeptDisk,
    Leftover,
    SelfDelete,
    Size,
    SSHEndpoint,
    Workspace,
    owned,
    owner_labels,
)
from .hetzner_sizes import PRESETS, TypeOffer, bake_type, choose_type, offers_from_api, required

if TYPE_CHECKING:
    from ...selfwheel import VmgenWheel
    from ..builder.install import InstallPlan
    from ..config import Settings

# The API token's variable: in the user's environment (hcloud's own tools use it too), and in the
# VM's root-only secrets file, where its self-delete reads it (vmgen.vmside.providers.hetzner).
TOKEN_VARIABLE = "HCLOUD_TOKEN"
DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
DEFAULT_IMAGE = "ubuntu-24.04"
DEFAULT_METADATA = "http://169.254.169.254/hetzner/v1/metadata"
FIREWALL_NAME = "vmgen"
BAKE_SERVER_LABEL = "vmgen-bake"  # a build server: it holds no workspace
# Hetzner has no room for the server where it was asked for: the create call answers 412
# resource_unavailable, or its action fails with placement_error (hcloud-go's error codes).
NO_ROOM = ("resource_unavailable", "placement_error")
STATUS = {
    "running": WorkspaceStatus.RUNNING,
    "off": WorkspaceStatus.STOPPED,
    "initializing": WorkspaceStatus.STARTING,
    "starting": WorkspaceStatus.STARTING,
    "stopping": WorkspaceStatus.STOPPING,
    "deleting": WorkspaceStatus.DELETING,
}


@contextmanager
def api_errors(action: str) -> Iterator[None]:
    """Translate hcloud's exceptions into one line a user can act on."""
    try:
        yield
    except APIException as exc:
        code = exc.code
        if code == "unauthorized":
            raise ProviderAuthError("Hetzner rejected the API token (401): check HCLOUD_TOKEN") from None
        if code in ("token_readonly", "forbidden"):
            raise ProviderAuthError(
                f"the Hetzner token may not {action}: it is read-only; create a Read & Write token"
            ) from None
        if code == "rate_limit_exceeded":
            raise ProviderLimit(
                "Hetzner's API rate limit is exhausted even after backing off; try again in a minute"
            ) from None
        if code == "resource_limit_exceeded":
            raise ProviderLimit(f"Hetzner project limit reached while trying to {action}: {exc.message}") from None
        if code == "uniqueness_error":
            raise WorkspaceExists(f"Hetzner already has a resource with that name ({exc.message})") from None
        if code in NO_ROOM:
            raise ProviderActionFailed(_no_room(action, exc.message)) from None
        raise VmgenError(f"Hetzner API error while trying to {action}: {exc.message} ({code})") from None
    except ActionFailedException as exc:  # not an APIException: the request was accepted, its action failed
        error: Mapping[str, Any] = exc.action.error or {}
        code, message = error.get("code", "action_failed"), error.get("message", "the action failed")
        if code in NO_ROOM:
            raise ProviderActionFailed(_no_room(action, message)) from None
        raise ProviderActionFailed(f"Hetzner could not {action}: {message} ({code})") from None
    except ActionTimeoutException as exc:
        raise ProviderActionFailed(
            f"Hetzner did not finish the action to {action} in time ({exc.action.command}); "
            "it may still complete: see `vmgen list`"
        ) from None
    except requests.exceptions.ConnectionError:
        raise ProviderUnavailable("cannot reach the Hetzner API: is the network up?") from None


def _no_room(action: str, message: str) -> str:
    return f"Hetzner has no room to {action} right now ({message}): try again later, another --region or another --type"


def follow_rate_limit_headers(client: Client) -> None:
    """On 429, wait as long as the RateLimit headers say one request takes to free up, instead of
    hcloud's blind exponential backoff.

    hcloud retries rate-limited calls itself but does not read the headers; its retry interval
    function is replaced with one that does. If hcloud's internals change, its own backoff stays.
    """
    # hcloud's private internals: nothing typed to lean on, and any of them may be gone.
    inner: Any = getattr(client, "_client", None)
    session: Any = getattr(inner, "_session", None)
    default: Callable[[int], float] | None = getattr(inner, "_retry_interval_func", None)
    if session is None or default is None:
        return
    waits: list[float] = []

    def remember(response: requests.Response, *args: object, **kwargs: object) -> None:
        headers = response.headers
        if response.status_code == 429 and all(
            headers.get(h, "").isdigit() for h in ("RateLimit-Reset", "RateLimit-Limit", "RateLimit-Remaining")
        ):
            # Reset is when the bucket is full again; one request frees up every (Reset-now)/missing s.
            missing = max(1, int(headers["RateLimit-Limit"]) - int(headers["RateLimit-Remaining"]))
            waits[:] = [(float(headers["RateLimit-Reset"]) - time.time()) / missing]

    def interval(retries: int) -> float:
        if waits:
            return min(60.0, max(0.2, waits.pop()))
        return default(retries)

    session.hooks["response"].append(remember)
    inner._retry_interval_func = interval


def key_fingerprint(public_key: str) -> str:
    """The MD5 fingerprint Hetzner shows for an SSH public key (aa:bb:...)."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob).hexdigest()  # Hetzner's key identifier, not a security use
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class HetznerProvider:
    name = "hetzner"
    user_data_limit = 32 * 1024
    public = True
    shares_local_folders = False
    stop_bills = True  # Hetzner bills a server that is off; only a delete ends it
    snapshots = True
    auto_bakes = True
    metadata_address = "169.254.169.254"
    price_source = "Hetzner's price list for the server type and location (gross, with VAT)"
    currency = "EUR"  # Hetzner Cloud prices and bills in euros
    bake_methods = ("packer",)
    secret_variables = (TOKEN_VARIABLE,)
    host_setting = ""  # servers of its own cloud, none of the user's
    # Right after its last server is deleted, Hetzner may still count the shared firewall as in
    # use (422 resource_in_use) for a few seconds: the waits between tries before leaving it for
    # the next destroy.
    FIREWALL_IN_USE_WAITS: tuple[float, ...] = (1.0, 2.0, 4.0)
    # A server is locked (423) while an action runs on it, such as its start right after create:
    # deletes tried, each after waiting for the running actions.
    LOCKED_DELETE_TRIES = 5

    def __init__(
        self,
        token: str,
        location: str,
        image: str = "",
        endpoint: str = "",
        metadata_url: str = DEFAULT_METADATA,
        poll_interval: float = 1.0,
    ) -> None:
        if not token:
            raise ProviderAuthError(
                f"no Hetzner API token: set {TOKEN_VARIABLE}, or hcloud_token in ~/.config/vmgen/config.toml"
            )
        self.location = location
        self.image = image or DEFAULT_IMAGE
        self.token = token
        self.endpoint = endpoint
        self.metadata_url = metadata_url or DEFAULT_METADATA
        self.client = Client(
            token=token,
            api_endpoint=endpoint or DEFAULT_ENDPOINT,
            application_name="vmgen",
            application_version=__version__,
            poll_interval=poll_interval,
        )
        follow_rate_limit_headers(self.client)

    @classmethod
    def from_settings(cls, settings: Settings) -> HetznerProvider:
        return cls(
            token=settings.hcloud_token,
            location=settings.region,
            image=settings.image,
            endpoint=settings.hcloud_endpoint,
            metadata_url=settings.hcloud_metadata_url,
        )

    @classmethod
    def configured_image(cls, settings: Settings) -> str:
        return settings.image

    # --- the Provider protocol -------------------------------------------------------------

    def check(self, spec: WorkspaceSpec) -> None:
        location = spec.region or self.location
        choose_type(self.offers(location), spec.size, location)

    def create(self, spec: WorkspaceSpec, user_data: str) -> Workspace:
        with api_errors("check existing servers"):
            if self._server(spec.name) is not None:
                raise WorkspaceExists(f"a workspace named {spec.name!r} already exists on hetzner")
        location = spec.region or self.location
        offer = choose_type(self.offers(location), spec.size, location)
        with api_errors("register the SSH key"):
            ssh_key = self._ssh_key(spec.ssh_keys[0])
        with api_errors("create the firewall"):
            firewall = self._firewall()
        try:
            return self._create_server(
                spec.name, _image(spec.image or self.image), user_data, offer, ssh_key, firewall, location
            )
        except BaseException:
            self._remove_shared_quietly()
            raise

    def _create_server(
        self,
        name: str,
        image: Image,
        user_data: str,
        offer: TypeOffer,
        ssh_key: BoundSSHKey,
        firewall: BoundFirewall,
        location: str,
    ) -> Workspace:
        what = f"create a {offer.name} server in {location}"
        with api_errors(what):
            server_type = self.client.server_types.get_by_name(offer.name)
            assert server_type is not None, "the offer is one of the API's own server types"
            response = self.client.servers.create(
                name=name,
                server_type=server_type,
                image=image,
                ssh_keys=[ssh_key],
                firewalls=[firewall],
                user_data=user_data,
                labels={LABEL: "1", WS_LABEL: name, **owner_labels(label_value)},
                location=Location(name=location),
            )
        try:
            with api_errors(what):
                response.action.wait_until_finished()
        except BaseException as failure:
            self._delete_half_made(response.server, failure)
            raise
        with api_errors("read the new server"):
            server = self._reread(response.server)
        return self._describe(server)

    def _delete_half_made(self, server: BoundServer, failure: BaseException) -> None:
        """The server of a failed create goes too; if it cannot, the user learns both why the create
        failed and that a server is left behind."""
        try:
            self._delete_server(server)
        except ResourceLeftBehind as left:
            raise ResourceLeftBehind(f"{str(failure) or type(failure).__name__}; {left}") from None

    def baked_images(self, base: str | None = None) -> list[BakedImage]:
        """Snapshots vmgen baked (by label), newest first; only those from `base` when given."""
        return [snapshot.baked for snapshot in self._baked_snapshots(base)]

    def newest_baked(self, spec: WorkspaceSpec | None = None) -> BakedImage | None:
        """With a spec: the newest snapshot whose disk fits the server type the spec gets, since
        Hetzner refuses to boot a snapshot on a smaller disk (a bake on an older, larger type)."""
        # Only this user's own: another user's in a shared project (or one whose baker cannot be
        # told, from before owner ids) boots only when named.
        snapshots = [
            s for s in self._baked_snapshots(self.image) if owned(s.baked.owner, s.baked.owner_id, label_value)
        ]
        if spec is not None:
            location = spec.region or self.location
            offer = choose_type(self.offers(location), spec.size, location)
            snapshots = [s for s in snapshots if s.disk_gb <= offer.disk_gb and s.architecture == offer.architecture]
        return snapshots[0].baked if snapshots else None

    def _baked_snapshots(self, base: str | None) -> list[_Snapshot]:
        found = []
        for image in self._snapshots(f"{BAKED_LABEL}=1" + (f",{BASE_LABEL}={label_value(base)}" if base else "")):
            labels = image.labels or {}
            stamp = ImageStamp.from_labels(labels)
            if stamp is not None and image.status == "available":
                baked = BakedImage(
                    ref=str(image.id),
                    name=image.description or str(image.id),
                    created_at=required(image.created).astimezone(UTC),
                    stamp=stamp,
                    base=labels.get(BASE_LABEL, ""),
                    owner=labels.get(OWNER_LABEL, ""),
                    owner_id=labels.get(OWNER_ID_LABEL, ""),
                    agent_version=labels.get(AGENT_VERSION_LABEL, ""),
                )
                found.append(_Snapshot(baked, float(image.disk_size or 0), image.architecture or "x86"))
        return sorted(found, key=lambda s: s.baked.created_at, reverse=True)

    def bake(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], options: BakeOptions
    ) -> BakedImage | None:
        """On a build server of ours over SSH; with Packer (its hcloud plugin), the template and
        Packer's own run (which reports the snapshot itself: None)."""
        if options.method == "packer":
            self._bake_with_packer(plan, wheel, progress, options.size)
            return None
        from ..spec import discover_public_keys
        from ..ssh import default_identities

        keys = discover_public_keys(options.ssh_public_keys)
        if not keys:
            raise UsageError("baking on Hetzner needs an SSH key: `ssh-keygen -t ed25519` (or set ssh_public_keys)")
        progress("baking a Hetzner snapshot on a build server")
        return self.bake_on_server(
            plan, wheel, progress, size=options.size, public_key=keys[0], identities=default_identities()
        )

    def _bake_with_packer(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], size: str
    ) -> None:
        from ..builder.render import render_bake_script
        from ..config import state_dir
        from ..packer import build_with_packer, write_build_dir
        from ..packer.template import SnapshotBuild

        server_type = bake_type(self.offers(self.location), size, self.location).name
        directory = state_dir() / "packer"
        write_build_dir(
            directory,
            SnapshotBuild(
                base_image=self.image,
                location=self.location,
                server_type=server_type,
                stamp=plan.stamp,
                endpoint=self.endpoint,
                owner=tuple(owner_labels(label_value).items()),
            ),
            render_bake_script(plan),
            wheel,
        )
        progress("baking a Hetzner snapshot with Packer")
        build_with_packer(directory, self.token, progress)

    def bake_on_server(
        self,
        plan: InstallPlan,
        wheel: VmgenWheel,
        progress: Callable[[str], None],
        *,
        size: str,
        public_key: str,
        identities: tuple[Path, ...],
        timeout: float = 1800,
    ) -> BakedImage:
        """Bake a snapshot of the install plan on a fresh build server (never a workspace): boot the
        base image with the bake user-data on the smallest disk of the size's architecture (so
        the snapshot boots every size), provision it over SSH as root with a host key generated
        for this bake, power it off, snapshot it with the stamps as labels, delete it. Whatever
        fails, the build server goes; a failed bake leaves no snapshot."""
        from ..builder.hostkeys import generate_host_key
        from ..builder.render import BakeAccess, render_bake_user_data
        from ..ssh import SSHTarget
        from .ssh_bake import bake_over_ssh

        if wheel.sha256 != plan.vmgen.wheel_sha256:
            raise BakeFailed("the vmgen wheel to bake is not the one the install plan names")
        offer = bake_type(self.offers(self.location), size, self.location)
        host_key = generate_host_key()
        user_data = render_bake_user_data(plan, BakeAccess(host_key, (public_key,)))
        name = f"vmgen-bake-{secrets.token_hex(4)}"
        with api_errors("register the SSH key"):
            ssh_key = self._ssh_key(public_key)
        with api_errors("create the firewall"):
            firewall = self._firewall()
        progress(f"booting a {offer.name} build server from {self.image}")
        what = f"create the {offer.name} build server"
        with api_errors(what):
            server_type = self.client.server_types.get_by_name(offer.name)
            assert server_type is not None, "the offer is one of the API's own server types"
            response = self.client.servers.create(
                name=name,
                server_type=server_type,
                image=_image(self.image),
                ssh_keys=[ssh_key],
                firewalls=[firewall],
                user_data=user_data,
                labels={LABEL: "1", BAKE_SERVER_LABEL: "1", **owner_labels(label_value)},
                location=Location(name=self.location),
            )
        server = response.server
        try:
            with api_errors(what):
                response.action.wait_until_finished()
                server = self._reread(server)
            address = server.public_net.ipv4.ip if server.public_net and server.public_net.ipv4 else ""
            with tempfile.TemporaryDirectory(prefix="vmgen-bake-") as scratch:
                known_hosts = Path(scratch) / "known_hosts"
                known_hosts.write_text(f"{name} {host_key.public_openssh}\n")
                target = SSHTarget(SSHEndpoint(host=address, user="root"), known_hosts, name, identities)
                version = bake_over_ssh(target, wheel, progress, timeout, plan.agent_version_command)
            progress("powering the build server off")
            with api_errors("power off the build server"):
                server.power_off().wait_until_finished()
            progress("taking the snapshot")
            labels = plan.stamp.labels(self.image) | owner_labels(label_value)
            if version:
                labels[AGENT_VERSION_LABEL] = version
            with api_errors("take the snapshot"):
                made = server.create_image(
                    type="snapshot", description=f"vmgen bake: {plan.stamp.describe()}", labels=labels
                )
                made.action.wait_until_finished()
        finally:
            progress("deleting the build server")
            self._delete_server(server)
            self._remove_shared_quietly()
        snapshot = next(s for s in self._baked_snapshots(self.image) if s.baked.ref == str(made.image.id))
        return snapshot.baked

    def remove_baked(self, image: BakedImage) -> None:
        with api_errors(f"delete the snapshot {image.name}"):
            found = self.client.images.get_by_id(int(image.ref))
            found.delete()

    def leftovers(self, name: str | None = None) -> list[Leftover]:
        # A server's disk goes with it, and the shared firewall and key with the last server.
        return []

    def kept_disks(self, name: str | None = None) -> list[KeptDisk]:
        """Snapshots a workspace's idle action or hard lifetime made of its server instead of a
        backup (labelled by the VM), newest first."""
        kept = []
        for image in self._snapshots(f"{RESCUE_LABEL}=1" + (f",{WS_LABEL}={name}" if name else "")):
            labels = image.labels or {}
            kept.append(
                KeptDisk(
                    name=labels.get(WS_LABEL, ""),
                    snapshot=str(image.id),
                    created_at=required(image.created).astimezone(UTC),
                    size_gb=image.image_size,
                    owner=labels.get(OWNER_LABEL, ""),
                    owner_id=labels.get(OWNER_ID_LABEL, ""),
                )
            )
        return sorted(kept, key=lambda k: k.created_at, reverse=True)

    def restore_kept(self, name: str, snapshot: str, ssh_public_key: str, user_data: str) -> Workspace:
        """A server again from a snapshot kept_disks lists: its type and location (from the
        snapshot's labels, else the cheapest type whose disk holds it), booted with `user_data`."""
        with api_errors(f"read snapshot {snapshot}"):
            image = self.client.images.get_by_id(int(snapshot)) if snapshot.isdigit() else None
        labels = (image.labels or {}) if image is not None else {}
        if image is None or labels.get(RESCUE_LABEL) != "1" or labels.get(WS_LABEL) != name:
            raise UsageError(f"snapshot {snapshot} is not one kept of {name} (`vmgen list` shows them)")
        with api_errors("check existing servers"):
            if self._server(name) is not None:
                raise WorkspaceExists(f"a workspace named {name!r} already exists on hetzner")
        location = labels.get(LOCATION_LABEL) or self.location
        fits = sorted(
            (o for o in self.offers(location) if o.usable and o.disk_gb >= (image.disk_size or 0)),
            key=lambda o: (o.name != labels.get(TYPE_LABEL), o.price_hourly or 0.0),
        )
        if not fits:
            raise UsageError(f"no server type in {location} has a disk for snapshot {snapshot}")
        with api_errors("register the SSH key"):
            ssh_key = self._ssh_key(ssh_public_key)
        with api_errors("create the firewall"):
            firewall = self._firewall()
        try:
            return self._create_server(name, Image(id=int(snapshot)), user_data, fits[0], ssh_key, firewall, location)
        except BaseException:
            self._remove_shared_quietly()
            raise

    def _snapshots(self, label_selector: str) -> list[BoundImage]:
        with api_errors("list snapshots"):
            return self.client.images.get_all(type=["snapshot"], label_selector=label_selector)

    def remove_kept(self, snapshot: str) -> None:
        with api_errors(f"delete snapshot {snapshot}"):
            _gone_is_done(lambda: self.client.images.delete(Image(id=int(snapshot))))

    def get(self, name: str) -> Workspace | None:
        with api_errors("read servers"):
            server = self._server(name)
            return self._describe(server) if server else None

    def workspaces(self) -> list[Workspace]:
        with api_errors("list servers"):
            servers = self.client.servers.get_all(label_selector=f"{LABEL}=1")
            return sorted((self._describe(s) for s in servers), key=lambda w: w.name)

    def start(self, name: str) -> Workspace:
        server = self._require(name)
        with api_errors("power on the server"):
            server.power_on().wait_until_finished()
            return self._describe(self._reread(server))

    def stop(self, name: str) -> Workspace:
        server = self._require(name)
        with api_errors("power off the server"):
            server.power_off().wait_until_finished()
            return self._describe(self._reread(server))

    def delete(self, name: str) -> str:
        """Delete the workspace's server (waiting out a lock) and, with the last one, the shared
        pieces; returns a note about what is left to remove later, or ""."""
        with api_errors("read servers"):
            server = self._server(name)
        if server is not None:
            self._delete_server(server)
        with api_errors("remove the shared firewall and SSH key"):
            return self._remove_shared_when_unused()

    def self_delete_spec(self) -> SelfDelete:
        parts = urlsplit(self.metadata_url)
        blocks = {("169.254.169.254", None), (parts.hostname or "169.254.169.254", parts.port)}
        return SelfDelete(
            provider=self.name,
            metadata_url=self.metadata_url,
            api_endpoint=self.endpoint,
            secrets=((TOKEN_VARIABLE, self.token),),
            metadata_blocks=tuple(sorted(blocks, key=str)),
        )

    def stop_note(self) -> str:
        return "Hetzner still bills a stopped server; `vmgen destroy` ends the bill"

    def image_cost_note(self) -> str:
        """From the project's price list (hcloud-python has no pricing client: the raw request)."""
        try:
            pricing = self.client.request("GET", "/pricing")["pricing"]
            price = float(pricing["image"]["price_per_gb_month"]["gross"])
            currency = str(pricing["currency"])
        except (APIException, KeyError, TypeError, ValueError, requests.RequestException):
            return "Hetzner bills snapshots per GB a month (see your project's prices)"
        return f"Hetzner bills snapshots {price:.4f} {currency} per GB a month (`vmgen image list` shows them)"

    # --- sizes ----------------------------------------------------------------------------

    def price_hourly(self, spec: WorkspaceSpec) -> float | None:
        location = spec.region or self.location
        return choose_type(self.offers(location), spec.size, location).price_hourly

    def sizes(self, location: str | None = None) -> list[Size]:
        """Server types per location, with the API's prices (gross) and the preset each one
        is chosen for today."""
        found = []
        for loc in [location] if location else self.locations():
            offers = [o for o in self.offers(loc) if o.usable]
            presets = {}
            for preset in PRESETS:
                with contextlib.suppress(VmgenError):
                    presets[choose_type(offers, preset, loc).name] = preset
            found += [
                Size(
                    loc,
                    o.name,
                    presets.get(o.name, ""),
                    o.cores,
                    o.memory_gb,
                    o.disk_gb,
                    o.price_hourly,
                    o.price_monthly,
                )
                for o in sorted(offers, key=lambda o: (o.cores, o.memory_gb, o.name))
            ]
        return found

    def offers(self, location: str | None = None) -> list[TypeOffer]:
        with api_errors("list server types"):
            types = self.client.server_types.get_all()
        return offers_from_api(types, location or self.location)

    def locations(self) -> list[str]:
        with api_errors("list locations"):
            return sorted(required(loc.name) for loc in self.client.locations.get_all())

    # --- internals ------------------------------------------------------------------------

    def _server(self, name: str) -> BoundServer | None:
        found = self.client.servers.get_all(label_selector=f"{WS_LABEL}={name}")
        return found[0] if found else None

    def _reread(self, server: BoundServer) -> BoundServer:
        """The server as the API describes it now: a bound server's fields are as last fetched."""
        return self.client.servers.get_by_id(required(server.id))

    def _require(self, name: str) -> BoundServer:
        with api_errors("read servers"):
            server = self._server(name)
        if server is None:
            raise WorkspaceNotFound(f"no workspace named {name!r} on hetzner")
        return server

    def _ssh_key(self, public_key: str) -> BoundSSHKey:
        fingerprint = key_fingerprint(public_key)
        existing = self.client.ssh_keys.get_by_fingerprint(fingerprint)
        if existing is not None:
            return existing
        try:
            return self.client.ssh_keys.create(
                name=f"vmgen-{fingerprint.replace(':', '')[:12]}", public_key=public_key, labels={LABEL: "1"}
            )
        except APIException as exc:
            # Two first launches at once (two terminals): the other one made it a moment ago.
            again = self.client.ssh_keys.get_by_fingerprint(fingerprint) if exc.code == "uniqueness_error" else None
            if again is None:
                raise
            return again

    def _firewall(self) -> BoundFirewall:
        existing = self.client.firewalls.get_all(label_selector=f"{LABEL}=1", name=FIREWALL_NAME)
        if existing:
            return existing[0]
        rules = [
            FirewallRule(
                direction=FirewallRule.DIRECTION_IN,
                protocol=FirewallRule.PROTOCOL_TCP,
                port=port,
                source_ips=["0.0.0.0/0", "::/0"],
                description=f"vmgen {port}",
            )
            for port in ("22", "80", "443")
        ]
        # hcloud annotates this `labels` as str; it is the same dict as everywhere else (its docstring).
        labels = {LABEL: "1"}
        try:
            return self.client.firewalls.create(name=FIREWALL_NAME, rules=rules, labels=labels).firewall  # type: ignore[arg-type]
        except APIException as exc:
            again = (
                self.client.firewalls.get_all(label_selector=f"{LABEL}=1", name=FIREWALL_NAME)
                if exc.code == "uniqueness_error"
                else []
            )
            if not again:
                raise
            return again[0]  # made by a launch running at the same time

    def _delete_server(self, server: BoundServer) -> None:
        """Delete the server and wait until it is gone; one already gone is deleted. A server that
        stays is billed, so failing to delete it is an error that says so."""
        try:
            with api_errors(f"delete the server {server.name}"):
                _gone_is_done(lambda: self._delete_when_unlocked(server))
        except UsageError:
            raise
        except VmgenError as exc:
            raise ResourceLeftBehind(
                f"{exc}; the server {server.name!r} still exists and is billed: run `vmgen destroy {server.name}` "
                "again or delete it in the Hetzner console"
            ) from None

    def _delete_when_unlocked(self, server: BoundServer) -> None:
        for tries_left in reversed(range(self.LOCKED_DELETE_TRIES)):
            try:
                action = self.client.servers.delete(server)
            except APIException as exc:
                if exc.code != "locked" or not tries_left:
                    raise
                self._wait_for_running_actions(server)
                continue
            action.wait_until_finished()
            return

    def _wait_for_running_actions(self, server: BoundServer) -> None:
        running = self.client.servers.get_actions(server, status=["running"])
        if not running:
            time.sleep(1.0)  # locked by an action not listed yet: give it a moment
        for action in running:
            with contextlib.suppress(ActionException):  # it has ended, which is all the delete needs
                action.wait_until_finished()

    def _remove_shared_when_unused(self, in_use_waits: tuple[float, ...] | None = None) -> str:
        """Remove the shared firewall and SSH key once no vmgen server is left; returns a note for
        the user about what is left to remove later."""
        if self.client.servers.get_all(label_selector=f"{LABEL}=1"):
            return ""
        waits = self.FIREWALL_IN_USE_WAITS if in_use_waits is None else in_use_waits
        notes = [
            f"Hetzner still counts the shared firewall {firewall.name!r} as in use; it will be removed later, "
            "by the next `vmgen destroy` (firewalls cost nothing)"
            for firewall in self.client.firewalls.get_all(label_selector=f"{LABEL}=1")
            if not self._delete_firewall(firewall, waits)
        ]
        for key in self.client.ssh_keys.get_all(label_selector=f"{LABEL}=1"):
            _gone_is_done(key.delete)
        return "; ".join(notes)

    def _delete_firewall(self, firewall: BoundFirewall, waits: tuple[float, ...]) -> bool:
        """False while Hetzner still counts a just-deleted server as using it, after the waits."""
        for wait in (*waits, None):
            try:
                _gone_is_done(firewall.delete)
                return True
            except APIException as exc:
                if exc.code != "resource_in_use":
                    raise
            if wait is not None:
                time.sleep(wait)
        return False

    def _remove_shared_quietly(self) -> None:
        """After a failed create: a failure to tidy the shared pieces must not hide why the create
        failed; whatever stays is reused by the next launch and removed by the next destroy."""
        try:
            with api_errors("clean up after a failed create"):
                self._remove_shared_when_unused(in_use_waits=())
        except VmgenError:
            pass

    def _describe(self, server: BoundServer) -> Workspace:
        ipv4 = server.public_net.ipv4.ip if server.public_net and server.public_net.ipv4 else ""
        api_status = required(server.status)
        status = STATUS.get(api_status, WorkspaceStatus.UNKNOWN)
        location = server.location.name if server.location else self.location
        server_type = required(server.server_type)
        price = next((p for p in (server_type.prices or []) if p.get("location") == location), None)
        labels = required(server.labels)
        return Workspace(
            name=labels[WS_LABEL] if WS_LABEL in labels else required(server.name),
            provider=self.name,
            status=status,
            created_at=required(server.created).astimezone(UTC),
            ssh=SSHEndpoint(host=ipv4) if ipv4 and status == WorkspaceStatus.RUNNING else None,
            server_type=required(server_type.name),
            address=ipv4,
            price_hourly=float(price["price_hourly"]["gross"]) if price else None,
            owner=labels.get(OWNER_LABEL, ""),
            owner_id=labels.get(OWNER_ID_LABEL, ""),
        )


@dataclass(frozen=True)
class _Snapshot:
    baked: BakedImage
    disk_gb: float  # the disk it carries: it boots only server types with at least this much
    architecture: str


def _gone_is_done(remove: Callable[[], object]) -> None:
    """Run a removal; what is already gone (404 not_found) needs no removing."""
    try:
        remove()
    except APIException as exc:
        if exc.code != "not_found":
            raise


def _image(ref: str) -> Image:
    """A snapshot by id (baked images), a system image by name."""
    return Image(id=int(ref)) if ref.isdigit() else Image(name=ref)
