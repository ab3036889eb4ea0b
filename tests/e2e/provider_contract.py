"""The provider contract: what every provider must do, run unchanged against each simulated cloud.
A provider is done when this suite passes for it.

The tests are collected by one module per provider (test_contract_<provider>.py), which gives the
`cloud` fixture (a `ContractCloud`: how to count vmgen's things on that cloud, how to make its API
refuse a launch, how to take a name) and sets the CLI up as a user of that cloud would (credentials,
region, a backup store the VMs reach). Everything else is the same for every provider:

- refusals before anything is made (per provider: a bad token, a quota, an unknown size, a name
  another resource holds): one line, the provider's own words, and nothing of vmgen's left;
- a launch whose cloud-init fails: one line, and the server and what came with it gone;
- a local folder launched by a build of the CLI only this test has: uploaded as git would, and the
  VM runs that very build;
- one workspace through its whole life, each step on the one before (a step-by-step chain, as a
  user lives it; sharing the boot keeps the suite within its time): launched from a git URL ->
  ready, the agent working -> listed with its price, its status -> stopped (what a stop still
  bills) -> started, the conversation resumed -> backed up -> idle, it backs up and its compute
  ends (deleted where the provider can delete itself, else powered off with its disk) -> restored
  on a new server with files and conversation -> destroyed;
- afterwards the cloud holds nothing of vmgen's.

Names are this run's own (`unique`): the docker and ssh providers share this machine's engine with
whatever the user runs there, and the counts look only at this module's names."""

from __future__ import annotations

import http.server
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.fakes.moto_server import CREDENTIALS, moto_server, s3_client
from tests.polling import eventually
from vmgen.contract.names import VM

from .conftest import ROOT, Cli, QuietHandler, make_repo, unique

IDLE_MINUTES = 0.5  # the main workspace's, once its keepalive goes: seconds-scale timers
HELLO = "hello from the contract\n"
LATER = "written after the first backup\n"  # by `echo`


@dataclass(frozen=True)
class Refusal:
    """A launch the provider refuses before it makes anything: `arrange` sets the cloud up for it
    and yields the launch's extra arguments; the one error line says `says`, the exit code is `code`."""

    arrange: Callable[[Cli], AbstractContextManager[list[str]]]
    says: str
    code: int = 2


@dataclass
class ContractCloud:
    provider: str
    # vmgen's things the cloud holds for `names` (those with a count, by kind): what a user would
    # find there or be billed for.
    resources: Callable[[tuple[str, ...]], dict[str, int]]
    # A resource named for workspace NAME that vmgen did not make (another tool's server, another
    # laptop's workspace): while it exists, a launch of NAME is refused with `name_taken_says`.
    take_name: Callable[[str], AbstractContextManager[None]]
    name_taken_says: str
    refusals: dict[str, Refusal] = field(default_factory=dict)
    # The size a launch picks by default (its TYPE in `vmgen sizes`), and what `vmgen list` shows
    # as the TYPE of a workspace of that size.
    size: str = "medium"
    server_type: str = "container"
    location: str = "local"  # where it runs, as `vmgen sizes` names it
    # Checks of a running workspace that only this provider has (its metadata options, where its
    # SSH is published); run while the chain's workspace is up.
    running_checks: Callable[[Cli, str], None] = lambda cli, name: None


@dataclass(frozen=True)
class Names:
    main: str
    folder: str
    broken: str
    taken: str
    refused: str

    @property
    def all(self) -> tuple[str, ...]:
        return (self.main, self.folder, self.broken, self.taken, self.refused)


SECONDS_SCALE = {"VMGEN_IDLE_WARN_MINUTES": "0.25", "VMGEN_IDLE_INTERVAL_SECONDS": "2"}  # the watchdog's timers
BUCKET = "vmgen-backups"


@contextmanager
def s3_backup_store(cli: Cli, host: str, folder: Path) -> Iterator[None]:
    """An S3 server (moto) as the workspaces' R2, bound to `host`, where this process (the laptop)
    and the cloud's VMs both reach it; the CLI set up to back up there."""
    with moto_server(folder / "moto.log", host=host) as port:
        endpoint = f"http://{host}:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        cli.env.update(
            {
                "VMGEN_R2_BUCKET": BUCKET,
                "VMGEN_R2_ENDPOINT": endpoint,
                "VMGEN_R2_ACCESS_KEY_ID": CREDENTIALS["access_key_id"],
                "VMGEN_R2_SECRET_ACCESS_KEY": CREDENTIALS["secret_access_key"],
            }
        )
        yield


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each provider module names the refusals its cloud has (REFUSALS); a test per refusal."""
    if "refusal" in metafunc.fixturenames:
        metafunc.parametrize("refusal", getattr(metafunc.module, "REFUSALS", ()))


@pytest.fixture(scope="module")
def names(cloud: ContractCloud) -> Names:
    short = cloud.provider[:3]
    return Names(*(unique(f"{short}-{role}") for role in ("main", "folder", "broken", "taken", "refused")))


def row(cli: Cli, provider: str, name: str) -> list[str]:
    listing = cli("list", "--provider", provider).stdout
    found = [line.split() for line in listing.splitlines() if line.split()[:1] == [name]]
    assert found, f"{name} not in `vmgen list`:\n{listing}"
    return found[0]


def expect_error(cli: Cli, args: list[str], says: str, code: int) -> str:
    result = cli(*args, check=False)
    assert result.returncode == code, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return result.stderr


def sizes(cli: Cli, provider: str) -> list[dict[str, str]]:
    """`vmgen sizes` as rows by column: each column starts where its heading does."""
    lines = [line for line in cli("sizes", "--provider", provider).stdout.splitlines() if line.strip()]
    headings = list(re.finditer(r"\S+(?: \S+)*", lines[0]))  # "RAM GB" is one heading
    bounds = [m.start() for m in headings] + [None]
    return [
        {m.group(): line[start:end].strip() for m, start, end in zip(headings, bounds, bounds[1:], strict=False)}
        for line in lines[1:]
    ]


def hourly(size: dict[str, str]) -> float:
    return float(next(value for column, value in size.items() if column.endswith("/H")))


def test_sizes_list_the_providers_sizes_with_prices(cli, cloud) -> None:
    offered = sizes(cli, cloud.provider)
    assert cloud.size in [size["TYPE"] for size in offered], offered
    assert all(hourly(size) >= 0 for size in offered)


def test_a_refused_launch_says_why_in_one_line_and_leaves_nothing(cli, cloud, names, refusal, tmp_path) -> None:
    repo = make_repo(tmp_path, names.refused)
    case = cloud.refusals[refusal]
    with case.arrange(cli) as extra:
        expect_error(cli, ["launch", str(repo), *extra], case.says, case.code)
    assert cloud.resources(names.all) == {}
    assert names.refused not in cli("list").stdout


def test_a_name_another_resource_holds_is_refused_and_that_resource_kept(cli, cloud, names, tmp_path) -> None:
    repo = make_repo(tmp_path, names.taken)
    with cloud.take_name(names.taken):
        before = cloud.resources(names.all)  # the other one, where it counts as vmgen's (another laptop's)
        expect_error(cli, ["launch", str(repo)], cloud.name_taken_says, 2)
        assert cloud.resources(names.all) == before  # nothing made
    assert names.taken not in cli("list").stdout


def test_a_cloud_init_failure_is_one_line_and_the_server_goes(cli, cloud, names, tmp_path) -> None:
    repo = make_repo(tmp_path, names.broken)
    expect_error(cli, ["launch", str(repo), "--agent-version", "0.0.0-does-not-exist"], "cloud-init status: error", 1)
    assert cloud.resources(names.all) == {}


def test_a_local_folder_is_uploaded_and_the_vm_runs_this_very_build(cli, cloud, names, tmp_path) -> None:
    # A build only this CLI has: the source with one module more. No wheel server, no package
    # index for vmgen: the CLI sends its own wheel over SSH, as a user's laptop does.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "vmgen", src / "vmgen", ignore=shutil.ignore_patterns("__pycache__"))
    token = secrets.token_hex(4)
    (src / "vmgen" / f"marker_{token}.py").write_text(f"TOKEN = {token!r}\n")
    built = Cli(env={**cli.env, "PYTHONPATH": str(src)}, home=cli.home)
    version = built("--version").stdout
    assert version != cli("--version").stdout  # another build than the suite's own

    began = time.time()
    launched = built("launch", str(make_repo(tmp_path, names.folder)))
    try:
        assert f"ready: {names.folder} on {cloud.provider}" in launched.stderr
        files = cli.ssh(names.folder, f"ls -A work/{names.folder}").split()
        assert {"README.md", ".gitignore", "notes.txt", ".git"} <= set(files)
        assert "secret.txt" not in files  # ignored by git: never uploaded
        assert cli.ssh(names.folder, "vmgen --version") == version
        check = f"/opt/vmgen/bin/python -c 'from vmgen.marker_{token} import TOKEN; print(TOKEN)'"
        assert cli.ssh(names.folder, check).strip() == token
        # Only vmgen was replaced: the image's environment, with the same locked dependencies, stayed.
        assert float(cli.ssh(names.folder, "stat -c %Y /opt/vmgen/pyvenv.cfg")) < began
    finally:
        built("destroy", names.folder, "--yes", check=False)
    assert cloud.resources((names.folder,)) == {}


# --- one workspace through its life -------------------------------------------------------------


@pytest.fixture(scope="module")
def git_url(tmp_path_factory) -> Iterator[str]:
    """A repository served over git's dumb HTTP protocol, reached by the VMs through the name
    every simulated VM has for this machine."""
    base = tmp_path_factory.mktemp("git")
    work = make_repo(base, "app")
    (base / "served").mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(base / "served" / "app.git")], check=True)
    subprocess.run(["git", "-C", str(base / "served" / "app.git"), "update-server-info"], check=True)
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", 0), lambda *a: QuietHandler(*a, directory=str(base / "served"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://host.docker.internal:{server.server_address[1]}/app.git"
    server.shutdown()


@pytest.fixture(scope="module")
def launched(cli, model, cloud, names, git_url):
    name = names.main
    model.script = Script(
        rules=[
            Rule(
                trigger="HELLO.md",
                tool=ToolUse("Write", {"file_path": f"/home/agent/work/{name}/HELLO.md", "content": HELLO}),
                after_tool_text="I created HELLO.md.",
            )
        ]
    )
    result = cli("launch", git_url, "--name", name, "--idle-minutes", str(IDLE_MINUTES))
    # Held up while the chain's steps run; the idle step takes the lease away.
    cli("keepalive", name, "--for", "1h", "--reason", "the contract's steps")
    yield result
    cli("destroy", name, "--yes", check=False)


def test_launched_from_a_git_url_ready_and_the_agent_works(cli, cloud, names, launched, model) -> None:
    name = names.main
    assert f"ready: {name} on {cloud.provider}" in launched.stderr
    assert "README.md" in cli.ssh(name, f"ls work/{name}").split()  # cloned on the VM
    assert cli.ssh(name, f"git -C work/{name} log --format=%s").strip() == "initial"
    cli("send", name, "please add a HELLO.md")
    model.wait_for("please add a HELLO.md", timeout=60)
    eventually(
        lambda: cli.ssh(name, f"cat work/{name}/HELLO.md", check=False) == HELLO,
        timeout=90,
        what="HELLO.md written by the agent",
    )


def test_listed_with_its_price_and_its_status_seen(cli, cloud, names, launched) -> None:
    listed = row(cli, cloud.provider, names.main)
    assert listed[1:3] == [cloud.provider, "running"], listed
    assert listed[4] == cloud.server_type, listed
    # At the price `vmgen sizes` offers its size for.
    (offered,) = [s for s in sizes(cli, cloud.provider) if s["TYPE"] == cloud.size and s["LOCATION"] == cloud.location]
    assert float(listed[6]) == hourly(offered), listed
    state = cli("status", names.main, "--json").stdout
    assert '"absent"' not in state.split('"agent"', 1)[1].split("}", 1)[0], state  # the watchdog sees the agent
    cloud.running_checks(cli, names.main)


def test_stop_says_what_it_bills_and_start_resumes_the_conversation(cli, cloud, names, launched) -> None:
    from vmgen.laptop.providers import provider_class

    name = names.main
    stopped = cli("stop", name)
    assert ("still bills" in stopped.stderr) == provider_class(cloud.provider).stop_bills, stopped.stderr
    assert row(cli, cloud.provider, name)[2] == "stopped"
    cli("start", name)
    assert cli.ssh(name, f"cat work/{name}/HELLO.md") == HELLO
    eventually(
        lambda: "claude --resume " in cli.ssh(name, "ps -o args= -u agent", check=False),
        timeout=90,
        what="the agent resumed with its conversation",
    )
    eventually(
        lambda: "HELLO.md" in cli.ssh(name, "tmux capture-pane -p -S -200 -t claude", check=False),
        timeout=60,
        what="the earlier conversation on screen",
    )


def test_backed_up_then_idle_it_backs_up_again_and_its_compute_ends(cli, cloud, names, launched) -> None:
    from vmgen.vmside.providers import vm_provider

    name = names.main
    made = cli("backup", name)
    assert f"backed up {name}: " in made.stderr, made.stderr
    first = made.stderr.split(f"backed up {name}: ")[1].split(",")[0]
    cli.ssh(name, f"echo '{LATER.strip()}' > work/{name}/LATER.md")

    cli.ssh(name, f"rm {VM.leases}")  # the keepalive is the agent's file: it lets go of it
    deletes_itself = vm_provider(cloud.provider).deletes_itself
    after = "gone" if deletes_itself else "stopped (idle)"
    eventually(
        lambda: " ".join(row(cli, cloud.provider, name)[2:4]).startswith(after),
        timeout=IDLE_MINUTES * 60 + 180,
        what=f"the idle workspace to back up and be {after}",
        interval=3,
    )
    if deletes_itself:
        assert "vmgen restore NAME" in cli("list").stderr  # what is left is a backup to restore
    backups = cli("backups", name).stdout
    assert first in backups and len([line for line in backups.splitlines() if name in line]) == 2, backups


def test_restored_on_a_new_server_with_its_files_and_conversation(cli, cloud, names, launched) -> None:
    name = names.main
    if row(cli, cloud.provider, name)[2] != "gone":
        refused = cli("restore", name, check=False)  # its powered-off server is still there
        assert refused.returncode == 2 and f"vmgen start {name}" in refused.stderr, refused.stderr
        cli("destroy", name, "--yes")  # the backup and the identity stay
    cli.env["VMGEN_IDLE_MINUTES"] = "30"  # the restored one stays up while it is checked
    restored = cli("restore", name)
    assert f"restored {name} from " in restored.stderr and f"on {cloud.provider}" in restored.stderr
    assert cli.ssh(name, f"cat work/{name}/HELLO.md") == HELLO
    assert cli.ssh(name, f"cat work/{name}/LATER.md") == LATER  # the idle backup's increment
    pid = cli.ssh(name, "pgrep -u agent -o -f '^claude '").strip()
    assert "claude --resume " in cli.ssh(name, f"ps -o args= -p {pid}")  # its own conversation, by id
    eventually(
        lambda: "HELLO.md" in cli.ssh(name, "tmux capture-pane -p -S -200 -t claude", check=False),
        timeout=60,
        what="the earlier conversation on screen after the restore",
    )


def test_destroyed_and_the_cloud_holds_nothing_of_vmgens(cli, cloud, names, launched) -> None:
    cli("destroy", names.main, "--yes")
    assert names.main not in cli("list").stdout
    assert not (cli.home / ".local/state/vmgen/workspaces" / names.main).exists()
    failed = cli("ssh", names.main, "--", "true", check=False)
    assert failed.returncode == 2 and "no workspace named" in failed.stderr
    assert cloud.resources(names.all) == {}
