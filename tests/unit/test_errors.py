"""vmgen's errors are in one place, and the tree its docstring draws is the tree of classes."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import vmgen
from vmgen import errors
from vmgen.errors import VmgenError


def every_subclass(cls: type) -> Iterator[type]:
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        yield sub
        yield from every_subclass(sub)


def drawn_parents(doc: str) -> dict[str, set[str]]:
    """Each class the docstring's tree names, with the classes it is drawn under."""
    parents: dict[str, set[str]] = {}
    path: list[str] = []
    for line in doc.splitlines():
        if line.startswith("VmgenError"):
            path = ["VmgenError"]
            parents["VmgenError"] = set()
            continue
        drawn = re.match(r"^([│ ]*)[├└]── (\w+)", line)
        if drawn is None:
            continue
        depth = len(drawn[1]) // 4 + 1
        path = [*path[:depth], drawn[2]]
        parents.setdefault(drawn[2], set()).add(path[-2])
    return parents


def test_every_vmgen_error_is_defined_in_the_errors_module() -> None:
    for found in pkgutil.walk_packages(vmgen.__path__, "vmgen."):
        if not found.name.endswith("__main__"):
            importlib.import_module(found.name)
    elsewhere = sorted(
        f"{c.__module__}.{c.__name__}" for c in every_subclass(VmgenError) if c.__module__ != errors.__name__
    )
    assert elsewhere == []


def test_the_docstring_draws_the_tree_of_classes() -> None:
    assert errors.__doc__ is not None
    drawn = drawn_parents(errors.__doc__)
    defined = {VmgenError, *(c for c in every_subclass(VmgenError) if c.__module__ == errors.__name__)}
    actual = {c.__name__: {b.__name__ for b in c.__bases__ if issubclass(b, VmgenError)} for c in defined}
    assert drawn == actual
