"""The settings a VM document carries are declared once, beside the document: the laptop's
defaults and the README's table are made from the declarations, and a value out of bounds is
refused by the document's validate() on either side."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from vmgen.contract import settings
from vmgen.contract.documents import LAPTOP_DOCUMENTS, BackupTarget, WatchSettings
from vmgen.contract.enums import StoreKind
from vmgen.errors import DocumentError
from vmgen.laptop.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTS = LAPTOP_DOCUMENTS


def test_the_laptops_defaults_are_the_documents() -> None:
    laptop = Settings()
    for document in DOCUMENTS:
        defaults = {field.name: field.default for field in dataclasses.fields(document)}
        for name, _kind, declaration in settings.declared(document):
            assert declaration.laptop, f"{document.__name__}.{name} has no laptop name"
            assert getattr(laptop, declaration.laptop) == defaults[name], declaration.laptop


def test_the_readmes_table_is_made_from_the_declarations() -> None:
    text = README.read_text()
    start = text.index("<!-- settings table: made by vmgen.contract.settings.table -->\n")
    block = text[text.index("\n", start) + 1 : text.index("<!-- end of settings table -->")]
    assert block == settings.table(*DOCUMENTS), "README's settings table: regenerate it with settings.table"


def test_the_readme_names_every_variable_vmgen_takes_besides_its_own() -> None:
    from vmgen.laptop.config import ALIASES

    configuration = README.read_text().split("## Configuration", 1)[1].split("| setting |", 1)[0]
    assert [name for name in ALIASES if f"`{name}`" not in configuration] == []


def test_every_default_is_within_its_own_bounds() -> None:
    WatchSettings().validate()
    BackupTarget(kind=StoreKind.LOCAL).validate()


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (
            WatchSettings(interval_seconds=0.5),
            "interval_seconds (the laptop's idle_interval_seconds) is 0.5: it takes a number from 1 to 3600",
        ),
        (WatchSettings(idle_minutes=math.nan), "idle_minutes (the laptop's idle_minutes) is nan"),
        (BackupTarget(kind=StoreKind.S3, part_size_mib=4), "part_size_mib (the laptop's backup_part_mib) is 4"),
    ],
)
def test_a_value_out_of_bounds_is_refused_naming_the_file_and_the_setting(document: object, said: str) -> None:
    with pytest.raises(DocumentError, match="^/etc/vmgen/x.toml: " + said.replace("(", r"\(").replace(")", r"\)")):
        settings.check(document, "/etc/vmgen/x.toml")


def test_the_watchdogs_file_with_a_value_out_of_bounds_is_refused_on_load() -> None:
    with pytest.raises(DocumentError, match=r"^idlewatch.toml: warn_minutes \(the laptop's idle_warn_minutes\) is -1"):
        WatchSettings.from_toml("warn_minutes = -1\n")


def test_config_show_says_what_each_declared_setting_takes(home: Path) -> None:
    from .cli.test_cli import vmgen

    lines = vmgen(home, "config", "show").stdout.splitlines()
    keep = next(line for line in lines if line.startswith("backup_keep "))
    assert keep.split() == ["backup_keep", "7", "#", "takes", "a", "whole", "number,", "1", "or", "more"]
    interval = next(line for line in lines if line.startswith("idle_interval_seconds "))
    assert interval.endswith("# takes a number from 1 to 3600")
