"""The options of `vmgen launch` and `vmgen render` that set a declared setting are made from its
declaration (issue 30): each setting marked for the command line has its option, with the flag
users know, the setting's meaning and bounds or words, and a line in the README's table; a value
outside them is one line naming the flag and the setting; an option not given leaves the value to
the configuration."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vmgen.contract import settings
from vmgen.contract.documents import LAPTOP_DOCUMENTS
from vmgen.contract.enums import PermissionMode
from vmgen.contract.settings import setting
from vmgen.laptop.cli.app import VmgenGroup
from vmgen.laptop.cli.launching import launch, render
from vmgen.laptop.cli.setting_options import SettingOption, click_option, setting_options, with_options
from vmgen.laptop.config import Settings

README = Path(__file__).resolve().parents[3] / "README.md"

# The flags users have today (README, scripts, the e2e tests): a declaration may not rename them.
KNOWN_FLAGS = {
    "--idle-minutes": "idle_minutes",
    "--idle-warn": "idle_warn_minutes",
    "--idle-interval": "idle_interval_seconds",
    "--max-lifetime": "max_lifetime_hours",
}


def marked() -> list[tuple[str, type, settings.Declared]]:
    """Each declared laptop setting marked for the command line, read from the declarations."""
    return [
        (settings.option_flag(declaration), kind, declaration)
        for document in LAPTOP_DOCUMENTS
        for _name, kind, declaration in settings.declared(document)
        if declaration.option
    ]


def test_the_flags_users_know_are_declared_for_their_settings() -> None:
    assert {flag: declaration.laptop for flag, _, declaration in marked()} == KNOWN_FLAGS


@pytest.mark.parametrize("command", [launch, render], ids=["launch", "render"])
def test_every_setting_marked_for_the_command_line_has_its_option(command: click.Command) -> None:
    options = {flag: param for param in command.params if isinstance(param, click.Option) for flag in param.opts}
    for flag, kind, declaration in marked():
        assert flag in options, f"{declaration.laptop} is marked for the command line: {command.name} has no {flag}"
        option = options[flag]
        assert option.name == declaration.laptop and option.default is None, flag
        help_text = option.help or ""
        meaning = declaration.meaning[0].upper() + declaration.meaning[1:]
        assert help_text.startswith(meaning) and settings.accepts(kind, declaration) in help_text, help_text
        if issubclass(kind, enum.Enum):
            assert isinstance(option.type, click.Choice)
            assert list(option.type.choices) == [member.value for member in kind], flag


def test_the_readmes_table_names_each_setting_with_its_flag() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `")]
    for flag, _, declaration in marked():
        assert any(row.startswith(f"| `{declaration.laptop}` (`{flag}`) |") for row in rows), flag


def vmgen_with(option: SettingOption) -> tuple[click.Group, list[object]]:
    """A command with the option under vmgen's group (which turns vmgen's errors into one line)."""
    seen: list[object] = []
    group = VmgenGroup()

    @group.command()
    @click_option(option)
    def knob(**given: object) -> None:
        seen.append(given[option.setting])

    return group, seen


def edges(option: SettingOption) -> tuple[list[str], list[str]]:
    """Values the setting takes (its bounds) and values it does not (just past them, NaN, a word)."""
    low, high = option.declaration.minimum, option.declaration.maximum
    step = 1 if option.kind is int else 0.01
    taken = [f"{bound:g}" for bound in (low, high) if bound is not None]
    refused = ["nan", "many"] if option.kind is float else ["2.5", "many"]
    refused += [f"{low - step:g}"] if low is not None else []
    refused += [f"{high + step:g}"] if high is not None else []
    return taken, refused


@pytest.mark.parametrize("option", list(setting_options()), ids=lambda option: option.flag)
def test_an_option_takes_what_its_setting_takes_and_refuses_the_rest_in_one_line(option: SettingOption) -> None:
    group, seen = vmgen_with(option)
    taken, refused = edges(option)
    for value in taken:
        result = CliRunner().invoke(group, ["knob", option.flag, value])
        assert result.exit_code == 0, result.output
        assert seen.pop() == option.kind(value)
    for value in refused:
        result = CliRunner().invoke(group, ["knob", option.flag, value])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, (value, result.output)
        assert lines[0].startswith(f"error: {option.flag} ")
        assert lines[0].endswith(f"it takes {option.takes}"), lines[0]
        if value not in ("many", "2.5"):
            assert f"({option.setting}) is" in lines[0], lines[0]


@dataclass(frozen=True)
class Gadget:
    """A made-up document: a setting declared with an option gets one, named as declared."""

    count: int = setting(3, "gadgets kept", minimum=1, maximum=9, laptop="gadget_count", option=True)
    mode: PermissionMode = setting(  # noqa: RUF009 - a field with its declaration, as every setting
        PermissionMode.PLAN, "how the gadget asks", laptop="gadget_mode", option="--gadget"
    )
    quiet_minutes: float = setting(5, "minutes of quiet", minimum=0, laptop="gadget_quiet")  # no option
    shade: str = "blue"  # not a setting


def test_a_setting_declared_with_an_option_gets_one() -> None:
    made = {option.flag: option for option in setting_options((Gadget,))}
    assert list(made) == ["--gadget-count", "--gadget"]
    count, mode = made["--gadget-count"], made["--gadget"]
    assert (count.setting, count.kind, count.default, count.metavar) == ("gadget_count", int, 3, "INTEGER")
    assert count.help == "Gadgets kept: a whole number from 1 to 9 (default: the gadget_count setting, else 3)."

    group, seen = vmgen_with(mode)
    (param,) = group.commands["knob"].params
    assert isinstance(param.type, click.Choice) and list(param.type.choices) == [m.value for m in PermissionMode]
    assert CliRunner().invoke(group, ["knob", "--gadget", "acceptEdits"]).exit_code == 0
    assert seen == ["acceptEdits"]
    assert CliRunner().invoke(group, ["knob", "--gadget", "sometimes"]).exit_code == 2


def test_an_option_not_given_leaves_the_configured_value() -> None:
    configured = Settings(idle_warn_minutes=4, max_lifetime_hours=5)
    chosen = with_options(configured, {"idle_warn_minutes": None, "max_lifetime_hours": 0.0, "name": "app"})
    assert (chosen.idle_warn_minutes, chosen.max_lifetime_hours) == (4, 0)
    assert with_options(configured, {}) == configured
