"""The launch orchestrator without a VM: an in-memory provider and a scripted workspace client.
What is created is removed on any failure (an interrupt too, and a second Ctrl-C does not cut
that short) unless kept on purpose; nothing is deleted that this launch did not create; what an
earlier workspace left behind is refused; a restore happens before the handover; the agent and
the watchdog's first verdict are waited for; the user-data passes the real `cloud-init schema`."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmgen.contract.documents import (
    AgentRecord,
    BackupResult,
    BackupTarget,
    RestoreResult,
    VerdictRecord,
    WatchdogState,
)
from vmgen.contract.enums import StoreKind, WorkspaceStatus
from vmgen.errors import (
    BootFailed,
    DevcontainerFailed,
    LeftoversExist,
    NameBusy,
    RestoreFailed,
    UsageError,
    WorkspaceExists,
)
from vmgen.laptop.agents import Agent
from vmgen.laptop.builder.install import InstallPlan
from vmgen.laptop.builder.render import written_files
from vmgen.laptop.config import Settings
from vmgen.laptop.handover import Handover
from vmgen.laptop.identities import ensure_identity, has_identity
from vmgen.laptop.launch import LaunchOptions, LaunchResult, launch
from vmgen.laptop.providers.base import BakeOptions, KeptDisk, Leftover, SelfDelete, Size, Workspace
from vmgen.laptop.readiness import Phase
from vmgen.laptop.spec import (
    DevcontainerSpec,
    GitSource,
    RestoreSource,
    VmgenInstall,
    WatchdogTuning,
    WebSpec,
    WorkspaceSpec,
    make_spec,
)
from vmgen.laptop.ssh import SSHTarget
from vmgen.laptop.stamps import BakedImage, ImageStamp
from vmgen.laptop.state import WorkspaceState, busy_with, name_lock
from vmgen.selfwheel import VmgenWheel, own_wheel

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0Kj t@l"


@dataclass
class FakeProvider:
    """The Provider protocol in memory; records what it was asked."""

    name: str = "fake"
    public: bool = False
    user_data_limit: int = 1 << 20
    auto_bakes: bool = False
    shares_local_folders: bool = False
    servers: dict[str, Workspace] = field(default_factory=dict)
    user_data: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    baked: BakedImage | None = None
    fail_create: BaseException | None = None
    left: dict[str, str] = field(default_factory=dict)  # name -> what an earlier workspace left
    interrupt_delete: bool = False  # a Ctrl-C arrives while deleting
    # The rest of the Provider protocol's traits: a launch reads none of them.
    stop_bills: bool = False
    snapshots: bool = False
    metadata_address: str = ""
    price_source: str = ""
    currency: str = ""
    bake_methods: tuple[str, ...] = ()
    secret_variables: tuple[str, ...] = ()
    host_setting: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeProvider:
        raise AssertionError("the tests make their provider themselves")

    @classmethod
    def configured_image(cls, settings: Settings) -> str:
        raise AssertionError("the tests name no image in settings")

    def check(self, spec: WorkspaceSpec) -> None:
        if spec.size == "huge":
            raise UsageError("fake has no size 'huge'")

    def create(self, spec: WorkspaceSpec, user_data: str) -> Workspace:
        if self.fail_create is not None:
            raise self.fail_create
        self.user_data[spec.name] = user_data
        made = Workspace(spec.name, self.name, WorkspaceStatus.RUNNING, datetime.now(UTC), None, address="203.0.113.7")
        self.servers[spec.name] = made
        return made

    def get(self, name: str) -> Workspace | None:
        return self.servers.get(name)

    def workspaces(self) -> list[Workspace]:
        return list(self.servers.values())

    def start(self, name: str) -> Workspace:
        return self.servers[name]

    def stop(self, name: str) -> Workspace:
        return self.servers[name]

    def delete(self, name: str) -> str | None:
        if self.interrupt_delete:
            os.kill(os.getpid(), signal.SIGINT)  # delivered here, in the middle of the cleanup
        self.deleted.append(name)
        self.servers.pop(name, None)
        self.left.pop(name, None)
        return None

    def leftovers(self, name: str | None = None) -> list[Leftover]:
        return [Leftover(n, what) for n, what in self.left.items() if name in (None, n)]

    def kept_disks(self, name: str | None = None) -> list[KeptDisk]:
        raise AssertionError("a launch reads no kept disk")

    def restore_kept(self, name: str, snapshot: str, ssh_public_key: str, user_data: str) -> Workspace:
        raise AssertionError("a launch restores no kept disk")

    def remove_kept(self, snapshot: str) -> None:
        raise AssertionError("a launch removes no kept disk")

    def remove_baked(self, image: BakedImage) -> None:
        raise AssertionError("a launch removes no image")

    def self_delete_spec(self) -> SelfDelete:
        return SelfDelete(provider="docker")

    def baked_images(self, base: str | None = None) -> list[BakedImage]:
        return [self.baked] if self.baked else []

    def newest_baked(self, spec: WorkspaceSpec | None = None) -> BakedImage | None:
        return self.baked

    def stop_note(self) -> str:
        return ""

    def image_cost_note(self) -> str:
        return "nothing"

    def bake(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], options: BakeOptions
    ) -> BakedImage | None:
        raise AssertionError("a launch bakes nothing itself")

    def price_hourly(self, spec: WorkspaceSpec) -> float | None:
        raise AssertionError("a launch prices nothing")

    def sizes(self, location: str | None = None) -> list[Size]:
        raise AssertionError("a launch lists no sizes")


@dataclass
class ScriptedClient:
    """A workspace that boots as scripted: each step is recorded, any may fail."""

    calls: list[str] = field(default_factory=list)
    fail_at: str = ""
    failure: BaseException = field(default_factory=lambda: BootFailed("cloud-init status: error"))
    handover: Handover | None = None
    delivered: VmgenWheel | None = None
    conversation: bool = True  # a restored agent finds a conversation to resume

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            raise self.failure

    def wait_until_reachable(self, timeout: float, progress: Callable[[str], None]) -> None:
        self._step("reachable")

    def follow_boot(self, timeout: float, progress: Callable[[str], None]) -> list[Phase]:
        self._step("boot")
        return [Phase("packages", 1.0), Phase("done", 2.0)]

    def deliver_wheel(self, wheel: VmgenWheel) -> None:
        self.delivered = wheel
        self._step("wheel")

    def hand_over(self, handover: Handover) -> None:
        self.handover = handover
        self._step("handover")

    def wait_for_agent(self, timeout: float, progress: Callable[[str], None]) -> None:
        self._step("agent")

    def has_conversation(self, agent: Agent, repo_dir: str) -> bool:
        self._step("conversation")
        return self.conversation

    def first_verdict(self, timeout: float, agent_watched: bool) -> WatchdogState:
        self._step("verdict")
        return WATCHING

    def restore(self, identity: str, progress: Callable[[str], None], timeout: float) -> RestoreResult:
        self._step("restore")
        return RestoreResult(ok=True, backup_id="20261202T120000Z-ab12")

    def backup(self, progress: Callable[[str], None]) -> BackupResult:  # not part of a launch
        raise AssertionError("a launch never backs up")

    def status(self, fresh: bool = False, timeout: float = 120) -> WatchdogState:
        raise AssertionError("a launch waits for the first verdict, it does not read the status")

    def keepalive(self, duration: str, reason: str) -> str:
        raise AssertionError("a launch sets no lease")

    def desktop_password(self) -> str:
        raise AssertionError("a launch reads no desktop password")


WHEEL = own_wheel()
STORE = BackupTarget(kind=StoreKind.LOCAL, path="/var/lib/vmgen/backups")
WATCHING = WatchdogState(
    boot_id="b",
    history={},
    verdict=VerdictRecord(
        busy=False,
        reasons=(),
        idle_since=0,
        idle_for_seconds=0,
        next_action="none",
        action_at=1800,
        deadline=1800,
        action="poweroff",
    ),
    agent=AgentRecord("waiting"),
    updated_at=1,
)


def spec_for(home: Path, source: str | RestoreSource | None = None, **changes: Any) -> WorkspaceSpec:
    choices = {
        "name": "app",
        "agent": "claude",
        "agent_version": "2.1.332",
        "size": "medium",
        "region": "",
        "image": "",
        "watchdog": WatchdogTuning(idle_minutes=30),
        "desktop": False,
        "configured_keys": (KEY,),
        "home": home,
        "vmgen": VmgenInstall(version=WHEEL.version, wheel_sha256=WHEEL.sha256),
    }
    return make_spec(source or "https://example.com/me/app.git", **{**choices, **changes})


def run_launch(
    spec: WorkspaceSpec, provider: FakeProvider, client: ScriptedClient, **options: Any
) -> tuple[LaunchResult, list[str]]:
    messages: list[str] = []
    made_for: list[str] = []

    def client_for(name: str, find_target: Callable[[], SSHTarget | None]) -> ScriptedClient:
        made_for.append(name)
        return client

    # The source check has tests of its own, against a real git server (test_sourcecheck.py).
    options = {"check_source": False, **options}
    result = launch(
        spec,
        provider,
        LaunchOptions(agent_env={"ANTHROPIC_API_KEY": "test-key"}, **options),
        messages.append,
        client_for,
    )
    assert made_for == [spec.name]
    return result, messages


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


def test_a_launch_boots_hands_over_and_waits_for_the_agent(home, provider) -> None:
    client = ScriptedClient()
    result, messages = run_launch(spec_for(home), provider, client)
    assert client.calls == ["reachable", "wheel", "boot", "handover", "agent", "verdict"]
    assert client.delivered == WHEEL  # and the VM checks it:
    assert WHEEL.sha256 in "".join(written_files(provider.user_data["app"]).values())
    assert result.verdict == WATCHING  # "ready" comes with the watchdog's view of the running agent
    assert client.handover is not None and client.handover.agent_env == {"ANTHROPIC_API_KEY": "test-key"}
    assert client.handover.approve_claude_api_key == "test-key"
    assert result.workspace.name == "app" and [p.name for p in result.phases] == ["packages", "done"]
    assert set(result.timings) >= {"render", "create", "ssh", "cloud_init", "handover", "agent"}
    # What reached the provider is valid cloud-config that carries no credential.
    config = yaml.safe_load(provider.user_data["app"])
    assert config["users"][0]["name"] == "agent" and "test-key" not in provider.user_data["app"]
    state = WorkspaceState("app")
    assert state.exists() and state.known_hosts.read_text().startswith("vmgen-app ssh-ed25519 ")
    assert "creating the workspace on fake" in messages


@pytest.mark.parametrize("step", ["reachable", "wheel", "boot", "handover", "agent", "verdict"])
def test_a_failed_boot_removes_the_workspace_and_its_state(home, provider, step) -> None:
    client = ScriptedClient(fail_at=step)
    with pytest.raises(BootFailed):
        run_launch(spec_for(home), provider, client)
    assert provider.deleted == ["app"] and not WorkspaceState("app").exists()


def test_an_interrupt_cleans_up_too(home, provider) -> None:
    client = ScriptedClient(fail_at="boot", failure=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_launch(spec_for(home), provider, client)
    assert provider.deleted == ["app"] and not WorkspaceState("app").exists()


def test_keep_on_failure_keeps_the_workspace_and_its_state(home, provider) -> None:
    with pytest.raises(BootFailed):
        run_launch(spec_for(home), provider, ScriptedClient(fail_at="boot"), keep_on_failure=True)
    assert provider.deleted == [] and "app" in provider.servers and WorkspaceState("app").exists()


def test_a_create_that_fails_deletes_nothing_by_name(home, provider) -> None:
    # Nothing of this launch exists under the name: deleting it could hit someone else's.
    provider.fail_create = BootFailed("quota")
    with pytest.raises(BootFailed, match="quota"):
        run_launch(spec_for(home), provider, ScriptedClient())
    assert provider.deleted == [] and not WorkspaceState("app").exists()


def test_a_taken_name_is_refused_before_anything_is_made(home, provider) -> None:
    provider.servers["app"] = Workspace("app", "fake", WorkspaceStatus.RUNNING, datetime.now(UTC), None)
    with pytest.raises(WorkspaceExists):
        run_launch(spec_for(home), provider, ScriptedClient())
    assert provider.user_data == {} and provider.deleted == []


def test_a_restore_comes_before_the_handover_and_its_failure_cleans_up(home, provider) -> None:
    spec = spec_for(home, source=RestoreSource("app", ""))
    client = ScriptedClient()
    run_launch(spec, provider, client, restore_identity="AGE-SECRET-KEY-1TEST\n")
    assert client.calls == ["reachable", "wheel", "boot", "restore", "handover", "agent", "conversation", "verdict"]
    assert "AGE-SECRET-KEY" not in provider.user_data["app"]  # the identity never travels in user-data
    provider.servers.clear()
    WorkspaceState("app").remove()
    failing = ScriptedClient(fail_at="restore", failure=RestoreFailed("restore failed: damaged"))
    with pytest.raises(RestoreFailed):
        run_launch(spec, provider, failing, restore_identity="AGE-SECRET-KEY-1TEST\n")
    assert "handover" not in failing.calls and provider.deleted == ["app"]


def test_a_baked_image_is_used_unless_told_not_to(home, provider) -> None:
    stamp = ImageStamp(packages="x", agent="claude-2.1.332", vmgen="0.1.0")
    provider.baked = BakedImage(
        ref="sha256:baked", name="vmgen-baked:x", created_at=datetime.now(UTC), stamp=stamp, base=""
    )
    assert run_launch(spec_for(home), provider, ScriptedClient())[0].image == "sha256:baked"
    provider.servers.clear()
    WorkspaceState("app").remove()
    assert run_launch(spec_for(home), provider, ScriptedClient(), use_baked=False)[0].image == ""


def test_a_wheel_that_is_not_the_rendered_build_is_refused_before_anything_is_made(home, provider) -> None:
    other = VmgenInstall(version=WHEEL.version, wheel_sha256="0" * 64)
    with pytest.raises(UsageError, match="not the one the workspace spec names"):
        run_launch(spec_for(home, vmgen=other), provider, ScriptedClient())
    assert provider.user_data == {}


def test_a_domain_needs_a_public_provider(home, provider) -> None:
    spec = spec_for(home, web=WebSpec(domain="dev.example.com"))
    with pytest.raises(UsageError, match="no public address"):
        run_launch(spec, provider, ScriptedClient())
    assert provider.user_data == {}


def test_a_git_source_is_cloned_on_the_vm_not_uploaded(home, provider) -> None:
    client = ScriptedClient()
    run_launch(spec_for(home, source="https://example.com/me/app.git#dev"), provider, client)
    assert client.handover is not None and client.handover.upload_from is None
    assert isinstance(spec_for(home).source, GitSource)


def test_a_second_interrupt_does_not_cut_the_cleanup_short(home, provider, capfd) -> None:
    # The first Ctrl-C stops the launch; the second one arrives while its volume and state are
    # being removed, and is answered with a line instead of leaving half of them behind.
    provider.interrupt_delete = True
    client = ScriptedClient(fail_at="boot", failure=KeyboardInterrupt())
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        launch(
            spec_for(home),
            provider,
            LaunchOptions(agent_env={}, backup=STORE, check_source=False),
            messages.append,
            lambda name, find: client,
        )
    assert provider.deleted == ["app"] and not WorkspaceState("app").any_left()
    assert not has_identity("app")  # it never came up: nothing was encrypted to its identity
    assert "still removing what was created" in capfd.readouterr().err


def test_what_an_earlier_workspace_left_is_refused_with_the_command_that_removes_it(home, provider) -> None:
    provider.left["app"] = "volume vmgen-app-home"
    with pytest.raises(LeftoversExist, match=r"volume vmgen-app-home.*`vmgen destroy app`"):
        run_launch(spec_for(home), provider, ScriptedClient())
    assert provider.user_data == {} and provider.deleted == []
    provider.left.clear()
    WorkspaceState("app").dir.mkdir(parents=True)  # local state whose workspace is gone
    with pytest.raises(LeftoversExist, match="local state"):
        run_launch(spec_for(home), provider, ScriptedClient())
    assert provider.user_data == {}


def test_a_launch_cut_short_is_refused_but_a_workspace_that_came_up_and_is_gone_is_replaced(home, provider) -> None:
    # Killed before it came up (kill -9: no cleanup ran): its record says so.
    with pytest.raises(BootFailed):
        run_launch(spec_for(home), provider, ScriptedClient(fail_at="boot"), keep_on_failure=True)
    provider.servers.clear()
    with pytest.raises(LeftoversExist, match="local state"):
        run_launch(spec_for(home), provider, ScriptedClient())
    WorkspaceState("app").remove()
    # Came up, then backed up and deleted itself: launching (or restoring) that name is the way back.
    run_launch(spec_for(home), provider, ScriptedClient(), web_login=None)
    WorkspaceState("app").write("web-login", "vmgen\nold-password\n")
    provider.servers.clear()
    result, _ = run_launch(spec_for(home), provider, ScriptedClient())
    assert result.workspace.name == "app" and not WorkspaceState("app").has("web-login")  # nothing of the old one


def test_a_record_of_the_name_on_another_provider_is_refused(home, provider) -> None:
    run_launch(spec_for(home), provider, ScriptedClient())
    provider.servers.clear()
    provider.name = "elsewhere"
    with pytest.raises(LeftoversExist, match="a record of it on fake"):
        run_launch(spec_for(home), provider, ScriptedClient())


@pytest.mark.parametrize("outcome", ["fails", "refused", "comes up"])
def test_an_identity_made_for_the_launch_goes_only_if_the_workspace_never_came_up(home, provider, outcome) -> None:
    if outcome == "refused":
        provider.left["app"] = "volume vmgen-app-home"
    client = ScriptedClient(fail_at="handover" if outcome == "fails" else "")
    try:
        run_launch(spec_for(home), provider, client, backup=STORE)
    except (BootFailed, LeftoversExist):
        pass
    else:  # the VM got the recipient of the identity made for it
        assert (home / ".local/state/vmgen/identities/app.recipient").read_text().strip() in provider.user_data["app"]
    assert has_identity("app") == (outcome == "comes up")
    assert not WorkspaceState("app").has(WorkspaceState.NEW_IDENTITY)  # up: the identity is for keeps


def test_an_identity_that_existed_before_the_launch_is_kept(home, provider) -> None:
    recipient = ensure_identity("app")  # an earlier workspace's: its backups need it
    with pytest.raises(BootFailed):
        run_launch(spec_for(home), provider, ScriptedClient(fail_at="boot"), backup=STORE)
    assert has_identity("app") and recipient in provider.user_data["app"]


# --- issue 25: one launch per name; checks before anything is made ----------------------------


def test_a_second_launch_of_a_name_being_launched_is_refused_and_touches_nothing_of_the_first(home, provider) -> None:
    # The first launch holds the name (its record, pinned host key and identity are made).
    with pytest.raises(BootFailed):
        run_launch(spec_for(home), provider, ScriptedClient(fail_at="boot"), keep_on_failure=True, backup=STORE)
    first = WorkspaceState("app")
    pinned, recipient = first.known_hosts.read_text(), (home / ".local/state/vmgen/identities/app.recipient")
    provider.servers.clear()  # as if the first had not created its workspace yet
    with name_lock("app", "launching"):
        with pytest.raises(NameBusy, match=f"pid {os.getpid()}, launching"):
            run_launch(spec_for(home), provider, ScriptedClient(), backup=STORE)
        assert busy_with("app") == "launching"
    assert first.known_hosts.read_text() == pinned and recipient.is_file() and has_identity("app")
    assert busy_with("app") == ""


def test_a_workspace_whose_launch_was_killed_is_a_leftover_with_the_command_that_removes_it(home, provider) -> None:
    # kill -9 mid-boot: the workspace runs, its record still says it was being launched.
    with pytest.raises(BootFailed):
        run_launch(spec_for(home), provider, ScriptedClient(fail_at="boot"), keep_on_failure=True)
    assert "app" in provider.servers
    with pytest.raises(LeftoversExist, match=r"cut short.*`vmgen destroy app`"):
        run_launch(spec_for(home), provider, ScriptedClient())
    assert provider.deleted == []


def test_checks_come_before_anything_is_made_and_warnings_after_them(home, provider) -> None:
    told: list[str] = []
    with pytest.raises(UsageError, match="no size 'huge'"):
        launch(
            spec_for(home, size="huge"),
            provider,
            LaunchOptions(agent_env={}, check_source=False),
            told.append,
            lambda name, find: ScriptedClient(),
            checked=lambda: told.append("warned"),
        )
    assert "warned" not in told and provider.user_data == {} and not WorkspaceState("app").any_left()
    launch(
        spec_for(home),
        provider,
        LaunchOptions(agent_env={}, check_source=False),
        told.append,
        lambda name, find: ScriptedClient(),
        checked=lambda: told.append("warned"),
    )
    assert told.index("warned") < told.index("creating the workspace on fake")


@pytest.mark.parametrize("had_one", [True, False])
def test_a_restore_says_whether_the_agent_had_a_conversation_to_resume(home, provider, had_one) -> None:
    result, _ = run_launch(
        spec_for(home, source=RestoreSource("app", "")),
        provider,
        ScriptedClient(conversation=had_one),
        restore_identity="AGE-SECRET-KEY-1TEST\n",
    )
    assert result.resumed is had_one


def test_a_restore_says_its_step_once(home, provider) -> None:
    _, messages = run_launch(
        spec_for(home, source=RestoreSource("app", "")),
        provider,
        ScriptedClient(),
        restore_identity="AGE-SECRET-KEY-1TEST\n",
    )
    assert [m for m in messages if "restor" in m] == ["restored backup 20261202T120000Z-ab12"]


def test_previews_on_a_preview_domain_get_records_in_its_zone_that_go_with_a_failed_launch(home) -> None:
    from tests.fakes.cloudflare import FakeCloudflare
    from vmgen.dns import CloudflareDns
    from vmgen.laptop.caddy import new_login

    public = FakeProvider(public=True)
    web = WebSpec(domain="dev.example.com", preview_domain="previews.example.net")
    with FakeCloudflare(zones=["dev.example.com", "previews.example.net"]) as cf:

        def zones():
            return CloudflareDns("test-token", "dev.example.com", cf.endpoint), CloudflareDns(
                "test-token", "previews.example.net", cf.endpoint
            )

        dns, preview_dns = zones()
        run_launch(
            spec_for(home, web=web), public, ScriptedClient(), web_login=new_login(), dns=dns, preview_dns=preview_dns
        )
        assert {r["name"] for r in cf.records("previews.example.net")} == {
            "app.previews.example.net",
            "*.app.previews.example.net",
        }
        record = WorkspaceState("app").record()
        assert record is not None and record.preview_host == "app.previews.example.net"
        watch = written_files(public.user_data["app"])["/etc/vmgen/idlewatch.toml"]
        assert 'preview_dns_zone = "previews.example.net"' in watch  # the self-delete removes them too
        public.servers.clear()
        WorkspaceState("app").remove()
        dns, preview_dns = zones()
        with pytest.raises(BootFailed):
            run_launch(
                spec_for(home, web=web),
                public,
                ScriptedClient(fail_at="boot"),
                web_login=new_login(),
                dns=dns,
                preview_dns=preview_dns,
            )
        assert cf.records("previews.example.net") == [] and cf.records("dev.example.com") == []


def test_the_launch_keeps_the_budget_key_root_gets(home, provider) -> None:
    """The key `vmgen start` signs a new share of the budget with: the same here and in root's
    secrets file on the VM, and in nothing else the VM gets."""
    from vmgen.contract.budgetgrant import BUDGET_KEY_VARIABLE

    run_launch(spec_for(home), provider, ScriptedClient())
    key = WorkspaceState("app").budget_key()
    assert len(key) == 64
    files = written_files(provider.user_data["app"])
    assert f"{BUDGET_KEY_VARIABLE}={key}\n" in files["/etc/vmgen/provider.env"]
    assert [path for path, content in files.items() if key in content] == ["/etc/vmgen/provider.env"]
    assert (WorkspaceState("app").dir / WorkspaceState.BUDGET_KEY).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("keep", [False, True])
def test_a_dev_container_that_fails_to_come_up_fails_the_launch_as_a_boot_does(home, provider, keep) -> None:
    """The handover brings the dev container up before the agent starts: its failure (one
    DevcontainerFailed with the tail) removes the workspace, or keeps it with --keep-on-failure."""
    spec = replace(spec_for(home), devcontainer=DevcontainerSpec(".devcontainer/devcontainer.json"))
    failure = DevcontainerFailed("the dev container did not come up: postCreateCommand from devcontainer.json failed")
    client = ScriptedClient(fail_at="handover", failure=failure)
    with pytest.raises(DevcontainerFailed):
        run_launch(spec, provider, client, keep_on_failure=keep)
    assert client.handover is not None and client.handover.devcontainer
    assert client.calls[-1] == "handover"  # the agent was never waited for
    assert (provider.deleted == []) is keep and WorkspaceState("app").exists() is keep
