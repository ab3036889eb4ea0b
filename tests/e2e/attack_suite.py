"""The agent user attacks its own workspace: a real booted VM, a shell as `agent`, and every way up
a careful attacker tries. Each case asserts that the attack failed *and* that vmgen kept working
(the watchdog still ticks and still acts at the hard limit, a backup still runs).

The tests are collected by test_attacks_hetzner.py and test_attacks_docker.py, which provide the
`ws` and `doomed` fixtures: every one on the Hetzner workspace (whose root holds the most secrets:
the cloud token, the R2 keys), and on the docker one those where a docker workspace differs (its
secrets, its local backup store, its power-off at the hard lifetime); the attacks named in
`SAME_ON_EVERY_PROVIDER` meet the same VM-side code on both and run once. Whatever the agent runs goes through
`vmgen ssh` (SSH as the agent user); what root sees is read with `docker exec` on the simulated
VM, which is not an SSH session and so never counts as a human for the watchdog.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from tests.containers import output_of
from tests.polling import eventually, wait_until
from vmgen.contract.documents import ACT_FALLBACK_SECONDS

from .conftest import Cli
from .webhook import Webhook

# Seconds-scale limits for the attack workspaces (set by the provider modules' fixtures).
BACKUP_DEADLINE_SECONDS = 30
LIFETIME_SECONDS = 144  # 0.04 h after boot


@pytest.fixture(scope="module")
def hook():
    """The webhook the doomed workspace reports to."""
    webhook = Webhook()
    yield webhook
    webhook.server.shutdown()


# The VM's own boundary, root's reads of the agent's files and root's deadlines: nothing of them
# depends on the provider, so they run on one workspace only (see the module's docstring).
SAME_ON_EVERY_PROVIDER = (
    "test_the_agent_has_no_way_up",
    "test_links_fifos_devices_and_huge_files_at_every_path_root_reads",
    "test_swapping_files_for_links_in_a_loop_leaks_nothing",
    "test_an_unbounded_lease_is_clamped",
    "test_a_fake_tmux_server_never_gets_a_root_client",
    "test_processes_named_like_a_human_do_not_count",
    "test_the_control_socket_takes_only_what_it_should",
    "test_the_page_is_not_the_agents_and_roots_page_socket_refuses_it",
    "test_a_stopped_tar_stage_holds_up_neither_the_watchdog_nor_the_laptop",
    "test_a_flood_and_slow_clients_leave_root_answering_the_laptop",
    "test_root_owns_everything_vmgen_installs",
    "test_nothing_root_executes_is_writable_by_the_agent",
)

AGENT_UID = 2000
SHADOW = "/etc/shadow"
# A root-only file the agent links to: if root ever read through such a link, its reason would
# show in the watchdog's state, and its text in a backup.
CANARY = "/root/vmgen-canary.json"
CANARY_TEXT = "canary-8c1f2e"


@dataclass
class Workspace:
    """A launched workspace under attack, and the means to look at it as root."""

    name: str
    provider: str
    cli: Cli
    docker_client: docker.DockerClient
    # Fetch an object of the store by its key, ws/<name>/... (the laptop holds the identity).
    fetch: Callable[[str], bytes]
    secrets: list[str] = field(default_factory=list)

    def fetch_backup(self, backup_id: str) -> bytes:
        return self.fetch(f"ws/{self.name}/{backup_id}.tar.zst.age")

    def restore_by_hand(self, backup_id: str, into: Path) -> None:
        """The README's recipe: the full backup, then each increment, oldest first."""
        chain, at = [], backup_id
        while at:
            chain.append(at)
            at = json.loads(self.fetch(f"ws/{self.name}/{at}.json"))["parent"]
        identity = self.cli.home / ".local/state/vmgen/identities" / f"{self.name}.age-identity"
        into.mkdir(parents=True, exist_ok=True)
        for each in reversed(chain):
            subprocess.run(
                f"age -d -i {identity} | zstd -d | tar -x --incremental -C {into}",
                shell=True,
                check=True,
                input=self.fetch_backup(each),
                capture_output=True,
            )

    def agent(self, script: str, check: bool = True) -> str:
        return self.cli.ssh(self.name, script, check=check)

    def agent_run(self, script: str) -> subprocess.CompletedProcess[str]:
        return self.cli("ssh", self.name, "--", script, check=False)

    def container(self):
        for c in self.docker_client.containers.list(filters={"name": self.name}):
            assert c.name is not None  # the engine names every container
            if c.name == f"vmgen-{self.name}" or re.fullmatch(rf"hz-\d+-{re.escape(self.name)}", c.name):
                return c
        raise AssertionError(f"no running VM for {self.name}")

    def root(self, command: str) -> tuple[int, str]:
        result = self.container().exec_run(["bash", "-c", command])
        return result.exit_code, result.output.decode(errors="replace")

    def state(self) -> dict:
        code, text = self.root("cat /run/vmgen/idlewatch.json")
        assert code == 0, text
        return json.loads(text)

    def ticks(self, count: int = 2, timeout: float = 60) -> dict:
        """Wait until the watchdog wrote `count` new states: it is alive and not blocked."""
        seen = self.state()["updated_at"]
        for _ in range(count):

            def newer(written: dict, seen: float = seen) -> bool:
                return written["updated_at"] > seen

            state = wait_until(self.state, newer, timeout=timeout, every=0.5)
            assert state["updated_at"] > seen, f"the watchdog stopped ticking: {state}"
            seen = state["updated_at"]
        return state

    def journal(self, unit: str) -> str:
        return self.root(f"journalctl -u {unit} --no-pager -o cat")[1]


def secrets_on_the_vm(ws: Workspace) -> list[str]:
    """Every secret root holds on the VM, as root reads it: the host key, the provider's and the
    store's credentials (test values, but distinct enough to grep for)."""
    found = []
    code, key = ws.root("grep -v -- '-----' /etc/ssh/ssh_host_ed25519_key | head -2 | tr -d '\\n'")
    assert code == 0 and len(key) > 40
    found.append(key[:60])
    code, env = ws.root("cat /etc/vmgen/provider.env 2>/dev/null")
    found += [line.split("=", 1)[1] for line in env.splitlines() if "=" in line and len(line.split("=", 1)[1]) >= 8]
    code, toml = ws.root("cat /etc/vmgen/backup.toml 2>/dev/null")
    found += [
        m for m in re.findall(r'^(?:secret_access_key|access_key_id) = "(.+)"$', toml, re.MULTILINE) if len(m) >= 8
    ]
    return found + ws.secrets + [CANARY_TEXT]


def plant_canary(ws: Workspace) -> None:
    lease = json.dumps([{"until": 4e9, "reason": CANARY_TEXT}])
    hook = json.dumps({"at": 4e9, "event": "UserPromptSubmit"})
    code, out = ws.root(f"umask 077; printf '%s\\n%s\\n' '{lease}' '{hook}' > {CANARY}; chmod 600 {CANARY}")
    assert code == 0, out


# Run as the agent: look for any of the patterns (read from stdin) in every file it can read,
# and in the argv and environment of every process. Prints each hit.
HUNT = r"""
import os, sys
patterns = [p for p in sys.stdin.read().splitlines() if p]
me = os.getpid()
def check(where, data):
    for p in patterns:
        if p.encode() in data:
            print(f"{where}: {p[:12]}...")
for top in ("/etc", "/var", "/run", "/opt", "/usr/local", "/tmp", "/root", "/srv", "/home", "/boot"):
    for folder, dirs, files in os.walk(top, onerror=lambda e: None):
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 8 << 20:
                    continue
                with open(path, "rb", buffering=0) as f:
                    check(path, f.read())
            except OSError:
                pass
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != me:
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as f:
                    check(f"/proc/{pid}/{part}", f.read())
            except OSError:
                pass
"""


def hunt(ws: Workspace, patterns: list[str]) -> list[str]:
    result = ws.cli("ssh", ws.name, "--", "python3 -c " + _quote(HUNT), input="\n".join(patterns) + "\n")
    return [line for line in result.stdout.splitlines() if line.strip()]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


# --- the hard limit, first: its workspace is trapped now, and checked last ------------------------


@pytest.fixture(scope="module")
def trapped(doomed: Workspace) -> float:
    """The doomed workspace, with everything the agent can plant against the hard lifetime:
    leases, events and sessions that block, a fake human, files changing every second, a full
    disk, and every backup's tar stage killed as it starts. Returns when the traps went in."""
    code, out = doomed.root(f"bash -c {_quote(FILL_SETUP)} - {doomed.name}")
    assert code == 0, out
    # 64 MiB that does not compress keeps each backup's tar stage alive long enough for the
    # killer's 0.1 s poll: a small tree's tar stage once finished before the killer saw it.
    doomed.agent(f"""head -c 64M /dev/urandom > ~/work/{doomed.name}/big.bin
        dd if=/dev/zero of=~/scratch/fill bs=1M 2>/dev/null
        cd ~/.vmgen && rm -f leases.json agent-events.jsonl
        mkfifo leases.json agent-events.jsonl
        mkdir -p ~/.claude/sessions && for i in 1 2 3; do mkfifo ~/.claude/sessions/$i.json; done
        setsid nohup bash -c 'exec -a "sshd: agent@pts/7" sleep 3600' >/dev/null 2>&1 < /dev/null &
        setsid nohup bash -c 'while :; do touch ~/work/{doomed.name}/busy; sleep 1; done' >/dev/null 2>&1 < /dev/null &
        setsid nohup bash -c 'while :; do pkill -9 -u agent -f " tar [{{]"; sleep 0.1; done' \\
            >/dev/null 2>&1 < /dev/null &
        echo kept-without-a-backup > ~/work/{doomed.name}/precious.txt""")
    return time.monotonic()


def test_the_doomed_workspace_is_trapped_before_its_lifetime_ends(trapped: float, doomed: Workspace) -> None:
    # First in the module, so that its lifetime runs out while the other tests run; the last
    # test waits for it to go (test_the_hard_lifetime_fires_through_every_trap).
    assert doomed.agent("test -p ~/.vmgen/leases.json && cat ~/work/*/precious.txt").strip() == "kept-without-a-backup"


# --- who the agent is ---------------------------------------------------------------------------


def test_the_agent_has_no_way_up(ws: Workspace) -> None:
    assert ws.agent("id -u; id -nG").split() == [str(AGENT_UID), "agent"]  # no adm, no sudo group
    sudo = ws.agent_run("sudo -n true")
    assert sudo.returncode != 0
    assert ws.root("getent passwd debian ubuntu")[0] == 2  # no distribution default user
    _code, rules = ws.root("grep -rhs NOPASSWD /etc/sudoers /etc/sudoers.d || true")
    assert rules.strip() == ""
    # setuid/setgid binaries: exactly those of the image the VM booted from; vmgen adds none.
    finder = "find / -xdev \\( -perm -4000 -o -perm -2000 \\) -type f 2>/dev/null | sort"
    on_vm = ws.root(finder)[1].split()
    image = ws.container().image.id
    stock = output_of(ws.docker_client, image, ["bash", "-c", finder]).decode().split()
    assert set(on_vm) <= set(stock), set(on_vm) - set(stock)


def test_nothing_the_agent_can_read_holds_a_secret(ws: Workspace) -> None:
    patterns = secrets_on_the_vm(ws)
    assert len(patterns) >= 2
    assert hunt(ws, patterns) == []
    assert ws.agent_run(f"cat {SHADOW} /etc/vmgen/provider.env").returncode != 0
    # The system journal is not the agent's to read (no adm group): only its own user journal.
    journal = ws.agent_run("journalctl -u vmgen-idlewatch -u vmgen-control --no-pager -n 50 -o cat")
    assert "idle watchdog started" not in journal.stdout
    for path in (
        "/var/lib/cloud/instance/user-data.txt",
        "/var/lib/cloud/seed/nocloud/user-data",
        "/run/cloud-init/instance-data-sensitive.json",
    ):
        assert ws.agent_run(f"head -c1 {path}").returncode != 0, path
    # Root's processes: argv readable (it holds nothing, see the hunt), environment not.
    pid = ws.root("systemctl show -p MainPID --value vmgen-idlewatch")[1].strip()
    assert ws.agent_run(f"cat /proc/{pid}/environ").returncode != 0


# --- root reads what the agent wrote ------------------------------------------------------------


def test_links_fifos_devices_and_huge_files_at_every_path_root_reads(ws: Workspace) -> None:
    plant_canary(ws)
    project = "/home/agent/.claude/projects/-home-agent-work-" + ws.name
    ws.agent(f"""set -e
        cd ~/.vmgen
        rm -f leases.json agent-events.jsonl
        ln -s {CANARY} leases.json
        mkfifo agent-events.jsonl
        ln -sf {SHADOW} backup-request
        mkdir -p ~/.claude/sessions {project}
        for f in ~/.claude/sessions/*.json; do [ -e "$f" ] && mv "$f" "$f.real"; done
        for pid in $(pgrep -u agent -x claude; pgrep -u agent -f 'claude --'); do
            ln -sf /etc/vmgen/provider.env ~/.claude/sessions/$pid.json
        done
        mkfifo {project}/fifo.jsonl
        ln -sf /dev/zero {project}/zero.jsonl
        truncate -s 2G {project}/huge.jsonl
        mkdir -p ~/work/{ws.name}/x && ln -s /root ~/work/{ws.name}/x/rootlink
    """)
    state = ws.ticks(3)
    assert CANARY_TEXT not in json.dumps(state)  # the link was not followed
    assert "refusing to read" in ws.journal("vmgen-idlewatch")
    ws.agent(
        f"cd ~/.vmgen && rm -f leases.json agent-events.jsonl && ln -s {CANARY} agent-events.jsonl"
        " && mkfifo leases.json"
    )
    state = ws.ticks(3)
    assert state["agent"]["state"] != "working" and CANARY_TEXT not in json.dumps(state)
    # The old path-unit trap: nothing reads ~/.vmgen/backup-request any more, as root or at all.
    assert ws.root("systemctl list-unit-files 'vmgen-backup*' 'vmgen-restore*' --no-legend")[1].strip() == ""
    _code, rss = ws.root("ps -o rss= -p $(systemctl show -p MainPID --value vmgen-idlewatch)")
    assert int(rss) < 200_000, rss  # KiB: the 2 GiB file was not read into memory
    ws.agent(f"""cd ~/.vmgen && rm -f leases.json agent-events.jsonl backup-request
        rm -f {project}/fifo.jsonl {project}/zero.jsonl {project}/huge.jsonl ~/work/{ws.name}/x/rootlink
        for f in ~/.claude/sessions/*.json; do [ -L "$f" ] && rm -f "$f"; done
        for f in ~/.claude/sessions/*.json.real; do [ -e "$f" ] && mv "$f" "${{f%.real}}"; done; true""")
    ws.ticks(1)


def test_swapping_files_for_links_in_a_loop_leaks_nothing(ws: Workspace) -> None:
    plant_canary(ws)
    ws.agent(f"""cat > /tmp/swap.sh <<'EOF'
        end=$((SECONDS + 12))
        while [ $SECONDS -lt $end ]; do
          echo '[]' > ~/.vmgen/l.tmp && mv -f ~/.vmgen/l.tmp ~/.vmgen/leases.json
          ln -sfn {CANARY} ~/.vmgen/l.lnk && mv -Tf ~/.vmgen/l.lnk ~/.vmgen/leases.json
          mkdir -p ~/work/{ws.name}/d && rm -rf ~/work/{ws.name}/d
          ln -sfn /etc ~/work/{ws.name}/d && rm -f ~/work/{ws.name}/d
        done
EOF
        setsid nohup bash /tmp/swap.sh >/dev/null 2>&1 < /dev/null &""")
    for _ in range(4):
        assert CANARY_TEXT not in json.dumps(ws.ticks(1))
    eventually(
        lambda: ws.agent_run("pgrep -f '^bash /tmp/swap.sh'").returncode != 0, timeout=60, what="the swap loop to end"
    )
    ws.agent("rm -f ~/.vmgen/leases.json ~/.vmgen/l.tmp ~/.vmgen/l.lnk /tmp/swap.sh")


def test_an_unbounded_lease_is_clamped(ws: Workspace) -> None:
    ws.agent("""printf '[{"until": 1e999, "reason": "inf"}, {"until": 1e300, "reason": "far"}, '\
'{"until": NaN, "reason": "nan"}]' > ~/.vmgen/leases.json""")
    state = ws.ticks(2)
    keepalives = [r for r in state["verdict"]["reasons"] if r.startswith("keepalive")]
    assert len(keepalives) == 1 and "(far)" in keepalives[0], keepalives
    seconds = float(re.search(r"keepalive for (\d+)s", keepalives[0]).group(1))  # type: ignore[union-attr]
    assert seconds <= 30 * 86400
    ws.agent("rm -f ~/.vmgen/leases.json")


def test_a_fake_tmux_server_never_gets_a_root_client(ws: Workspace) -> None:
    # A tmux server can tell its client to run a shell; root must never be that client.
    ws.agent("""cat > /tmp/evil-tmux.py <<'EOF'
import os, socket, struct
path = f"/tmp/tmux-{os.getuid()}/evil"
try:
    os.unlink(path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(16)
while True:
    conn, _ = server.accept()
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    with open("/tmp/evil-tmux.log", "a") as log:
        log.write(f"{uid}\\n")
    conn.close()
EOF
        rm -f /tmp/evil-tmux.log
        setsid nohup python3 /tmp/evil-tmux.py >/dev/null 2>&1 < /dev/null &""")
    eventually(
        lambda: ws.agent_run("cat /tmp/evil-tmux.log").stdout.strip() != "",
        timeout=60,
        what="the watchdog to look at the fake server",
    )
    ws.ticks(2)
    clients = set(ws.agent("cat /tmp/evil-tmux.log").split())
    assert clients == {str(AGENT_UID)}, clients  # asked, but only ever by a client running as the agent
    ws.agent("pkill -f '^python3 /tmp/evil-tmux.py'; rm -f /tmp/tmux-$(id -u)/evil /tmp/evil-tmux.py; true")


def test_processes_named_like_a_human_do_not_count(ws: Workspace) -> None:
    ws.agent("""setsid nohup bash -c 'exec -a "sshd: agent@pts/9" sleep 600' >/dev/null 2>&1 < /dev/null &
        setsid nohup bash -c 'exec -a "sshd-session: agent@pts/8" sleep 600' >/dev/null 2>&1 < /dev/null &""")
    eventually(lambda: ws.root("pgrep -f '^sshd: agent@pts/9'")[0] == 0, timeout=10, what="the fake process")
    state = ws.ticks(2)  # `vmgen ssh` has returned: no real session is open now
    assert not any("SSH session" in r for r in state["verdict"]["reasons"]), state["verdict"]["reasons"]
    ws.agent("pkill -f 'agent@pts/[89]'; true")


def test_the_control_socket_takes_only_what_it_should(ws: Workspace) -> None:
    sock = "/run/vmgen/control.sock"
    mode = ws.root(f"stat -c '%a %U %G %F' {sock}")[1].split()
    assert mode[:3] == ["660", "root", "agent"] and "socket" in " ".join(mode[3:])
    send = (
        "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(\"" + sock + '")\n'
        "try:\n s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR); print(s.recv(65536).decode())\n"
        'except OSError as e: print("closed:", e)\''
    )
    refused = ws.cli("ssh", ws.name, "--", send, input='{"op": "shell", "trigger": "laptop"}\n').stdout
    assert "unknown operation" in refused
    before = ws.root("stat -c %Y /var/lib/vmgen/backup-result.json 2>/dev/null || echo none")[1]
    huge = ws.cli("ssh", ws.name, "--", send, input='{"op": "backup", "x": "' + "a" * (1 << 20) + '"}\n').stdout
    assert "bad request" in huge or "closed:" in huge, huge  # refused after 16 KiB, whatever it sent
    assert ws.root("stat -c %Y /var/lib/vmgen/backup-result.json 2>/dev/null || echo none")[1] == before
    again = ws.agent_run("echo AGE-SECRET-KEY-1XXXX | vmgen vmside restore")
    assert again.returncode == 1 and "not launched to be restored" in again.stdout
    ws.ticks(1)


def test_the_page_is_not_the_agents_and_roots_page_socket_refuses_it(ws: Workspace) -> None:
    """The workspace page runs as its own user: the agent can neither stop nor trace it, nor ask
    root what only the page may ask (its socket's group is the page's user)."""
    page = ws.root("systemctl show -p MainPID --value vmgen-web.service")[1].strip()
    assert page != "0" and ws.root(f"ps -o user= -p {page}")[1].strip() == "vmgen-page"
    tried = ws.agent_run(f"kill -STOP {page} 2>&1; kill {page} 2>&1; cat /proc/{page}/environ 2>&1 | head -c 100")
    assert tried.stdout.count("Operation not permitted") == 2 and "Permission denied" in tried.stdout, tried.stdout
    ask = (
        "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"/run/vmgen/page-ops.sock\")' "
        "2>&1 || true"
    )
    assert "Permission denied" in ws.agent(ask)
    assert ws.root(f"ps -o user=,stat= -p {page}")[1].split()[1][0] in "SR"  # still serving, not stopped
    ws.ticks(1)


# --- backups and restores touch the home as the agent ------------------------------------------


def test_a_backup_reads_the_home_as_the_agent_and_skips_what_it_cannot_hold(ws: Workspace) -> None:
    plant_canary(ws)
    ws.agent(f"""set -e; cd ~/work/{ws.name}
        ln -sf {CANARY} canary-link
        mkfifo a-fifo
        cat > /tmp/swap2.sh <<'EOF'
        end=$((SECONDS + 15))
        while [ $SECONDS -lt $end ]; do
          echo data > ~/work/{ws.name}/swapped.tmp && mv -f ~/work/{ws.name}/swapped.tmp ~/work/{ws.name}/swapped
          ln -sfn {CANARY} ~/work/{ws.name}/swapped.lnk && mv -Tf ~/work/{ws.name}/swapped.lnk ~/work/{ws.name}/swapped
        done
EOF
        setsid nohup bash /tmp/swap2.sh >/dev/null 2>&1 < /dev/null &""")
    made = ws.cli("backup", ws.name)
    # Said, with why; the files the loop swaps may be caught mid-swap (and then said too).
    assert f"work/{ws.name}/a-fifo: special file" in made.stderr, made.stderr
    backup_id = made.stderr.split(f"backed up {ws.name}: ")[1].split(",")[0]
    identity = ws.cli.home / ".local/state/vmgen/identities" / f"{ws.name}.age-identity"
    listing = subprocess.run(
        f"age -d -i {identity} | zstd -d | tar -tv",
        shell=True,
        check=True,
        input=ws.fetch_backup(backup_id),
        capture_output=True,
    ).stdout.decode()
    contents = subprocess.run(
        f"age -d -i {identity} | zstd -d | tar -xO --wildcards '*' 2>/dev/null; true",
        shell=True,
        input=ws.fetch_backup(backup_id),
        capture_output=True,
    ).stdout
    assert f"canary-link -> {CANARY}" in listing  # kept as what it is: a link
    assert "a-fifo" not in listing and f"work/{ws.name}/swapped" in listing
    assert CANARY_TEXT.encode() not in contents
    ws.agent(
        f"pkill -f '^bash /tmp/swap2.sh'; cd ~/work/{ws.name}; "
        "rm -f canary-link a-fifo swapped swapped.tmp swapped.lnk /tmp/swap2.sh; true"
    )


def test_a_restore_writes_through_none_of_the_backups_links(ws: Workspace) -> None:
    before = ws.root("stat -c '%U %a %s' /etc/motd /etc/passwd; sha256sum /etc/motd /etc/passwd")[1]
    # The backup is taken while authorized_keys is a link to /etc/motd (from inside the session
    # that planted it: logins fail from then on), with more links where a restore writes.
    ws.agent(f"""set -e
        ln -sf /etc/passwd ~/work/{ws.name}/passwd-link
        ln -sfn /etc ~/etc-link
        cp ~/.ssh/authorized_keys ~/.ssh/keys.bak
        ln -sf /etc/motd ~/.ssh/authorized_keys
        vmgen vmside backup --trigger laptop > /tmp/backup.out || (cat /tmp/backup.out; false)
        mv -f ~/.ssh/keys.bak ~/.ssh/authorized_keys""")
    ws.cli("destroy", ws.name, "--yes")
    restored = ws.cli("restore", ws.name)
    assert f"restored {ws.name}" in restored.stderr
    assert ws.root("stat -c '%U %a %s' /etc/motd /etc/passwd; sha256sum /etc/motd /etc/passwd")[1] == before
    assert ws.agent("test -L ~/etc-link && readlink ~/work/" + ws.name + "/passwd-link").strip() == "/etc/passwd"
    assert (
        ws.agent("test -f ~/.ssh/authorized_keys && ! test -L ~/.ssh/authorized_keys && echo regular").strip()
        == "regular"
    )
    ws.ticks(1)


# --- root's limits hold whatever the agent does to what root waits on (issue 21) --------------

# The backup's tar stage is the agent's process: `python -c ... child_main(...) tar {"root": ...}`.
TAR_STAGES = "pgrep -u agent -f ' tar [{]'"
STOP_TAR_STAGES = (
    'setsid nohup bash -c \'while [ ! -e /tmp/let-tar-run ]; do for p in $(pgrep -u agent -f " tar [{]"); '
    "do kill -STOP $p; done; sleep 0.05; done' >/dev/null 2>&1 < /dev/null &"
)
ASK_ROOT = (
    "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(10); "
    's.connect("/run/vmgen/control.sock"); s.sendall(sys.argv[1].encode() + b"\\n"); '
    "print(s.makefile().readline())' "
)


def backup_id_of(made: subprocess.CompletedProcess[str], name: str) -> str:
    return made.stderr.split(f"backed up {name}: ")[1].split(",")[0]


def test_a_stopped_tar_stage_holds_up_neither_the_watchdog_nor_the_laptop(ws: Workspace) -> None:
    """Attack 1: the agent stops the backup's tar stage (its own process) for good. The watchdog
    keeps ticking, a second backup hears "busy" at once, root stops the held one at its deadline,
    and the laptop's backup runs after it."""
    # 64 MiB that does not compress: the tar stage runs long enough to be caught.
    ws.agent(
        f"head -c 64M /dev/urandom > ~/work/{ws.name}/big.bin; rm -f /tmp/let-tar-run; "
        + STOP_TAR_STAGES
        + " setsid nohup vmgen vmside backup --trigger shell > /tmp/held.out 2>&1 < /dev/null &"
    )
    eventually(
        lambda: "T" in ws.root(f"for p in $({TAR_STAGES}); do ps -o stat= -p $p; done")[1],
        timeout=60,
        what="the tar stage to be stopped",
    )
    ws.ticks(2)  # the watchdog does not wait on it
    started = time.monotonic()
    answer = ws.agent(ASK_ROOT + '\'{"op": "backup", "trigger": "laptop"}\'')
    assert '"busy"' in answer and "a backup is already running (asked for by shell" in answer, answer
    assert time.monotonic() - started < 15
    result = wait_until(
        lambda: ws.root("cat /var/lib/vmgen/backup-result.json")[1],
        lambda text: '"shell"' in text,
        timeout=BACKUP_DEADLINE_SECONDS + 60,
        every=1,
    )
    assert "the backup was stopped: it did not finish within its deadline" in result, result
    assert ws.root(TAR_STAGES)[0] == 1  # killed: SIGKILL does not wait for a stopped process
    ws.agent(f"touch /tmp/let-tar-run; rm -f ~/work/{ws.name}/big.bin")
    made = ws.cli("backup", ws.name)
    assert f"backed up {ws.name}: " in made.stderr
    assert "Traceback" not in ws.journal("vmgen-control")


FLOOD = r"""
import socket, sys, time
held = []
for i in range(500):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("/run/vmgen/control.sock")
    except OSError:
        continue
    held.append(s)
print("connected", len(held), flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:  # slowloris: a byte now and then on the newest, never a whole line
    for s in held[-8:]:
        try:
            s.send(b"{")
        except OSError:
            pass
    time.sleep(2)
"""


def test_a_flood_and_slow_clients_leave_root_answering_the_laptop(ws: Workspace) -> None:
    """Attack 4: 500 connections and slow clients. The socket stays up, one root daemon answers,
    and the laptop's `vmgen status` and `vmgen backup` (over SSH, as the agent too) succeed."""
    ws.agent(
        "cat > /tmp/flood.py <<'EOF'\n" + FLOOD + "\nEOF\n"
        "setsid nohup python3 /tmp/flood.py 40 > /tmp/flood.out 2>&1 < /dev/null &"
    )
    eventually(lambda: "connected" in ws.agent_run("cat /tmp/flood.out").stdout, timeout=60, what="the flood")
    status = ws.cli("status", ws.name)
    assert "note:" not in status.stderr, status.stderr  # a verdict made now, not the last regular one
    made = ws.cli("backup", ws.name)
    assert f"backed up {ws.name}: " in made.stderr
    assert ws.root("systemctl show -p ActiveState --value vmgen-control.socket")[1].strip() == "active"
    assert ws.root("pgrep -c -f '[v]mgen vmside control'")[1].strip() == "1"  # one daemon, not one per connection
    ws.agent("pkill -f '^python3 /tmp/flood.py'; rm -f /tmp/flood.py /tmp/flood.out; true")


FILL_SETUP = r"""set -e
mkdir -p /mnt/vmdisk /mnt/store-kept
mount -t tmpfs -o size=48m,mode=0755 vmdisk /mnt/vmdisk
mkdir -p /mnt/vmdisk/lib /mnt/vmdisk/agent
chown agent:agent /mnt/vmdisk/agent
store=/var/lib/vmgen/backups/ws/$1
if mountpoint -q $store; then mount --bind $store /mnt/store-kept; fi
tar -C /var/lib/vmgen --exclude=./backups -cf - . | tar -C /mnt/vmdisk/lib -xf -
mount --bind /mnt/vmdisk/lib /var/lib/vmgen
if mountpoint -q /mnt/store-kept; then mkdir -p $store; mount --bind /mnt/store-kept $store; fi
mkdir -p /home/agent/scratch && chown agent:agent /home/agent/scratch
mount --bind /mnt/vmdisk/agent /home/agent/scratch
"""
FILL_TEARDOWN = r"""
rm -f /home/agent/scratch/fill
umount /home/agent/scratch; rmdir /home/agent/scratch
store=/var/lib/vmgen/backups/ws/$1
if mountpoint -q $store && mountpoint -q /mnt/store-kept; then umount $store; fi
umount /var/lib/vmgen
if mountpoint -q /mnt/store-kept; then umount /mnt/store-kept; fi
umount /mnt/vmdisk; rmdir /mnt/vmdisk /mnt/store-kept
"""


def test_a_full_disk_neither_crash_loops_the_watchdog_nor_fails_a_backup(ws: Workspace) -> None:
    """The agent fills the disk root keeps its state on (a small disk of the simulated VM's own,
    shared by /var/lib/vmgen and a folder of the agent's). The watchdog goes on ticking and says
    what it sees, `vmgen status` answers, and a backup is made and said to be made: no crash
    loop, no traceback, no backup made again because a file of root's could not be written."""
    restarts = ws.root("systemctl show -p NRestarts --value vmgen-idlewatch")[1].strip()
    code, out = ws.root(f"bash -c {_quote(FILL_SETUP)} - {ws.name}")
    assert code == 0, out
    try:
        ws.agent("dd if=/dev/zero of=~/scratch/fill bs=1M 2>/dev/null; true")
        assert ws.root("df --output=avail /var/lib/vmgen | tail -1")[1].strip() == "0"
        ws.ticks(2)
        assert ws.cli("status", ws.name).returncode == 0
        made = ws.cli("backup", ws.name)
        assert f"backed up {ws.name}: " in made.stderr
        ws.ticks(1)
        assert ws.root("systemctl show -p NRestarts --value vmgen-idlewatch")[1].strip() == restarts
        journal = ws.root("journalctl -u vmgen-idlewatch -u vmgen-control --since '-3min' --no-pager -o cat")[1]
        assert "Traceback" not in journal and "No space left" in journal, journal[-3000:]
    finally:
        code, out = ws.root(f"bash -c {_quote(FILL_TEARDOWN)} - {ws.name}")
        assert code == 0, out
    ws.ticks(1)


def test_emptying_the_workspace_and_asking_for_backups_keeps_the_earlier_ones_restorable(
    ws: Workspace, tmp_path: Path
) -> None:
    """Attack 3: the agent empties the tree and asks for 20 backups in a row: the backups from
    before stay in the store and restore with their files (rate limit and retention by age)."""
    ws.agent(
        f"mkdir -p ~/work/{ws.name}/keep && for i in $(seq 1 40); do echo file-$i > ~/work/{ws.name}/keep/f$i.txt; done"
    )
    good = backup_id_of(ws.cli("backup", ws.name), ws.name)
    attack = ws.agent_run(
        f"rm -rf ~/work/{ws.name}/* ~/work/{ws.name}/.git; for i in $(seq 1 20); do "
        "vmgen vmside backup --trigger shell | tail -1; done"
    )
    assert "backups were asked for in the last hour" in attack.stdout, attack.stdout[-2000:]
    assert good in ws.cli("backups", ws.name).stdout
    ws.restore_by_hand(good, tmp_path / "restored")
    kept = tmp_path / "restored" / "work" / ws.name / "keep"
    assert sorted(p.name for p in kept.iterdir()) == sorted(f"f{i}.txt" for i in range(1, 41))
    assert (kept / "f7.txt").read_text() == "file-7\n"


# --- the inventory: nothing root runs or reads is the agent's to change -------------------------

INVENTORY = (
    "/etc/vmgen /usr/local/lib/vmgen /opt/vmgen /var/lib/vmgen /run/vmgen /var/log/vmgen "
    "/etc/systemd/system/vmgen-* /etc/tmpfiles.d/vmgen.conf /etc/ssh/sshd_config.d/60-vmgen.conf "
    "/etc/fail2ban/jail.d/vmgen.local /usr/local/bin/vmgen"
)
# Places any user may write by design (sticky shared folders, its own runtime dir).
SHARED = (
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/run/lock",
    f"/run/user/{AGENT_UID}",
    "/home/agent",
    "/proc",
    "/sys",
    "/dev",
    "/var/lib/systemd/linger",
)


def test_root_owns_everything_vmgen_installs(ws: Workspace) -> None:
    _code, listing = ws.root(f"find {INVENTORY} -printf '%u %g %#m %y %p\\n' 2>/dev/null")
    entries = [line.split(" ", 4) for line in listing.splitlines()]
    assert len(entries) > 50, listing[:500]
    bad = []
    for owner, group, mode, kind, path in entries:
        bits = int(mode, 8)
        if path == "/run/vmgen/control.sock":
            ok = (owner, group, bits & 0o777, kind) == ("root", "agent", 0o660, "s")
        elif path == "/run/vmgen/web-login.sock":  # with a domain: Caddy's way to the web login
            ok = (owner, group, bits & 0o777, kind) == ("root", "caddy", 0o660, "s")
        elif path == "/run/vmgen/page.sock":  # Caddy's with a domain; without, the agent reaches it by SSH
            ok = (owner, bits & 0o777, kind) == ("root", 0o660, "s") and group in ("caddy", "agent")
        elif path == "/run/vmgen/page-ops.sock":  # the page's requests to root: its user's only
            ok = (owner, group, bits & 0o777, kind) == ("root", "vmgen-page", 0o660, "s")
        elif kind == "l":
            ok = owner == "root"
        else:
            ok = owner == "root" and not bits & 0o002 and not (bits & 0o020 and group != "root")
        if not ok:
            bad.append(f"{owner}:{group} {mode} {kind} {path}")
    assert bad == [], "\n".join(bad)
    # Root-only secrets stay root-only.
    for path in ("/etc/vmgen/provider.env", "/etc/vmgen/backup.toml", "/etc/vmgen/cloudcli.env"):
        _code, out = ws.root(f"test -e {path} && stat -c '%a %U' {path} || echo absent")
        assert out.strip() in ("600 root", "absent"), (path, out)


def test_nothing_root_executes_is_writable_by_the_agent(ws: Workspace) -> None:
    prune = " -o ".join(f"-path {p}" for p in SHARED)
    # Writable by the agent (links excluded: a masked unit points at /dev/null), and links into
    # places the agent controls.
    _code, writable = ws.root(
        f"runuser -u agent -- find / -xdev \\( {prune} \\) -prune -o -writable ! -type l -print -o -type l "
        "\\( -lname '/home/*' -o -lname '/tmp/*' -o -lname '/var/tmp/*' -o -lname '/dev/shm/*' \\) -print 2>/dev/null"
    )
    assert writable.strip() == "", writable
    # Every program a root unit of vmgen's runs, and each folder above it: root's, not writable.
    _code, units = ws.root("systemctl cat 'vmgen-*' 2>/dev/null | grep -E '^(ExecStart|User)='")
    programs = {
        line.split("=", 1)[1].split()[0].lstrip("-@+!") for line in units.splitlines() if line.startswith("ExecStart=")
    }
    for program in sorted(programs):
        _code, out = ws.root(
            f'p={program}; while [ "$p" != / ]; do stat -L -c \'%U %a %n\' "$p"; p=$(dirname "$p"); done'
        )
        for line in out.splitlines():
            owner, mode, _path = line.split(" ", 2)
            assert owner == "root" and not int(mode, 8) & 0o022, line
    _code, path_dirs = ws.root(
        "for d in $(echo $PATH | tr : ' ') /usr/local/sbin /usr/local/bin; do stat -L -c '%U %a %n' $d; done"
    )
    for line in path_dirs.splitlines():
        owner, mode, _ = line.split(" ", 2)
        assert owner == "root" and not int(mode, 8) & 0o022, line


# --- the hard limit: acted on whatever the agent plants ----------------------------------------


def test_the_hard_lifetime_fires_through_every_trap(
    trapped: float, gone: Callable[[], bool], hook: Webhook, kept: Callable[[], str], doomed: Workspace
) -> None:
    """Leases, events and sessions that block, a fake human, files changing every second, a full
    disk, and (attack 2) every backup's tar stage killed as it starts: at the hard lifetime the VM
    still goes, within root's bound, and every channel says how its data was kept without a backup.
    The traps went in at the module's start (`trapped`): the lifetime ran out while the other
    tests ran."""
    bound = LIFETIME_SECONDS + BACKUP_DEADLINE_SECONDS + ACT_FALLBACK_SECONDS
    eventually(
        gone,
        timeout=max(0.0, bound - (time.monotonic() - trapped)),
        interval=2,
        what="the workspace to go at its hard lifetime",
    )
    said = hook.wait_for(f"workspace {doomed.name}", timeout=60)
    kept_as = kept()
    told = hook.wait_for("without a complete backup (no verified backup could be made", timeout=60)
    assert told["event"] == "kept" and kept_as in told["text"], told
    assert "exit status -9" in told["text"] or "did not finish within its deadline" in told["text"], told
    assert said["workspace"] == doomed.name
