"""`vmgen` on a workspace VM: the VM-side commands only (the VM's wheel points its console script
here; the laptop's CLI and its dependencies are not installed on VMs).

The laptop calls `vmgen vmside <command>` over SSH; a human on the VM types `vmgen keepalive
--for 1h` as the watchdog's warning says. Both spellings reach the same commands.
"""

from __future__ import annotations

import click

from .cli import vmside


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from ..selfwheel import version_line

        click.echo(version_line())
        ctx.exit()


@click.group(commands=dict(vmside.commands))
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the version and build, then exit.",
)
def main() -> None:
    """vmgen on this workspace VM."""


main.add_command(vmside)

if __name__ == "__main__":
    main()
