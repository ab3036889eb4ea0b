"""Encrypted backup and restore end to end on the docker provider with the local store: work the
agent did comes back on a new VM, with the agent's conversation, and so do files and folders the
agent shut itself out of (mode 000), with their modes; the restored workspace's next backup is
an increment, which restores by hand with GNU tar and, as a new workspace next to the running
one, through vmgen (whose page names the backup it came from); that workspace's own backup
restores under its own name, in the repository's folder; a damaged backup is refused before any
VM is made."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import eventually
from vmgen.contract.names import VM

from .conftest import make_repo, unique

NAME = unique("keeper")
NOTE = "remember the blue door\n"
# What the agent shut itself out of: a folder of 000 holding another, a file of 000, a file of
# 0200. Made as the agent; root reads them back to check (the agent cannot).
LOCK_OUT = (
    "mkdir -p sealed/inner && echo inside > sealed/inner/deep && echo mine > sealed/file"
    f" && echo write-only > work/{NAME}/write-only && echo none > work/{NAME}/none"
    f" && chmod 200 work/{NAME}/write-only && chmod 000 work/{NAME}/none sealed/inner sealed"
)
LOCKED_OUT = {
    "sealed": "0 ",
    "sealed/inner": "0 ",
    "sealed/inner/deep": "644 inside",
    "sealed/file": "644 mine",
    f"work/{NAME}/write-only": "200 write-only",
    f"work/{NAME}/none": "0 none",
}


def store_dir(cli, name: str = NAME) -> Path:
    return cli.home / ".local/share/vmgen/backups/ws" / name


def locked_out(docker_client, name: str) -> dict[str, str]:
    """Mode and contents of the LOCKED_OUT paths on workspace `name`, read as root."""
    script = (
        "cd /home/agent && for p in "
        + " ".join(LOCKED_OUT)
        + ('; do printf "%s\\t%s " "$p" "$(stat -c %a "$p")"; [ -f "$p" ] && cat "$p" || echo; done')
    )
    out = docker_client.containers.get(f"vmgen-{name}").exec_run(["bash", "-c", script]).output.decode()
    return dict(line.split("\t", 1) for line in out.splitlines())


def test_round_trip_with_the_conversation(cli, model, tmp_path, docker_client) -> None:
    model.script = Script(
        rules=[
            Rule(
                trigger="REMEMBER.md",
                tool=ToolUse("Write", {"file_path": f"/home/agent/work/{NAME}/REMEMBER.md", "content": NOTE}),
                after_tool_text="Noted in REMEMBER.md.",
            )
        ]
    )
    cli("launch", str(make_repo(tmp_path, NAME)))
    cli("send", NAME, "please write REMEMBER.md")
    eventually(
        lambda: cli.ssh(NAME, f"cat work/{NAME}/REMEMBER.md", check=False) == NOTE, timeout=60, what="the agent's file"
    )
    # That turn was shorter than the watchdog's interval, and `vmgen status` still saw it.
    worked = next(line for line in cli("status", NAME).stdout.splitlines() if "last agent working" in line)
    assert "never" not in worked, worked

    cli.ssh(NAME, LOCK_OUT)
    made = cli("backup", NAME)
    assert f"backed up {NAME}: " in made.stderr and "left out" not in made.stderr, made.stderr
    backup_id = made.stderr.split(f"backed up {NAME}: ")[1].split(",")[0]
    assert backup_id in cli("backups", NAME).stdout
    # The VM holds the public recipient only.
    assert "AGE-SECRET-KEY" not in cli.ssh(NAME, "grep -r AGE-SECRET-KEY /etc/vmgen /home/agent 2>/dev/null; true")

    cli("destroy", NAME, "--yes")
    restored = cli("restore", NAME)
    assert f"restored {NAME} from {backup_id}" in restored.stderr
    assert cli.ssh(NAME, f"cat work/{NAME}/REMEMBER.md") == NOTE
    assert locked_out(docker_client, NAME) == LOCKED_OUT  # read as their owner, restored with their modes
    transcripts = cli.ssh(NAME, f"ls .claude/projects/-home-agent-work-{NAME}/").split()
    assert any(name.endswith(".jsonl") for name in transcripts)
    # The identity went from the laptop over SSH and the control socket into root's memory only.
    root_grep = docker_client.containers.get(f"vmgen-{NAME}").exec_run(
        ["grep", "-rl", "AGE-SECRET-KEY", "/run", "/etc/vmgen", "/var/lib/vmgen", "/home/agent", "/tmp"]
    )
    assert root_grep.exit_code == 1, root_grep.output  # grep: nothing found anywhere
    pid = cli.ssh(NAME, "pgrep -u agent -o -f '^claude '").strip()
    assert "claude --resume " in cli.ssh(NAME, f"ps -o args= -p {pid}")  # its own conversation, by id
    eventually(
        lambda: "REMEMBER.md" in cli.ssh(NAME, "tmux capture-pane -p -S -200 -t claude"),
        timeout=60,
        what="the earlier conversation on screen after the restore",
    )


def test_the_standard_age_tool_reads_a_backup(cli) -> None:
    identity = cli.home / ".local/state/vmgen/identities" / f"{NAME}.age-identity"
    (obj,) = sorted(store_dir(cli).glob("*.tar.zst.age"))[-1:]
    listing = subprocess.run(
        f"age -d -i {identity} < {obj} | zstd -d | tar -t", shell=True, check=True, capture_output=True, text=True
    ).stdout
    assert f"work/{NAME}/REMEMBER.md" in listing.splitlines() or f"./work/{NAME}/REMEMBER.md" in listing.splitlines()


def test_the_restored_workspace_backs_up_what_changed(cli, docker_client, tmp_path) -> None:
    """NAME runs restored from its backup: its next backup is an increment on that one, made by
    the agent's walk with root's kept index, and the chain restores by hand with standard tools."""
    restored_from = max(store_dir(cli).glob("*.json")).stem
    cli.ssh(NAME, f"echo later > work/{NAME}/LATER.md && rm work/{NAME}/REMEMBER.md")
    made = cli("backup", NAME)
    assert f"an increment on {restored_from}: " in made.stderr, made.stderr
    assert f"increment 1 on {restored_from}" in cli("backups", NAME).stdout
    # Root's index of the agent's files: root's alone.
    kept = docker_client.containers.get(f"vmgen-{NAME}").exec_run(
        ["stat", "-c", "%U %a", "/var/lib/vmgen/backup-index"]
    )
    assert kept.output.decode().split() == ["root", "700"]
    assert cli.ssh(NAME, "ls /var/lib/vmgen/backup-index 2>&1; true").strip().endswith("Permission denied")

    identity = cli.home / ".local/state/vmgen/identities" / f"{NAME}.age-identity"
    out = tmp_path / "by-hand"
    out.mkdir()
    chain = [max(store_dir(cli).glob("*.json"))]  # the newest, then each manifest's parent
    while parent := json.loads(chain[-1].read_text())["parent"]:
        chain.append(store_dir(cli) / f"{parent}.json")
    for manifest in reversed(chain):  # oldest first: the full one, then the increments
        obj = manifest.with_name(manifest.stem + ".tar.zst.age")
        subprocess.run(
            f"age -d -i {identity} < {obj} | zstd -d | tar -x --incremental -C {out}", shell=True, check=True
        )
    assert (out / f"work/{NAME}/LATER.md").read_text() == "later\n"
    assert not (out / f"work/{NAME}/REMEMBER.md").exists()


def test_restore_as_a_new_workspace_and_back_under_its_own_name(cli, docker_client) -> None:
    """NAME's latest backup is the increment above: its chain restores through vmgen (as the
    agent, through the folders of 000 the full backup left) as a new workspace next to NAME.
    That workspace's own backup then restores under its own name: the repository is still in
    NAME's folder, and the agent starts there."""
    refused = cli("restore", NAME, check=False)  # NAME runs (restored above)
    assert refused.returncode == 2 and f"vmgen restore {NAME} --as NEW" in refused.stderr
    twin = unique("twin")
    restored = cli("restore", NAME, "--as", twin)
    try:
        assert f"restored {NAME} from " in restored.stderr and f" as {twin} " in restored.stderr
        backup_id = restored.stderr.split(f"restored {NAME} from ")[1].split()[0]
        assert cli.ssh(twin, f"cat work/{NAME}/LATER.md") == "later\n"  # in the original's folder
        assert cli.ssh(twin, f"ls work/{NAME}/REMEMBER.md 2>&1; true").strip().endswith("No such file or directory")
        assert locked_out(docker_client, twin) == LOCKED_OUT
        assert cli.ssh(NAME, f"cat work/{NAME}/LATER.md") == "later\n"  # the original runs on
        # Right after the restore: the watchdog sees the agent, and the page names the backup.
        agent_row = next(line for line in cli("status", twin).stdout.splitlines() if line.split()[:1] == ["agent"])
        assert "absent" not in agent_row
        # Without a domain the page's socket is the agent's to reach (as `vmgen open` does, over SSH).
        page = json.loads(cli.ssh(twin, f"curl -sf --unix-socket {VM.page_socket} http://workspace/api/state"))
        assert page["backup"] is None and page["restored"] == {
            "backup_id": backup_id,
            "workspace": NAME,
            "finished_at": page["restored"]["finished_at"],
        }
        # Its own backups go under its own name, to an identity of its own.
        assert (cli.home / ".local/state/vmgen/identities" / f"{twin}.age-identity").exists()

        cli.ssh(twin, f"echo twin > work/{NAME}/TWIN.md")
        own = cli("backup", twin).stderr.split(f"backed up {twin}: ")[1].split(",")[0]
        assert json.loads((store_dir(cli, twin) / f"{own}.json").read_text())["repo_folder"] == NAME
        cli("destroy", twin, "--yes")
        back = cli("restore", twin)  # "ready" means the agent's session started, in its folder
        assert f"restored {twin} from {own}" in back.stderr, back.stderr
        assert cli.ssh(twin, f"cat work/{NAME}/TWIN.md") == "twin\n"
        pid = cli.ssh(twin, "pgrep -u agent -o -f '^claude '").strip()
        assert cli.ssh(twin, f"readlink /proc/{pid}/cwd").strip() == f"/home/agent/work/{NAME}"
    finally:
        cli("destroy", twin, "--yes", check=False)


def test_a_damaged_backup_is_refused_before_a_vm_is_made(cli, docker_client) -> None:
    """The full backup under the latest increment is damaged: the restore says so in one line
    before it makes anything (the chain's objects are checked first)."""
    cli("destroy", NAME, "--yes")
    full = sorted(store_dir(cli).glob("*.tar.zst.age"))[-2]
    data = bytearray(full.read_bytes())
    data[len(data) // 2] ^= 0x01
    full.write_bytes(bytes(data))
    result = cli("restore", NAME, check=False)
    assert result.returncode == 1
    assert f"backup {full.name.split('.')[0]} is damaged" in result.stderr and "Traceback" not in result.stderr
    assert "restoring" not in result.stderr  # no launch began
    assert not docker_client.containers.list(all=True, filters={"label": f"vmgen-ws={NAME}"})
