"""Encrypted backup and restore end to end on the docker provider with the local store: work the
agent did comes back on a new VM, with the agent's conversation; a damaged backup is refused and
leaves no half-restored workspace running the agent; a backup restores as a new workspace next
to the running one, whose page names the backup it came from; the restored workspace's next
backup is an increment, and a damaged increment refuses the restore of its chain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import eventually
from vmgen.contract.names import PORTS

from .conftest import make_repo, unique

NAME = unique("keeper")
NOTE = "remember the blue door\n"


def store_dir(cli) -> Path:
    return cli.home / ".local/share/vmgen/backups/ws" / NAME


def test_round_trip_with_the_conversation(cli, model, tmp_path, docker_client) -> None:
    model.script = Script(rules=[Rule(
        trigger="REMEMBER.md",
        tool=ToolUse("Write", {"file_path": f"/home/agent/work/{NAME}/REMEMBER.md", "content": NOTE}),
        after_tool_text="Noted in REMEMBER.md.")])
    cli("launch", str(make_repo(tmp_path, NAME)))
    cli("send", NAME, "please write REMEMBER.md")
    eventually(lambda: cli.ssh(NAME, f"cat work/{NAME}/REMEMBER.md", check=False) == NOTE, timeout=60,
               what="the agent's file")
    # That turn was shorter than the watchdog's interval, and `vmgen status` still saw it.
    worked = next(line for line in cli("status", NAME).stdout.splitlines() if "last agent working" in line)
    assert "never" not in worked, worked

    made = cli("backup", NAME)
    assert f"backed up {NAME}: " in made.stderr
    backup_id = made.stderr.split(f"backed up {NAME}: ")[1].split(",")[0]
    assert backup_id in cli("backups", NAME).stdout
    # The VM holds the public recipient only.
    assert "AGE-SECRET-KEY" not in cli.ssh(NAME, "grep -r AGE-SECRET-KEY /etc/vmgen /home/agent 2>/dev/null; true")

    cli("destroy", NAME, "--yes")
    restored = cli("restore", NAME)
    assert f"restored {NAME} from {backup_id}" in restored.stderr
    assert cli.ssh(NAME, f"cat work/{NAME}/REMEMBER.md") == NOTE
    transcripts = cli.ssh(NAME, f"ls .claude/projects/-home-agent-work-{NAME}/").split()
    assert any(name.endswith(".jsonl") for name in transcripts)
    # The identity went from the laptop over SSH and the control socket into root's memory only.
    root_grep = docker_client.containers.get(f"vmgen-{NAME}").exec_run(
        ["grep", "-rl", "AGE-SECRET-KEY", "/run", "/etc/vmgen", "/var/lib/vmgen", "/home/agent", "/tmp"])
    assert root_grep.exit_code == 1, root_grep.output  # grep: nothing found anywhere
    pid = cli.ssh(NAME, "pgrep -u agent -o -f 'claude --'").strip()
    assert "--continue" in cli.ssh(NAME, f"ps -o args= -p {pid}")
    eventually(lambda: "REMEMBER.md" in cli.ssh(NAME, "tmux capture-pane -p -S -200 -t claude"), timeout=60,
               what="the earlier conversation on screen after the restore")


def test_restore_as_a_new_workspace_next_to_the_running_one(cli) -> None:
    refused = cli("restore", NAME, check=False)  # NAME runs (restored above)
    assert refused.returncode == 2 and f"vmgen restore {NAME} --as NEW" in refused.stderr
    twin = unique("twin")
    restored = cli("restore", NAME, "--as", twin)
    try:
        assert f"restored {NAME} from " in restored.stderr and f" as {twin} " in restored.stderr
        backup_id = restored.stderr.split(f"restored {NAME} from ")[1].split()[0]
        assert cli.ssh(twin, f"cat work/{NAME}/REMEMBER.md") == NOTE  # in the original's folder
        assert cli.ssh(NAME, f"cat work/{NAME}/REMEMBER.md") == NOTE  # the original runs on
        # Right after the restore: the watchdog sees the agent, and the page names the backup.
        agent_row = next(line for line in cli("status", twin).stdout.splitlines() if line.split()[:1] == ["agent"])
        assert "absent" not in agent_row
        page = json.loads(cli.ssh(twin, "python3 -c 'import sys, urllib.request; "
                                        f"sys.stdout.write(urllib.request.urlopen(\"http://127.0.0.1:{PORTS.page}/api/state\").read().decode())'"))
        assert page["backup"] is None and page["restored"] == {
            "backup_id": backup_id, "workspace": NAME, "finished_at": page["restored"]["finished_at"]}
        # Its own backups go under its own name, to an identity of its own.
        assert (cli.home / ".local/state/vmgen/identities" / f"{twin}.age-identity").exists()
    finally:
        cli("destroy", twin, "--yes")


def test_the_standard_age_tool_reads_a_backup(cli) -> None:
    identity = cli.home / ".local/state/vmgen/identities" / f"{NAME}.age-identity"
    (obj,) = sorted(store_dir(cli).glob("*.tar.zst.age"))[-1:]
    listing = subprocess.run(f"age -d -i {identity} < {obj} | zstd -d | tar -t", shell=True, check=True,
                             capture_output=True, text=True).stdout
    assert f"work/{NAME}/REMEMBER.md" in listing.splitlines() or f"./work/{NAME}/REMEMBER.md" in listing.splitlines()


def test_the_restored_workspace_backs_up_what_changed(cli, docker_client, tmp_path) -> None:
    """NAME runs restored from its backup: its next backup is an increment on that one, made by
    the agent's walk with root's kept index, and the chain restores by hand with standard tools."""
    restored_from = sorted(store_dir(cli).glob("*.json"))[-1].stem
    cli.ssh(NAME, f"echo later > work/{NAME}/LATER.md && rm work/{NAME}/REMEMBER.md")
    made = cli("backup", NAME)
    assert f"an increment on {restored_from}: " in made.stderr, made.stderr
    assert f"increment 1 on {restored_from}" in cli("backups", NAME).stdout
    # Root's index of the agent's files: root's alone.
    kept = docker_client.containers.get(f"vmgen-{NAME}").exec_run(["stat", "-c", "%U %a", "/var/lib/vmgen/backup-index"])
    assert kept.output.decode().split() == ["root", "700"]
    assert cli.ssh(NAME, "ls /var/lib/vmgen/backup-index 2>&1; true").strip().endswith("Permission denied")

    identity = cli.home / ".local/state/vmgen/identities" / f"{NAME}.age-identity"
    out = tmp_path / "by-hand"
    out.mkdir()
    chain = [sorted(store_dir(cli).glob("*.json"))[-1]]  # the newest, then each manifest's parent
    while parent := json.loads(chain[-1].read_text())["parent"]:
        chain.append(store_dir(cli) / f"{parent}.json")
    for manifest in reversed(chain):  # oldest first: the full one, then the increments
        obj = manifest.with_name(manifest.stem + ".tar.zst.age")
        subprocess.run(f"age -d -i {identity} < {obj} | zstd -d | tar -x --incremental -C {out}", shell=True,
                       check=True)
    assert (out / f"work/{NAME}/LATER.md").read_text() == "later\n"
    assert not (out / f"work/{NAME}/REMEMBER.md").exists()


def test_a_damaged_backup_is_refused_and_nothing_runs(cli, docker_client) -> None:
    cli("destroy", NAME, "--yes")
    obj = sorted(store_dir(cli).glob("*.tar.zst.age"))[-1]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    result = cli("restore", NAME, check=False)
    assert result.returncode == 1
    assert "restore failed" in result.stderr and "Traceback" not in result.stderr
    assert not docker_client.containers.list(all=True, filters={"label": f"vmgen-ws={NAME}"})
