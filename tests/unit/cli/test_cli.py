"""The CLI as a user meets it: one clear line and the right exit code for every mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vmgen import __version__
from vmgen.laptop.builder.render import written_files
from vmgen.laptop.providers import PROVIDERS

COMMANDS = [
    "launch",
    "list",
    "sizes",
    "connect",
    "send",
    "ssh",
    "stop",
    "start",
    "destroy",
    "render",
    "config",
    "config show",
    "backup",
    "backups",
    "restore",
    "image",
    "image build",
    "image list",
    "login",
    "open",
    "status",
    "keepalive",
    "info",
    "forward",
    "ssh-config",
    "telegram",
    "telegram setup",
    "telegram run",
    "session",
    "session new",
    "session list",
]


def vmgen(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), **env}
    src = Path(__file__).resolve().parents[3] / "src"
    environment["PYTHONPATH"] = str(src)
    return subprocess.run(
        [sys.executable, "-m", "vmgen", *args], env=environment, cwd=home, capture_output=True, text=True, timeout=60
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version_names_the_build_every_vm_will_run(home: Path) -> None:
    from vmgen.selfwheel import own_wheel

    assert vmgen(home, "--version").stdout.strip() == f"vmgen {__version__} (build {own_wheel().short_hash})"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(home: Path, command: str) -> None:
    # In this process, through click's own runner: the help is click's rendering of each command
    # (its module imported as `vmgen` imports it), and a Python start per command cost more than
    # the check. One error line and exit codes are the subprocess's below.
    from click.testing import CliRunner

    from vmgen.cli import main

    result = CliRunner().invoke(main, [*command.split(), "--help"], env={"HOME": str(home)})
    assert result.exit_code == 0 and "Usage: " in result.output, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["render", "https://github.com/me/a b"], "whitespace"),
        (["render", "ftp://example.com/app"], "use https://"),
        (["render", "https://github.com/me/app", "--agent", "cursor"], "unknown agent 'cursor'"),
        (["render", "https://github.com/me/app", "--name", "Bad_Name"], "invalid workspace name"),
        (["render", "https://github.com/me/app", "--name", "$(reboot)"], "invalid workspace name"),
        (["render", "https://github.com/me/app#a..b"], "invalid branch"),
        (["render", "https://github.com/me/app", "--agent-version", "1;id"], "invalid agent version"),
        (["render", "./missing-dir"], "not a directory"),
        (["connect", "Bad!"], "invalid workspace name"),
        (["connect", "app", "--session", "x;y"], "invalid session name 'x;y'"),
        (["connect"], "name the workspace: `vmgen connect NAME`"),  # no terminal: no picker
        (["session", "new", "app", "--name", "two words"], "invalid session name 'two words'"),
        (["render", "https://github.com/me/app", "--domain", "not a domain"], "invalid domain"),
        (
            ["launch", "https://github.com/me/app", "--domain", "dev.example.com", "--provider", "docker"],
            "no public address",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(home: Path, args: list[str], message: str) -> None:
    result = vmgen(home, *args)
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith("error: ") and message in line


def test_no_ssh_key_is_a_usage_error(home: Path) -> None:
    for key in (home / ".ssh").iterdir():
        key.unlink()
    result = vmgen(home, "render", "https://github.com/me/app")
    assert result.returncode == 2
    assert "no SSH public key found" in one_error_line(result)


def test_dockerd_not_running_is_a_runtime_error(home: Path, tmp_path: Path) -> None:
    result = vmgen(home, "list", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in one_error_line(result)


def test_unknown_workspace(home: Path, tmp_path: Path) -> None:
    result = vmgen(home, "stop", "nothing-here", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    assert result.returncode == 1 and "Docker engine" in one_error_line(result)


def test_render_prints_cloud_config_for_hetzner_and_creates_nothing(home: Path) -> None:
    result = vmgen(home, "render", "https://github.com/me/app#main", "--provider", "hetzner")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert result.stdout.startswith("#cloud-config\n")
    assert config["hostname"] == "app"
    assert "PRIVATE KEY" not in result.stdout
    assert not (home / ".local/state/vmgen").exists()


@pytest.mark.parametrize("action", ["poweroff", "delete"])
def test_the_idle_action_is_taken_by_its_word(home: Path, action: str) -> None:
    result = vmgen(home, "render", "https://github.com/me/app", "--provider", "hetzner", "--idle-action", action)
    assert result.returncode == 0, result.stderr
    assert f'action = "{action}"' in written_files(result.stdout)["/etc/vmgen/idlewatch.toml"]


def test_render_with_a_domain_shows_caddy_without_the_login(home: Path) -> None:
    result = vmgen(
        home,
        "render",
        "https://github.com/me/app",
        "--provider",
        "hetzner",
        "--domain",
        "dev.example.com",
        "--desktop",
        CLOUDFLARE_API_TOKEN="test-token",
    )
    assert result.returncode == 0, result.stderr
    files = {f["path"]: f for f in yaml.safe_load(result.stdout)["write_files"]}
    caddyfile = written_files(result.stdout)["/etc/vmgen/Caddyfile"]
    for host in ("app.dev.example.com {", "code.app.dev.example.com {", "desktop.app.dev.example.com {"):
        assert host in caddyfile
    assert "sha256$" not in result.stdout and "test-token" not in result.stdout
    assert files["/etc/vmgen/web-login/login"]["content"] == "<verifier, generated per launch>\n"
    assert files["/etc/vmgen/web-login/login"]["permissions"] == "0600"


def test_config_show_masks_secrets(home: Path) -> None:
    config = home / ".config/vmgen/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('agent = "aider"\n')
    result = vmgen(home, "config", "show", ANTHROPIC_API_KEY="test-key-secret-value-42", VMGEN_IDLE_MINUTES="45")
    assert result.returncode == 0
    assert "test-key-secret" not in result.stdout + result.stderr
    assert "****e-42" in result.stdout
    assert "aider" in result.stdout and "45" in result.stdout
    assert str(config) in result.stderr


def test_broken_config_is_one_line(home: Path) -> None:
    config = home / ".config/vmgen/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("idle_minutes = [\n")
    result = vmgen(home, "config", "show")
    assert result.returncode == 2 and "not valid TOML" in one_error_line(result)


def test_hetzner_without_a_token_is_one_line(home: Path) -> None:
    result = vmgen(home, "sizes", "--provider", "hetzner")
    assert result.returncode == 2
    assert "no Hetzner API token" in one_error_line(result)


@pytest.mark.parametrize(
    "source",
    [
        "git@-oProxyCommand=touch${IFS}/tmp/x:x",
        "ssh://-oProxyCommand=x/repo",
        "ssh://-u@host/repo",
        "https://host/team/-repo",
        "git@host:-repo",
        "-x@host:repo",
        "https://host/repo#-b",
        "https://[::1",
        "a" * 300,
        "a" * 5000,
        "/" + "a" * 300,
    ],
)
def test_hostile_or_unparseable_sources_are_one_line_and_exit_2(home: Path, source: str) -> None:
    result = vmgen(home, "render", "--", source)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith("error: ") and len(line) < 300


def test_an_unreachable_docker_host_is_named_in_the_error(home: Path, tmp_path: Path) -> None:
    docker_host = f"unix://{tmp_path}/elsewhere.sock"
    result = vmgen(home, "list", DOCKER_HOST=docker_host)
    assert result.returncode == 1
    assert f"DOCKER_HOST={docker_host}" in one_error_line(result)


def test_config_show_prints_the_effective_defaults(home: Path) -> None:
    result = vmgen(home, "config", "show")
    assert result.returncode == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    # The keys a launch puts on the workspace, the excludes a backup uses, what `auto` means here.
    assert "~/.ssh/id_ed25519.pub" in rows["ssh_public_keys"] and "[]" not in rows["ssh_public_keys"]
    assert "node_modules" in rows["backup_excludes"] and "[]" not in rows["backup_excludes"]
    assert "backup-then-delete" in rows["idle_action"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["launch", "--help"], "auto"),  # the default is one of the choices
        # Every registered provider, from the registry: a new one needs no line here.
        (["restore", "--help"], f"[{'|'.join(PROVIDERS)}]"),
        (["backups", "--help"], f"[{'|'.join(PROVIDERS)}]"),
    ],
)
def test_choices_are_listed(home: Path, args: list[str], expected: str) -> None:
    # Help text only, in this process as test_every_command_has_help reads it.
    from click.testing import CliRunner

    from vmgen.cli import main

    result = CliRunner().invoke(main, args, env={"HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert expected in " ".join(result.output.split())


def test_an_unknown_provider_for_a_store_is_a_usage_error(home: Path) -> None:
    for command in (["restore", "app"], ["backups"]):
        result = vmgen(home, *command, "--provider", "nowhere")
        assert result.returncode == 2 and "'nowhere' is not one of" in result.stderr


def test_backups_name_each_increments_parent_and_a_broken_chain_is_refused_before_any_vm(home: Path) -> None:
    from vmgen.backup import LocalStore, create_backup, generate_identity
    from vmgen.backup.indexkeeper import IndexKeeper

    work = home / "work"
    work.mkdir()
    (work / "a.txt").write_text("a")
    store = LocalStore(home / ".local/share/vmgen/backups")
    keeper = IndexKeeper(home / "index")
    _text, recipient = generate_identity()
    full = create_backup(work, store, "app", recipient, keeper=keeper, max_increments=5)
    (work / "b.txt").write_text("b")
    create_backup(work, store, "app", recipient, keeper=keeper, max_increments=5)
    listed = " ".join(vmgen(home, "backups", "app", "--provider", "docker").stdout.split())
    assert "full" in listed and f"increment 1 on {full.backup_id}" in listed

    store.delete(full.manifest_key)
    result = vmgen(home, "restore", "app", "--provider", "docker")
    assert result.returncode == 1
    assert f"is an increment on {full.backup_id}, which is missing" in one_error_line(result)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda data: data[:-100], "is truncated"),
        (lambda data: data[:999] + bytes([data[999] ^ 1]) + data[1000:], "is damaged: its sha256"),
    ],
    ids=["truncated", "flipped-byte"],
)
def test_a_damaged_link_in_the_middle_of_a_chain_is_refused_before_any_vm(home: Path, damage, words) -> None:
    """Every object of the chain is checked before anything is made (sizes, and, in a local
    folder, sha256): the identity is here, so nothing else stops the restore. The image named
    here does not exist, so a launch could not get far anyway."""
    from vmgen.backup import LocalStore, create_backup, generate_identity, save_identity
    from vmgen.backup.indexkeeper import IndexKeeper

    name = f"chain-{os.urandom(3).hex()}"
    work = home / "work"
    work.mkdir()
    (work / "a.bin").write_bytes(os.urandom(5000))
    store = LocalStore(home / ".local/share/vmgen/backups")
    keeper = IndexKeeper(home / "index")
    text, recipient = generate_identity()
    save_identity(home / f".local/state/vmgen/identities/{name}.age-identity", text)
    create_backup(work, store, name, recipient, keeper=keeper, max_increments=5)
    (work / "b.bin").write_bytes(os.urandom(5000))
    middle = create_backup(work, store, name, recipient, keeper=keeper, max_increments=5)
    (work / "c.bin").write_bytes(os.urandom(5000))
    create_backup(work, store, name, recipient, keeper=keeper, max_increments=5)
    obj = store.root / middle.object_key
    obj.write_bytes(damage(obj.read_bytes()))

    result = vmgen(home, "restore", name, "--provider", "docker", VMGEN_DOCKER_IMAGE="vmgen-no-such-image:never")
    assert result.returncode == 1
    assert f"backup {middle.backup_id} {words}" in one_error_line(result)
