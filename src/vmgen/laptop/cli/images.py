"""`vmgen image build|list|rm|prune`: baked images for fast launches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ...errors import UsageError, VmgenError
from ..agents import AGENTS
from ..config import Settings
from ..owner import describe_owner, owned
from ..providers import PROVIDERS, provider_class
from ..stamps import BakedImage
from ..values import BakeOptions
from .app import age, err, out, progress, provider_named, settings
from .launching import vmgen_install

if TYPE_CHECKING:
    from ..builder.install import InstallPlan
    from ..providers import Provider


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
@click.option(
    "--packer", "with_packer", is_flag=True, help="Bake with Packer instead (providers with a Packer plugin)."
)
@click.option("--if-missing", is_flag=True, hidden=True, help="auto_bake's: only if no image has the plan yet.")
def build(provider: str | None, with_packer: bool, if_missing: bool) -> None:
    """Bake an image with the agent, vmgen and the packages installed."""
    chosen = provider_named(provider)
    plan = current_plan(settings())
    if with_packer:
        if "packer" not in chosen.bake_methods:
            able = [name for name in PROVIDERS if "packer" in provider_class(name).bake_methods]
            raise UsageError(f"--packer bakes {' and '.join(able)} images only, not {chosen.name}'s")
        _bake(chosen, plan, method="packer")
        return
    if not if_missing:
        _bake(chosen, plan)
        return
    from ..autobake import plan_key, plan_lock

    with plan_lock(plan_key(chosen.name, plan)) as free:
        newest = chosen.newest_baked()
        if not free:
            err.print("another bake of this install plan is running; nothing to do")
        elif newest is not None and not newest.stamp.differs_from(plan.stamp):
            err.print(f"{newest.name} already has this install plan ({plan.stamp.describe()}); nothing to do")
        else:
            _bake(chosen, plan)


def _bake(chosen: Provider, plan: InstallPlan, method: str = "") -> None:
    from ...selfwheel import own_wheel

    s = settings()
    options = BakeOptions(size=s.size, ssh_public_keys=s.ssh_public_keys, method=method)
    with progress(f"baking an image on {chosen.name}") as update:
        baked = chosen.bake(plan, own_wheel(), update, options)
    if baked is None:  # the bake's own tool made and reported it
        err.print(f"[green]baked[/] an image ({plan.stamp.describe()}); your launches use it from now on")
        return
    err.print(
        f"[green]baked[/] {baked.name} ({baked.stamp.describe()}; id {baked.ref[:20]}); your launches use it "
        f"from now on; {chosen.image_cost_note()}"
    )


def visible(images: list[BakedImage], everyone: bool) -> list[BakedImage]:
    """Yours (and those whose baker cannot be told: baked before owner ids), or with --all everyone's."""
    return [b for b in images if everyone or owned(b.owner, b.owner_id) is not False]


@image.command("list")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Whose images (default: the configured one).")
@click.option("--all", "everyone", is_flag=True, help="Everyone's on a shared engine or project, not only yours.")
def list_images(provider: str | None, everyone: bool) -> None:
    """Images you baked, newest first, with what they hold and their age."""
    chosen = provider_named(provider)
    found = chosen.baked_images()
    listed = visible(found, everyone)
    hidden = len(found) - len(listed)
    if not listed:
        err.print(f"no baked images on {chosen.name}; make one with `vmgen image build --provider {chosen.name}`")
    else:
        wanted = current_plan(settings()).stamp
        newest = chosen.newest_baked()
        table = Table(box=None, header_style="bold")
        for column in (
            "IMAGE",
            "ID",
            "AGENT",
            "VMGEN",
            "PACKAGES",
            "AGE",
            "LAUNCHES",
            *(["OWNER"] if everyone else []),
        ):
            table.add_column(column)
        now = datetime.now(UTC)
        unknown = 0
        for b in listed:
            redo = b.stamp.differs_from(wanted)
            use = ("use" + (f", redo {', '.join(redo)}" if redo else "")) if newest and b.ref == newest.ref else "-"
            if owned(b.owner, b.owner_id) is None:
                use, unknown = "only with --image", unknown + 1
            table.add_row(
                b.name,
                short_id(b),
                agent_baked(b),
                b.stamp.vmgen,
                b.stamp.packages,
                age(now - b.created_at),
                use,
                *([describe_owner(b.owner, b.owner_id)] if everyone else []),
            )
        out.print(table)
        if unknown:
            err.print(
                f"{unknown} image(s) baked before vmgen recorded who baked them: launches pick only your own, "
                "so these boot only when named (`vmgen launch ... --image ID`)"
            )
    if hidden:
        err.print(f"{hidden} image(s) of other users not shown (`vmgen image list --all` shows them)")


def agent_baked(image: BakedImage) -> str:
    """The agent pin the bake asked for and, when that names no version ("claude-latest"), the
    version it installed: "claude-latest (2.1.332)". Images baked before vmgen recorded it show
    the pin alone."""
    if not image.agent_version or image.stamp.agent.endswith(f"-{image.agent_version}"):
        return image.stamp.agent
    return f"{image.stamp.agent} ({image.agent_version})"


def short_id(image: BakedImage) -> str:
    return image.ref.removeprefix("sha256:")[:12]


@image.command("rm")
@click.argument("images", nargs=-1, required=True)
@click.option("--provider", type=click.Choice(PROVIDERS), help="Whose images (default: the configured one).")
@click.option("--all", "everyone", is_flag=True, help="Also other users' images (on a shared engine or project).")
def remove_images(images: tuple[str, ...], provider: str | None, everyone: bool) -> None:
    """Delete baked IMAGES (by name or ID, as `vmgen image list` shows them)."""
    chosen = provider_named(provider)
    known = visible(chosen.baked_images(), everyone)
    for wanted in images:
        matches = [
            b for b in known if wanted in (b.name, b.ref) or (len(wanted) >= 4 and short_id(b).startswith(wanted))
        ]
        if len(matches) != 1:
            why = "no baked image" if not matches else f"{len(matches)} baked images match"
            raise UsageError(f"{why} {wanted!r} on {chosen.name} (see `vmgen image list`)")
        chosen.remove_baked(matches[0])
        err.print(f"removed {matches[0].name} ({short_id(matches[0])})")


@image.command("prune")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Whose images (default: the configured one).")
def prune_images(provider: str | None) -> None:
    """Delete your baked images that launches no longer use (all but the newest of each base)."""
    chosen = provider_named(provider)
    newest: set[str] = set()
    removed = kept = 0
    for b in visible(chosen.baked_images(), everyone=False):  # newest first
        if b.base not in newest:
            newest.add(b.base)  # what a launch from that base uses
            continue
        try:
            chosen.remove_baked(b)
        except VmgenError as exc:
            err.print(f"kept {b.name} ({short_id(b)}): {exc}")
            kept += 1
            continue
        err.print(f"removed {b.name} ({short_id(b)})")
        removed += 1
    err.print(f"pruned {removed} image(s)" + (f", kept {kept} in use" if kept else "") + f" on {chosen.name}")
