"""End-to-end fixtures: the real Docker engine, the project-built VM image (and the run's baked
one), the scripted model API, and the real `vmgen` CLI as a subprocess. No wheel server: every
launch delivers the CLI's own vmgen build over SSH, as a user's laptop does."""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from filelock import FileLock

from tests.conftest import RUN_LABEL, RUN_VARIABLE
from tests.fakes.anthropic_api import FakeAnthropicServer, Script

from .cli_forks import VmgenForks

ROOT = Path(__file__).resolve().parents[2]
AGENT_VERSION = "2.1.332"  # pinned so that runs are reproducible
API_KEY = "test-key-not-real-0123456789"
# Workspace names on a Docker engine are global. Each run uses names of its own, so a machine
# where vmgen is in use keeps its workspaces, and two runs never meet (tests/conftest.py sets it).
RUN = os.environ.get(RUN_VARIABLE) or secrets.token_hex(2)


def unique(name: str) -> str:
    """A workspace name for this run: `slice` -> `slice-3fa9`."""
    return f"{name}-{RUN}"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    client = docker.from_env()
    client.ping()  # fails loudly: the test script starts dockerd
    return client


def this_vmgen():
    """The install of vmgen a launch by this source tree asks for (its own build)."""
    from vmgen.laptop.spec import VmgenInstall
    from vmgen.selfwheel import own_wheel

    wheel = own_wheel()
    return VmgenInstall(version=wheel.version, wheel_sha256=wheel.sha256)


@contextmanager
def run_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A folder shared by every xdist worker of this run, entered by one worker at a time: the
    first one makes what the folder should hold, the others find it made. Named after the run:
    without workers the base temp's parent is common to every run on the machine."""
    shared = tmp_path_factory.getbasetemp().parent / f"shared-{RUN}-{name}"
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared) + ".lock"):
        yield shared


@pytest.fixture(scope="session")
def stock_image(docker_client, tmp_path_factory) -> str:
    """The project's simulated-VM image (debootstrap), as an image of this run's own: its id is
    the base of whatever the run bakes, so no launch of a user's (whose base is the shared
    image) ever picks an image a test made, and the run removes it at the end."""
    with run_once(tmp_path_factory, "stock-image") as shared:
        made = shared / "image"
        if not made.exists():
            result = subprocess.run(
                ["bash", str(ROOT / "images/debian12-test/build.sh")], capture_output=True, text=True, check=True
            )
            base = result.stdout.strip().splitlines()[-1]
            container = docker_client.containers.create(base, command=["true"])
            try:
                container.commit(repository="vmgen-test-stock", tag=RUN, changes=[f"LABEL {RUN_LABEL}={RUN}"])
            finally:
                container.remove(force=True, v=True)
            made.write_text(f"vmgen-test-stock:{RUN}")
        return made.read_text()


@pytest.fixture(scope="session")
def vm_image(installed_image: str) -> str:
    """The image the `cli` fixture's launches boot: the installed one, unless a module (one that
    tests the cold path or bakes) puts another in its place."""
    return installed_image


@pytest.fixture(scope="session")
def installed_image(docker_client, stock_image, tmp_path_factory) -> str:
    """The stock image with this run's install steps baked in (packages, the pinned Claude
    Code, this very vmgen): launches skip them and take seconds. The cold path keeps its own
    tests (test_launch_variants, test_baked_images use `stock_image`)."""
    from vmgen.laptop.agents import AGENTS
    from vmgen.laptop.builder.install import workspace_plan
    from vmgen.laptop.providers.docker import DockerProvider
    from vmgen.laptop.providers.docker_bake import bake
    from vmgen.laptop.stamps import BAKED_LABEL
    from vmgen.selfwheel import own_wheel

    with run_once(tmp_path_factory, "baked-image") as shared:
        made = shared / "image"
        if not made.exists():
            plan = workspace_plan(
                AGENTS["claude"], AGENT_VERSION, this_vmgen(), desktop=False, domain="", code_ui_version=""
            )
            # Not "1" for the baked label: `vmgen image list` and launches never see this image.
            image = bake(
                DockerProvider(stock_image, docker_client),
                plan,
                own_wheel(),
                lambda message: None,
                labels={BAKED_LABEL: f"test-{RUN}", RUN_LABEL: RUN},
                repository=f"vmgen-test-baked-{RUN}",
                owner={},
            )
            made.write_text(image.ref)
        return made.read_text()


WEB_ZONE = "dev.example.com"  # the fake Cloudflare zone the web tests launch under


@pytest.fixture(scope="session")
def web_lite_image(installed_image, docker_client, tmp_path_factory) -> str:
    """The run's baked image plus Caddy and the desktop's packages, without the code UI
    (`code_ui_version = off`): for web tests that use no CloudCLI, which would otherwise wait for
    its minutes of installing."""
    return _web_bake("web-lite", "off", installed_image, docker_client, tmp_path_factory)


@pytest.fixture(scope="session")
def web_image(web_lite_image, docker_client, tmp_path_factory) -> str:
    """The lite image plus the code UI (the version a launch installs): what a workspace with a
    domain and a desktop installs, once here instead of in every launch. Baked on the lite image,
    whose stamps skip Caddy and the desktop's packages: the machine installs them once per run."""
    from vmgen.laptop.config import Settings

    return _web_bake("web", Settings.code_ui_version, web_lite_image, docker_client, tmp_path_factory)


def _web_bake(name: str, code_ui_version: str, base_image, docker_client, tmp_path_factory) -> str:
    from vmgen.laptop.agents import AGENTS
    from vmgen.laptop.builder.install import workspace_plan
    from vmgen.laptop.providers.docker import DockerProvider
    from vmgen.laptop.providers.docker_bake import bake
    from vmgen.laptop.stamps import BAKED_LABEL
    from vmgen.selfwheel import own_wheel

    with run_once(tmp_path_factory, f"{name}-image") as shared:
        made = shared / "image"
        if not made.exists():
            plan = workspace_plan(
                AGENTS["claude"],
                AGENT_VERSION,
                this_vmgen(),
                desktop=True,
                domain=WEB_ZONE,
                code_ui_version=code_ui_version,
            )
            image = bake(
                DockerProvider(base_image, docker_client),
                plan,
                own_wheel(),
                lambda message: None,
                labels={BAKED_LABEL: f"test-{RUN}", RUN_LABEL: RUN},
                repository=f"vmgen-test-{name}-{RUN}",
                owner={},
            )
            made.write_text(image.ref)
        return made.read_text()


@pytest.fixture(scope="module")
def web_cloud(cli, web_image):
    """The simulated Hetzner cloud booting the web image, with a fake Cloudflare zone, and the
    CLI set up to launch there with a domain."""
    yield from _web_cloud(cli, web_image)


@pytest.fixture(scope="module")
def web_lite_cloud(cli, web_lite_image):
    """The same with the lighter image, and launches without the code UI."""
    cli.env["VMGEN_CODE_UI_VERSION"] = "off"
    yield from _web_cloud(cli, web_lite_image)


def _web_cloud(cli, image):
    from tests.fakes.cloudflare import FakeCloudflare
    from tests.fakes.hetzner import FakeHetzner

    fake = FakeHetzner(image=image).start()
    dns = FakeCloudflare(zones=[WEB_ZONE], host="0.0.0.0", public_host=fake.gateway).start()
    cli.env.update(
        {
            "VMGEN_PROVIDER": "hetzner",
            "HCLOUD_TOKEN": "test-token",
            "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
            "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
            "VMGEN_DOMAIN": WEB_ZONE,
            "CLOUDFLARE_API_TOKEN": "test-token",
            "VMGEN_CLOUDFLARE_ENDPOINT": dns.endpoint,
            "VMGEN_WEB_TLS": "internal",
            "VMGEN_IDLE_ACTION": "delete",
            "VMGEN_IDLE_WARN_MINUTES": "0.25",
            "VMGEN_IDLE_INTERVAL_SECONDS": "2",
        }
    )
    yield fake, dns
    dns.stop()
    fake.stop()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="session")
def model() -> Iterator[FakeAnthropicServer]:
    server = FakeAnthropicServer(Script(rules=[]), host="0.0.0.0").start()
    yield server
    server.stop()


BATCH = ("-o", "BatchMode=yes", "-o", "LogLevel=ERROR")
FORKS = VmgenForks()


@pytest.fixture(scope="session", autouse=True)
def _forks_go_at_the_end() -> Iterator[None]:
    yield
    FORKS.close()


def mux_folder() -> Path:
    """Where this test process's shared SSH connections have their sockets (see Cli.ssh)."""
    return Path(tempfile.gettempdir()) / f"vmgen-mux-{os.getpid()}"


@dataclass
class Cli:
    env: dict[str, str]
    home: Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 900, input: str | None = None):
        if FORKS.usable(self.env):  # vmgen's own code in a fork that has its imports done (cli_forks.py)
            result = FORKS.run(list(args), self.env, self.home, input, timeout)
        else:
            result = subprocess.run(
                [sys.executable, "-m", "vmgen", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                cwd=self.home,
            )
        if check and result.returncode != 0:
            raise AssertionError(f"vmgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def ssh(self, name: str, command: str, check: bool = True) -> str:
        """A command on the workspace through the entry vmgen wrote for it in its ssh config (what
        a user's `ssh vmgen-<name>` does), without starting vmgen: the tests read the VM this way
        hundreds of times, often polling, and a vmgen start with its provider lookup costs half a
        second of CPU each on these two cores. Without an entry, through `vmgen ssh`."""
        from vmgen.laptop.state import ssh_alias

        config = self.home / ".ssh" / "vmgen" / "config"
        alias = ssh_alias(name)
        if not config.exists() or f"Host {alias}\n" not in config.read_text():
            return self(*["ssh", name, "--", command], check=check).stdout
        result = subprocess.run(
            ["ssh", "-F", str(config), *self._shared_connection(), *BATCH, "-T", alias, command],
            capture_output=True,
            text=True,
            timeout=900,  # as a vmgen command's: some reads wait on work (a `devcontainer up`)
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ssh {alias} {command!r} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def _shared_connection(self) -> list[str]:
        """Reads that follow each other within seconds (a poll) share one SSH connection: a new
        connection's handshake costs the laptop and the VM ~0.1 CPU-s, a session on an open one
        a tenth of that. Briefly (5 s after the last read), and kept alive by probes every 2 s,
        so a connection to a VM that stopped or went is given up within seconds, not reused."""
        folder = mux_folder()
        folder.mkdir(exist_ok=True)
        # A unix socket's path has room for ~104 bytes: %C is 40, and ssh first binds it with a
        # random suffix of 17 more (so not under pytest's long temporary folders).
        if len(f"{folder}/{'0' * 40}.{'0' * 16}") > 100:
            return []
        shared = ("ControlMaster=auto", f"ControlPath={folder}/%C", "ControlPersist=5")
        probes = ("ServerAliveInterval=2", "ServerAliveCountMax=3")
        return [word for option in (*shared, *probes) for word in ("-o", option)]


def make_home(base: Path) -> Path:
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh/id_ed25519")], check=True)
    return home


@pytest.fixture(scope="module")
def cli(tmp_path_factory, vm_image, model) -> Iterator[Cli]:
    home = make_home(tmp_path_factory.mktemp("cli"))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "VMGEN_DOCKER_IMAGE": vm_image,
        "VMGEN_AGENT_VERSION": AGENT_VERSION,
        # A launch on the simulated cloud would bake in the background by default (a build VM on
        # these 2 cores while other tests run): only the tests of auto_bake turn it on.
        "VMGEN_AUTO_BAKE": "no",
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": f"http://host.docker.internal:{model.port}",
        "PYTHONPATH": str(ROOT / "src"),
    }
    cli = Cli(env=env, home=home)
    yield cli
    # A test that failed midway must not leave its workspace behind for the next run.
    workspaces = home / ".local/state/vmgen/workspaces"
    for name in sorted(p.name for p in workspaces.iterdir()) if workspaces.is_dir() else ():
        cli("destroy", name, "--yes", check=False)
    shutil.rmtree(mux_folder(), ignore_errors=True)  # a shared connection outlives its socket by seconds


def make_repo(parent: Path, name: str) -> Path:
    repo = parent / name
    repo.mkdir()
    (repo / "README.md").write_text(f"# {name}\n")
    (repo / ".gitignore").write_text("secret.txt\nbuild/\n")
    (repo / "secret.txt").write_text("ignored by git, must not be uploaded\n")
    (repo / "notes.txt").write_text("untracked but not ignored: uploaded\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "README.md", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-qm", "initial"], check=True)
    return repo
