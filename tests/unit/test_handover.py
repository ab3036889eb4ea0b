"""What the CLI hands over after boot: an env file the agent's shell reads back verbatim (nothing
in it runs), the laptop's paths rewritten, and the repository as git sees it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmgen.contract.names import VM
from vmgen.errors import VmgenError
from vmgen.laptop.handover import agent_env_file, files_to_upload, laptop_extras, rewrite_home

HOSTILE = ["plain", 'it\'s "quoted"', "$(touch SENTINEL)", "`touch SENTINEL`", "a\nb", "x; touch SENTINEL", "ünï"]


@pytest.mark.parametrize("value", HOSTILE)
def test_the_env_file_is_read_back_verbatim_and_runs_nothing(value: str, tmp_path: Path) -> None:
    env = tmp_path / "agent.env"
    env.write_bytes(agent_env_file({"ANTHROPIC_API_KEY": value, "EMPTY": ""}))
    read = subprocess.run(
        [
            "bash",
            "-c",
            f'set -a; . {env}; set +a; printf %s "$ANTHROPIC_API_KEY"; [ -z "${{EMPTY+x}}" ] && printf \' unset\'',
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert read.stdout == value + " unset"  # empty values are left out
    assert not (tmp_path / "SENTINEL").exists()


def test_laptop_paths_become_the_vms(tmp_path: Path) -> None:
    laptop = tmp_path / "laptop-home"
    content = f"[core]\n\texcludesfile = {laptop}/.gitignore_global\n".encode()
    assert rewrite_home(content, laptop) == f"[core]\n\texcludesfile = {VM.home}/.gitignore_global\n".encode()


def test_upload_follows_git_ignored_files_stay_home(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / ".gitignore").write_text("secret.txt\nbuild/\n")
    (repo / "src" / "main.py").write_text("print()\n")
    (repo / "secret.txt").write_text("no\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("no\n")
    (repo / "notes.txt").write_text("untracked, not ignored\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "src", ".gitignore"], check=True)
    names = files_to_upload(repo)
    assert names[0] == ".git" and set(names[1:]) == {".gitignore", "src/main.py", "notes.txt"}
    plain = tmp_path / "plain"
    (plain / "a").mkdir(parents=True)
    (plain / "a" / "b.txt").write_text("x")
    assert files_to_upload(plain) == ["a/b.txt"]


def test_copying_a_claude_login_that_does_not_exist_says_how(tmp_path: Path) -> None:
    with pytest.raises(VmgenError, match="run `claude` and log in first"):
        laptop_extras(copy_claude_login=True, home=tmp_path)
    assert laptop_extras(copy_claude_login=False, home=tmp_path) == (None, None)
