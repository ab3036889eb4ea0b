"""The options of `vmgen launch` and `vmgen render` that set a declared setting for one workspace.

Each is made from its declaration beside the document that carries it to the VM
(contract/settings.py: `setting(..., option=...)`): its flag, what it takes (a number within the
setting's bounds, or one of its words), its help (the setting's meaning) and the setting it
overrides. Its default is None: a flag not given leaves the value to config.toml, .env and the
environment. A value outside what the setting takes is one line naming the flag and the setting,
before anything is made.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ...contract import settings as declarations
from ...contract.documents import LAPTOP_DOCUMENTS
from ...errors import InvalidSpec
from ..config import Settings

Command = TypeVar("Command", bound=Callable[..., Any])

if TYPE_CHECKING:
    NumberType = click.ParamType[float]
else:  # click before 8.5 (pyproject allows 8.1) has no ParamType[...] at run time
    NumberType = click.ParamType

# What a number of this unit is called in `vmgen launch --help` (`--max-lifetime HOURS`).
UNITS = ("seconds", "minutes", "hours")


@dataclasses.dataclass(frozen=True)
class SettingOption:
    """One declared setting with a flag: the option's name, what it sets and what it takes."""

    flag: str  # "--idle-warn"
    setting: str  # the laptop's name, which is also the option's parameter: "idle_warn_minutes"
    kind: type  # float, int or an enum of the setting's words
    declaration: declarations.Declared
    default: Any  # vmgen's default, as the document declares it

    @property
    def takes(self) -> str:
        return declarations.accepts(self.kind, self.declaration)

    @property
    def help(self) -> str:
        meaning = self.declaration.meaning
        default = self.default.value if isinstance(self.default, enum.Enum) else f"{self.default:g}"
        return f"{meaning[0].upper()}{meaning[1:]}: {self.takes} (default: the {self.setting} setting, else {default})."

    @property
    def metavar(self) -> str | None:
        if issubclass(self.kind, enum.Enum):
            return None  # click shows the choices
        unit = self.setting.rsplit("_", 1)[-1]
        return unit.upper() if unit in UNITS else ("INTEGER" if self.kind is int else "NUMBER")


def setting_options(documents: tuple[type, ...] = LAPTOP_DOCUMENTS) -> Iterator[SettingOption]:
    """Every declared setting of `documents` that has a flag, in the documents' order."""
    for document in documents:
        defaults = {field.name: field.default for field in dataclasses.fields(document)}
        for name, kind, declaration in declarations.declared(document):
            flag = declarations.option_flag(declaration)
            if flag:
                if not declaration.laptop:
                    raise TypeError(f"{document.__name__}.{name} has a flag but no laptop name")
                yield SettingOption(flag, declaration.laptop, kind, declaration, defaults[name])


class DeclaredNumber(NumberType):
    """A number the setting's declaration takes; anything else is vmgen's one-line usage error
    (not click's usage screen), as the same value in config.toml would be."""

    def __init__(self, option: SettingOption) -> None:
        self.option = option
        self.name = "integer" if option.kind is int else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.option.kind(str(value).strip())
            except ValueError:
                raise InvalidSpec(f"{self.option.flag} {value!r}: it takes {self.option.takes}") from None
        if not declarations.within(number, self.option.declaration):
            raise InvalidSpec(f"{self.option.flag} ({self.option.setting}) is {number:g}: it takes {self.option.takes}")
        return number


def click_option(option: SettingOption) -> Callable[[Command], Command]:
    """The click option of one declared setting."""
    kind: click.ParamType[Any]
    if issubclass(option.kind, enum.Enum):
        kind = click.Choice([member.value for member in option.kind])
    elif option.kind in (int, float):
        kind = DeclaredNumber(option)
    else:
        raise TypeError(f"{option.setting}: no option for a setting of type {option.kind.__name__}")
    return click.option(option.flag, option.setting, type=kind, default=None, metavar=option.metavar, help=option.help)


def with_options(s: Settings, given: Mapping[str, Any]) -> Settings:
    """The settings with each declared setting's option that was given in place of its value."""
    chosen = {
        option.setting: option.kind(given[option.setting])
        for option in setting_options()
        if given.get(option.setting) is not None
    }
    return dataclasses.replace(s, **chosen)


__all__ = ["SettingOption", "click_option", "setting_options", "with_options"]
