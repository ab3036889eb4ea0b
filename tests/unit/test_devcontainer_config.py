"""Finding and reading a local repository's devcontainer.json on the laptop, and the refusal
that names the field and the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmgen.errors import DevcontainerInvalid, DevcontainerRefused
from vmgen.laptop.devcontainer import check_config, find_config, read_config

CONFIG = """{
  // the toolchain
  "name": "app", /* a block comment with "quotes" */
  "build": {"dockerfile": "Dockerfile"},
  "features": {"./local-feature": {}},
  "forwardPorts": [3000,],
}
"""


def write(repo: Path, relative: str, text: str) -> None:
    (repo / relative).parent.mkdir(parents=True, exist_ok=True)
    (repo / relative).write_text(text)


def test_the_default_paths_in_the_clis_order(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    write(tmp_path, ".devcontainer.json", "{}")
    assert find_config(tmp_path) == ".devcontainer.json"
    write(tmp_path, ".devcontainer/devcontainer.json", "{}")
    assert find_config(tmp_path) == ".devcontainer/devcontainer.json"
    assert find_config(tmp_path, disabled=True) is None


def test_several_configurations_ask_for_a_choice(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/python/devcontainer.json", "{}")
    write(tmp_path, ".devcontainer/node/devcontainer.json", "{}")
    with pytest.raises(DevcontainerInvalid, match=r"several .*\.devcontainer/node/devcontainer\.json.*--devcontainer"):
        find_config(tmp_path)
    node = ".devcontainer/node/devcontainer.json"
    assert find_config(tmp_path, chosen=node) == node


def test_a_chosen_path_must_exist_inside_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write(tmp_path, "outside.json", "{}")
    with pytest.raises(DevcontainerInvalid, match="outside the repository"):
        find_config(repo, chosen="../outside.json")
    (repo / "link.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(DevcontainerInvalid, match="outside the repository"):
        find_config(repo, chosen="link.json")
    with pytest.raises(DevcontainerInvalid, match="no such file"):
        find_config(repo, chosen="missing.json")


def test_json_with_comments_and_trailing_commas_is_read(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/devcontainer.json", CONFIG)
    config = read_config(tmp_path, ".devcontainer/devcontainer.json")
    assert config.content["forwardPorts"] == [3000]
    assert config.content["name"] == "app"


@pytest.mark.parametrize(
    "text, said",
    [
        ('{\n  "name": "app"\n  "image": "x"\n}', r"not valid JSON with comments: line 3"),
        ('{"privileged": false, "privileged": true}', r"Duplicate key"),
        ("[1, 2]", r"must hold a JSON object"),
        ("[" * 100_000, r"nested too deeply|not valid JSON"),
    ],
)
def test_a_broken_file_is_one_line_naming_it(tmp_path: Path, text: str, said: str) -> None:
    write(tmp_path, ".devcontainer.json", text)
    with pytest.raises(DevcontainerInvalid, match=said) as raised:
        read_config(tmp_path, ".devcontainer.json")
    assert str(raised.value).startswith(".devcontainer.json: ")
    assert "\n" not in str(raised.value)


def test_a_privileged_request_is_refused_with_the_field_and_the_setting(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/devcontainer.json", '{"runArgs": ["--network=host"], "privileged": true}')
    config = read_config(tmp_path, ".devcontainer/devcontainer.json")
    with pytest.raises(DevcontainerRefused) as raised:
        check_config(tmp_path, config, allow_privileged=False)
    assert str(raised.value) == (
        ".devcontainer/devcontainer.json: privileged true would give the dev container every capability and "
        "every device of the VM (1 more such request in the configuration); refused unless "
        "devcontainer_allow_privileged = true"
    )
    allowed = check_config(tmp_path, config, allow_privileged=True)
    assert [r.field for r in allowed] == ["privileged", "runArgs[0]"]


def test_a_local_feature_that_asks_for_privileges_is_refused_by_its_own_file(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/devcontainer.json", CONFIG)
    write(tmp_path, ".devcontainer/local-feature/devcontainer-feature.json", '{"id": "f", "capAdd": ["SYS_ADMIN"]}')
    config = read_config(tmp_path, ".devcontainer/devcontainer.json")
    with pytest.raises(DevcontainerRefused, match=r"^\.devcontainer/local-feature/devcontainer-feature\.json: capAdd"):
        check_config(tmp_path, config, allow_privileged=False)
    write(tmp_path, ".devcontainer/local-feature/devcontainer-feature.json", '{"id": "f"}')
    assert check_config(tmp_path, config, allow_privileged=False) == []


def test_a_local_feature_outside_the_repository_or_missing_is_an_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo, ".devcontainer/devcontainer.json", '{"features": {"../../../elsewhere": {}}}')
    with pytest.raises(DevcontainerInvalid, match="outside the repository"):
        check_config(repo, read_config(repo, ".devcontainer/devcontainer.json"), allow_privileged=False)
    write(repo, ".devcontainer/devcontainer.json", '{"features": {"./missing": {}}}')
    with pytest.raises(DevcontainerInvalid, match=r"no devcontainer-feature\.json"):
        check_config(repo, read_config(repo, ".devcontainer/devcontainer.json"), allow_privileged=False)
