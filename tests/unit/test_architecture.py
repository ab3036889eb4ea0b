"""The layers docs/architecture.md declares hold in the code.

The table under "## Layers" puts every module of src/vmgen on a floor and a side. Every import
(at the top of a module, inside a function or under TYPE_CHECKING) must run down or stay on its
floor, stay on its side of the wire (or reach the modules both sides use), and no modules may
import each other in a circle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "vmgen"
DOCUMENT = ROOT / "docs" / "architecture.md"
SIDES = ("laptop", "VM", "both", "joins")
MAY_IMPORT = {"laptop": {"laptop", "both"}, "VM": {"VM", "both"}, "both": {"both"}, "joins": set(SIDES)}


@dataclass(frozen=True)
class Floor:
    number: int
    side: str
    entries: tuple[str, ...]  # dotted module or package names, relative to vmgen


def declared_floors(text: str) -> list[Floor]:
    """The rows of the first table below the "## Layers" heading."""
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\|\s*\d+\s*\|", line)]
    floors = []
    for row in rows:
        number, side, modules = (cell.strip() for cell in row.strip("|").split("|")[:3])
        assert side in SIDES, f"unknown side {side!r} in {row!r}"
        floors.append(Floor(int(number), side, tuple(re.findall(r"`([\w.]+)`", modules))))
    assert floors, "docs/architecture.md declares no floors"
    return floors


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own, for __init__.py)."""
    modules = {}
    for path in package.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The vmgen modules `name` imports: `from X import n` is module X.n where that is one."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    return {m for m in found if m in modules and m != name}


def floor_of(name: str, floors: list[Floor]) -> tuple[Floor, str] | None:
    """The floor of the longest entry that holds the module; `__init__` is the package itself."""
    relative = name.removeprefix("vmgen").removeprefix(".") or "__init__"
    holding = [
        (entry, floor)
        for floor in floors
        for entry in floor.entries
        if relative == entry or (entry != "__init__" and relative.startswith(entry + "."))
    ]
    if not holding:
        return None
    entry, floor = max(holding, key=lambda held: len(held[0]))
    return floor, entry


def side_of_folder(name: str) -> str | None:
    parts = name.split(".")
    return {"laptop": "laptop", "vmside": "VM"}.get(parts[1] if len(parts) > 1 else "")


def circles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                yield sorted(component)

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def violations(modules: dict[str, Path], floors: list[Floor]) -> list[str]:
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    found = []
    placed = {}
    for name, path in sorted(modules.items()):
        held = floor_of(name, floors)
        if held is None:
            if path.name != "__init__.py" or graph[name]:
                found.append(f"{name} is on no floor of docs/architecture.md's table")
            continue
        floor, entry = held
        placed[name] = floor
        folder = side_of_folder(name)
        if (folder or "both") != floor.side and not (folder is None and floor.side == "joins"):
            found.append(f"{name} lies in the {folder or 'shared'} folder but `{entry}` is declared {floor.side}")
    for name, targets in sorted(graph.items()):
        if name not in placed:
            continue
        here = placed[name]
        for target in sorted(targets):
            there = placed.get(target)
            if there is None:
                continue
            if there.number > here.number:
                found.append(f"{name} (floor {here.number}) imports {target} (floor {there.number}): it runs upward")
            if there.side not in MAY_IMPORT[here.side]:
                found.append(f"{name} ({here.side}) imports {target} ({there.side}): it crosses to the other side")
    found.extend(f"modules import each other in a circle: {' <-> '.join(c)}" for c in circles(graph))
    return found


def test_every_import_runs_down_stays_on_its_side_and_closes_no_circle() -> None:
    assert violations(package_modules(), declared_floors(DOCUMENT.read_text())) == []


# The check itself, on small packages of its own: each rule fails when broken.

TABLE = """
## Layers

| floor | side | modules | what |
|---|---|---|---|
| 3 | joins | `cli` | |
| 2 | laptop | `laptop` | |
| 2 | VM | `vmside` | |
| 1 | both | `__init__`, `errors`, `backup` | |
"""


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"laptop/a.py": "from ..errors import X\n", "vmside/b.py": "from .. import errors\n"}, []),
        (
            {"errors.py": "from .laptop import a\n", "laptop/a.py": ""},
            [
                "vmgen.errors (floor 1) imports vmgen.laptop.a (floor 2): it runs upward",
                "vmgen.errors (both) imports vmgen.laptop.a (laptop): it crosses to the other side",
            ],
        ),
        (
            {"laptop/a.py": "def f():\n    from ..vmside import b\n", "vmside/b.py": ""},
            ["vmgen.laptop.a (laptop) imports vmgen.vmside.b (VM): it crosses to the other side"],
        ),
        (
            {"backup/store.py": "from .manifest import M\n", "backup/manifest.py": "from . import store\n"},
            ["modules import each other in a circle: vmgen.backup.manifest <-> vmgen.backup.store"],
        ),
        ({"spare.py": ""}, ["vmgen.spare is on no floor of docs/architecture.md's table"]),
        (
            {"cli.py": "from .laptop import a\nfrom .vmside import b\n", "laptop/a.py": "", "vmside/b.py": ""},
            [],
        ),
    ],
)
def test_the_check_fails_on_what_it_forbids(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    package = tmp_path / "vmgen"
    for folder in ("", "laptop", "vmside", "backup"):
        (package / folder).mkdir(parents=True, exist_ok=True)
        (package / folder / "__init__.py").touch()
    for relative, text in files.items():
        (package / relative).write_text(text)
    assert violations(package_modules(package), declared_floors(TABLE)) == expected
