"""Typed documents to and from JSON/TOML values, checked field by field.

A document read on one side of the laptop/VM boundary was written by the other (or, on the VM,
may have been planted by the agent user): every field is checked against its annotation, and a
value of the wrong type is an error, never a surprise deeper down.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DocumentError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def to_value(document: DataclassInstance) -> dict[str, Any]:
    """A dataclass as plain JSON values (tuples become lists)."""
    return typing.cast(dict[str, Any], _plain(dataclasses.asdict(document)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_value(cls: type[T], data: Any, where: str = "", strict: bool = True) -> T:
    """Build `cls` from `data`. Strict: unknown keys are errors (documents vmgen itself writes
    at one version); not strict: they are ignored (results read from an older or newer VM)."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise DocumentError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown and strict:
        raise DocumentError(f"{where}: unknown field(s): {', '.join(map(str, unknown))}")
    values = {name: _check(hints[name], data[name], f"{where}.{name}", strict) for name in known if name in data}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise DocumentError(f"{where}: {exc}") from None


def _check(kind: Any, value: Any, where: str, strict: bool) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check(option, value, where, strict)
            except DocumentError as exc:
                errors.append(str(exc))
        raise DocumentError(errors[0] if errors else f"{where}: unexpected null")
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return from_value(typing.cast("type[DataclassInstance]", kind), value, where, strict)
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise DocumentError(f"{where}: expected a list")
        item_kind = args[0] if args else Any
        return tuple(_check(item_kind, item, f"{where}[{i}]", strict) for i, item in enumerate(value))
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise DocumentError(f"{where}: expected an object")
        args = typing.get_args(kind)
        item_kind = args[1] if len(args) == 2 else Any
        return {str(key): _check(item_kind, item, f"{where}.{key}", strict) for key, item in value.items()}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            words = ", ".join(str(member.value) for member in kind)
            raise DocumentError(f"{where}: expected one of {words}") from None
    if kind is bool:
        if not isinstance(value, bool):
            raise DocumentError(f"{where}: expected true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DocumentError(f"{where}: expected an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DocumentError(f"{where}: expected a finite number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise DocumentError(f"{where}: expected a string")
        return value
    raise DocumentError(f"{where}: cannot check a value of type {kind!r}")  # a bug in a document class


def dumps(document: DataclassInstance) -> str:
    return json.dumps(to_value(document), indent=2) + "\n"


def loads(cls: type[T], text: str | bytes, where: str = "", strict: bool = True) -> T:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DocumentError(f"{where or cls.__name__}: not JSON ({exc})") from None
    return from_value(cls, data, where, strict)


def toml_dumps(document: DataclassInstance) -> str:
    """Flat documents, and lists of flat tables (inline tables). Strings and lists are written as
    JSON, which TOML reads the same."""
    lines = []
    for key, value in to_value(document).items():
        where = f"{type(document).__name__}.{key}"
        if isinstance(value, dict):
            raise DocumentError(f"{where}: nested tables are not written as TOML")
        if isinstance(value, list) and any(isinstance(item, dict) for item in value):
            tables = ", ".join(_inline_table(item, where) for item in value)
            lines.append(f"{key} = [{tables}]\n")
            continue
        lines.append(f"{key} = {json.dumps(value)}\n")
    return "".join(lines)


def _inline_table(item: Any, where: str) -> str:
    if not isinstance(item, dict) or any(isinstance(v, dict) for v in item.values()):
        raise DocumentError(f"{where}: only a list of flat tables is written as TOML")
    return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in item.items()) + " }"


def toml_loads(cls: type[T], text: str, where: str = "") -> T:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DocumentError(f"{where or cls.__name__}: not valid TOML ({exc})") from None
    return from_value(cls, data, where)
