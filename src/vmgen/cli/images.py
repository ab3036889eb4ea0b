"""`vmgen image build` and `vmgen image list`: baked images for fast launches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..agents import AGENTS
from ..config import Settings, state_dir
from ..errors import UsageError
from ..providers import PROVIDERS
from .app import age, err, out, progress, provider_named, settings
from .launching import vmgen_install

if TYPE_CHECKING:
    from ..builder.install import InstallPlan
    from ..providers.hetzner import HetznerProvider


def current_plan(s: Settings) -> InstallPlan:
    """What a launch with these settings installs: the same plan, so its stamps match."""
    from ..builder.install import workspace_plan

    if s.agent not in AGENTS:
        raise UsageError(f"unknown agent {s.agent!r}; available: {', '.join(sorted(AGENTS))}")
    return workspace_plan(
        AGENTS[s.agent],
        s.agent_version,
        vmgen_install(s),
        desktop=s.desktop,
        domain=s.domain,
        code_ui_version=s.code_ui_version,
    )


@click.group()
def image() -> None:
    """Baked images: everything preinstalled, so launches skip the installs."""


@image.command("build")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Whose image to bake (default: the configured one).")
def build(provider: str | None) -> None:
    """Bake an image with the agent, vmgen and the packages installed."""
    from ..providers.docker import DockerProvider
    from ..providers.hetzner import HetznerProvider

    chosen = provider_named(provider)
    plan = current_plan(settings())
    if isinstance(chosen, DockerProvider):
        from ..providers.docker_bake import bake
        from ..selfwheel import own_wheel

        with progress("baking a docker image") as update:
            baked = bake(chosen, plan, own_wheel(), update)
        err.print(f"[green]baked[/] {baked.name} ({baked.stamp.describe()}); launches use it from now on")
        return
    assert isinstance(chosen, HetznerProvider)
    _build_snapshot(chosen, plan)


def _build_snapshot(provider: HetznerProvider, plan: InstallPlan) -> None:
    from ..builder.render import render_bake_script
    from ..packer import build_with_packer, write_build_dir
    from ..packer.template import SnapshotBuild
    from ..providers.hetzner_sizes import bake_type
    from ..selfwheel import own_wheel

    s = settings()
    server_type = bake_type(provider.offers(s.region), s.size, s.region).name
    directory = state_dir() / "packer"
    write_build_dir(
        directory,
        SnapshotBuild(
            base_image=provider.image,
            location=s.region,
            server_type=server_type,
            stamp=plan.stamp,
            endpoint=s.hcloud_endpoint,
        ),
        render_bake_script(plan),
        own_wheel(),
    )
    with progress("baking a Hetzner snapshot with Packer") as update:
        build_with_packer(directory, s.hcloud_token, update)
    err.print(f"[green]baked[/] a snapshot ({plan.stamp.describe()}); launches use it from now on")


@image.command("list")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Whose images (default: the configured one).")
def list_images(provider: str | None) -> None:
    """Images vmgen baked, newest first, with what they hold and their age."""
    chosen = provider_named(provider)
    listed = chosen.baked_images()
    if not listed:
        err.print(f"no baked images on {chosen.name}; make one with `vmgen image build --provider {chosen.name}`")
        return
    wanted = current_plan(settings()).stamp
    newest = chosen.newest_baked()
    table = Table(box=None, header_style="bold")
    for column in ("IMAGE", "ID", "AGENT", "VMGEN", "PACKAGES", "AGE", "LAUNCHES"):
        table.add_column(column)
    now = datetime.now(UTC)
    for b in listed:
        redo = b.stamp.differs_from(wanted)
        use = ("use" + (f", redo {', '.join(redo)}" if redo else "")) if newest and b.ref == newest.ref else "-"
        table.add_row(
            b.name,
            b.ref.removeprefix("sha256:")[:12],
            b.stamp.agent,
            b.stamp.vmgen,
            b.stamp.packages,
            age(now - b.created_at),
            use,
        )
    out.print(table)
