"""The `notify` setting on the laptop: a bad target stops a launch in one line naming the setting
and what it takes; the targets reach the watchdog's settings, and the ntfy token only root's
secrets file (0600), never idlewatch.toml, and is redacted when the user-data is printed."""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from vmgen.contract.notify import NTFY_TOKEN_VARIABLE
from vmgen.laptop.builder import generate_host_key
from vmgen.laptop.launch import LaunchOptions, _render
from vmgen.laptop.spec import WatchdogTuning
from vmgen.laptop.values import SelfDelete

from .builder.test_render import files_of, make_spec
from .cli.test_cli import one_error_line, vmgen

TOKEN = "tk_test-token-must-stay-root-only"


def test_a_bad_target_stops_a_launch_before_anything_is_made(home: Path) -> None:
    (home / "repo").mkdir()
    name = f"t26-{secrets.token_hex(3)}"
    bad = "ntfy:ntfy.sh/top!c"
    result = vmgen(home, "launch", str(home / "repo"), "--name", name, "--provider", "docker", VMGEN_NOTIFY=bad)
    assert result.returncode == 2
    assert one_error_line(result) == (
        f"error: notify: {bad!r} is not `ntfy:<server>/<topic>`, `telegram` or an http(s) webhook URL, "
        "separated by commas"
    )
    assert not (home / f".local/state/vmgen/workspaces/{name}").exists()


@dataclass
class Provider:
    name: str = "docker"
    user_data_limit: int = 1 << 20

    def self_delete_spec(self) -> SelfDelete:
        return SelfDelete(provider=self.name)


def test_the_targets_reach_the_watchdog_and_the_token_only_roots_secrets() -> None:
    targets = ("ntfy:ntfy.sh/my-topic", "https://hooks.example.com/x")
    spec = make_spec(watchdog=WatchdogTuning(notify=targets))
    options = LaunchOptions(agent_env={}, notify_secrets=((NTFY_TOKEN_VARIABLE, TOKEN),))
    files = files_of(_render(spec, Provider(), options, generate_host_key(), None))  # type: ignore[arg-type]
    watch = files["/etc/vmgen/idlewatch.toml"]
    assert tuple(tomllib.loads(watch["content"])["notify"]) == targets and TOKEN not in watch["content"]
    secrets_file = files["/etc/vmgen/provider.env"]
    assert secrets_file["permissions"] == "0600" and secrets_file.get("owner", "root:root") == "root:root"
    assert f"{NTFY_TOKEN_VARIABLE}={TOKEN}\n" in secrets_file["content"]
    assert [path for path, f in files.items() if TOKEN in f["content"]] == ["/etc/vmgen/provider.env"]


def test_without_targets_the_token_goes_nowhere() -> None:
    options = LaunchOptions(agent_env={}, notify_secrets=((NTFY_TOKEN_VARIABLE, TOKEN),))
    files = files_of(_render(make_spec(), Provider(), options, generate_host_key(), None))  # type: ignore[arg-type]
    assert not any(TOKEN in f["content"] for f in files.values())
