"""Settings a document carries, declared once beside the document: a field's default, bounds,
meaning, the name a user gives it on the laptop (config.toml, VMGEN_<NAME>) and, where it has one,
its flag of `vmgen launch` travel in its dataclass metadata, so that the laptop's defaults, the
CLI's options (laptop/cli/setting_options.py), `vmgen config show`, the README's table and both
sides' checks read one declaration.

`check` is each document's validate(): the laptop runs it before anything is created, the VM
when it loads the file. A value out of bounds is one line naming the setting and what it takes.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from collections.abc import Iterator
from typing import Any

from ..errors import DocumentError

_KEY = "vmgen.setting"


@dataclasses.dataclass(frozen=True)
class Declared:
    """What a setting means and which values it takes (bounds are inclusive; None: unbounded)."""

    meaning: str
    minimum: float | None = None
    maximum: float | None = None
    laptop: str = ""  # the user's name for it, where it is one of the laptop's settings
    # Whether `vmgen launch` and `vmgen render` set it for one workspace: True for the flag its
    # laptop name makes (`--idle-minutes`), or the flag itself where users know another one.
    option: bool | str = False
    takes: str = ""  # what it takes, for a setting of text (numbers and words say it themselves)


def setting(
    default: Any,
    meaning: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    laptop: str = "",
    option: bool | str = False,
    takes: str = "",
) -> Any:
    """A document's field with its declaration (use as the field's default)."""
    return dataclasses.field(
        default=default, metadata={_KEY: Declared(meaning, minimum, maximum, laptop, option, takes)}
    )


def declared(document_type: type) -> Iterator[tuple[str, type, Declared]]:
    """Each declared field of a document class: its name, type and declaration."""
    hints = typing.get_type_hints(document_type)
    for field in dataclasses.fields(document_type):
        declaration = field.metadata.get(_KEY)
        if declaration is not None:
            yield field.name, hints[field.name], declaration


def option_flag(declaration: Declared) -> str:
    """The setting's flag of `vmgen launch` ("--idle-warn"), or "" where it has none."""
    if declaration.option is True:
        return "--" + declaration.laptop.replace("_", "-")
    return declaration.option or ""


def within(value: float, declaration: Declared) -> bool:
    """Whether a number is within the setting's bounds (NaN is out of every bound)."""
    low, high = declaration.minimum, declaration.maximum
    return not (math.isnan(value) or (low is not None and value < low) or (high is not None and value > high))


def accepts(kind: type, declaration: Declared) -> str:
    """What a setting takes, as an error or a table says it: "a whole number, 1 or more"; for a
    setting of fixed words (an enum), the words: "`bypass`, `default` or `plan`"."""
    if declaration.takes:
        return declaration.takes
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        words = [f"`{member.value}`" for member in kind]
        return ", ".join(words[:-1]) + " or " + words[-1]
    if kind is bool:
        return "`true` or `false`"
    what = "a whole number" if kind is int else "a number"
    low, high = declaration.minimum, declaration.maximum
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    if low is not None:
        return f"{what}, {low:g} or more"
    if high is not None:
        return f"{what}, {high:g} or less"
    return what


def user_name(name: str, declaration: Declared, on_laptop: bool) -> str:
    """The setting's name where the user meets it: on the laptop its setting and variable, in a
    file on the VM the file's key (and the laptop setting it came from)."""
    if not declaration.laptop:
        return name
    if on_laptop:
        return f"{declaration.laptop} (VMGEN_{declaration.laptop.upper()})"
    return f"{name} (the laptop's {declaration.laptop})"


def check(document: Any, where: str = "", on_laptop: bool = False) -> None:
    """Refuse a document with a declared value out of its bounds (NaN is out of every bound):
    `where` is the file read, `on_laptop` names the laptop's settings instead of the file's keys."""
    for name, kind, declaration in declared(type(document)):
        value = getattr(document, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if not within(value, declaration):
            prefix = f"{where}: " if where else ""
            raise DocumentError(
                f"{prefix}{user_name(name, declaration, on_laptop)} is {value:g}: it takes {accepts(kind, declaration)}"
            )


def table(*document_types: type) -> str:
    """The README's table of the laptop's declared settings: default, what each takes, meaning;
    a setting's flag of `vmgen launch` beside its name."""
    rows = ["| setting | default | takes | meaning |", "|---|---|---|---|"]
    for document_type in document_types:
        defaults = {field.name: field.default for field in dataclasses.fields(document_type)}
        for name, kind, declaration in declared(document_type):
            if declaration.laptop:
                default = defaults[name]
                if isinstance(default, enum.Enum):
                    shown = default.value
                elif isinstance(default, bool):
                    shown = str(default).lower()
                elif isinstance(default, str):
                    shown = f'"{default}"'
                else:
                    shown = f"{default:g}"
                flag = option_flag(declaration)
                named = f"`{declaration.laptop}`" + (f" (`{flag}`)" if flag else "")
                rows.append(f"| {named} | `{shown}` | {accepts(kind, declaration)} | {declaration.meaning} |")
    return "\n".join(rows) + "\n"


__all__ = ["Declared", "accepts", "check", "declared", "option_flag", "setting", "table", "user_name", "within"]
