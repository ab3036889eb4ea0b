"""The README's quickstart paragraph says what scripts/quickstart.sh does: the settings it records
(and no others), how it installs vmgen, and the image tags its build makes."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from vmgen.laptop.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def paragraph() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("The quickstart is a user's setup")
    return " ".join(readme[start : readme.index("The test script", start)].split())


def test_it_names_every_setting_the_quickstart_records_and_no_other() -> None:
    script = (ROOT / "scripts/quickstart.sh").read_text()
    recorded = set(re.findall(r"^set_setting (\w+)", script, re.MULTILINE))
    named = {f.name for f in fields(Settings) if f"`{f.name}`" in paragraph()}
    assert recorded and named == recorded


def test_it_says_how_vmgen_is_installed() -> None:
    script = (ROOT / "scripts/quickstart.sh").read_text()
    text = paragraph()
    assert ("pipx" in text) == ("pipx install" in script)
    for folder in re.findall(r"`(~/[^`]+)`", text):  # every folder it names is one the script uses
        tail = folder.removeprefix("~/.local/").removeprefix("~/")
        assert tail.split("/")[-1] in script, folder


def test_it_names_the_tags_the_image_build_makes() -> None:
    build = (ROOT / "images/debian12-test/build.sh").read_text()
    for tag in re.findall(r"docker tag \"\$tag\" (\S+)", build):
        assert f"`{tag}`" in paragraph(), tag
