"""The provider contract every registered provider passes unchanged, without booting anything:
its traits declared as the Provider protocol names them, its VM-side half registered and agreeing
with it, its sizes priced from its price source, and the answers a user sees for what does not
exist (a name, a size, a token). And the rule that makes a new cloud one package and a registry
line: no module outside the providers' packages names a provider or its secret variable.

The lifecycle on booted workspaces (refusals, a cloud-init failure, a local folder, then one
workspace from launch through stop, start, backup, idle self-delete and restore to destroy, and a
cloud left with nothing of vmgen's) is the e2e half of the contract: tests/e2e/provider_contract.py,
run unchanged per provider by tests/e2e/test_contract_<provider>.py."""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.aws import FakeAws
from tests.fakes.hetzner import FakeHetzner
from tests.ssh_server import Server, ssh_server
from vmgen.errors import ProviderAuthError, UsageError
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.config import Settings
from vmgen.laptop.providers import PROVIDERS, REGISTRY, Provider, get_provider, provider_class, redacted_self_delete
from vmgen.laptop.spec import GitSource, VmgenInstall, WorkspaceSpec
from vmgen.vmside.providers import REGISTRY as VM_REGISTRY, vm_provider

SRC = Path(__file__).resolve().parents[3] / "src" / "vmgen"
TRAITS = dict(Provider.__annotations__)
OPERATIONS = sorted(
    name
    for name, member in vars(Provider).items()
    if callable(member) or isinstance(member, classmethod)
    if not name.startswith("_")
)
IMAGE = os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlq tester@laptop"


def spec(name: str, size: str = "medium") -> WorkspaceSpec:
    return WorkspaceSpec(
        name=name,
        source=GitSource("https://example.com/app"),
        agent=AGENTS["claude"],
        vmgen=VmgenInstall(version="0.0.0", find_links="http://wheels.example:8080/"),
        ssh_keys=(PUBKEY,),
        size=size,
        region="fsn1",
    )


@pytest.fixture(scope="module")
def ssh_server_here(tmp_path_factory) -> Iterator[Server]:
    with ssh_server(tmp_path_factory.mktemp("server")) as server:
        yield server


@pytest.fixture(params=PROVIDERS)
def provider(request, home) -> Iterator[Provider]:
    """Each registered provider on its simulated cloud, made from the settings as `vmgen` makes it."""
    if request.param == "hetzner":
        with FakeHetzner(boot=False) as cloud:
            yield get_provider(
                "hetzner", Settings(hcloud_token=cloud.token, region="fsn1", hcloud_endpoint=cloud.api_endpoint)
            )
    elif request.param == "aws":
        with FakeAws() as aws:
            monkeypatch = request.getfixturevalue("monkeypatch")
            for variable, value in aws.environment().items():
                monkeypatch.setenv(variable, value)
            yield get_provider("aws", Settings())
    elif request.param == "ssh":
        # A server of the user's: a real sshd in front of this machine's engine (tests/ssh_server.py).
        server = request.getfixturevalue("ssh_server_here")
        request.getfixturevalue("monkeypatch").setenv("PATH", server.path(os.environ["PATH"]))
        yield get_provider("ssh", Settings(docker_image=IMAGE, ssh_host=server.host))
    else:
        yield get_provider(request.param, Settings(docker_image=IMAGE))


@pytest.mark.parametrize("name", PROVIDERS)
def test_each_provider_declares_every_trait_and_operation_of_the_protocol(name: str) -> None:
    cls = provider_class(name)
    assert cls.name == name
    for trait, kind in TRAITS.items():
        value = getattr(cls, trait)  # on the class: known without contacting the provider
        expected = {"str": str, "int": int, "bool": bool, "tuple[str, ...]": tuple}[kind]
        assert isinstance(value, expected), f"{name}.{trait} is {value!r}, not {kind}"
    missing = [op for op in OPERATIONS if not callable(getattr(cls, op, None))]
    assert missing == []
    assert cls.user_data_limit >= 16 * 1024 and cls.price_source


@pytest.mark.parametrize("name", PROVIDERS)
def test_the_vm_side_half_is_registered_and_agrees(name: str) -> None:
    assert REGISTRY.keys() == VM_REGISTRY.keys()
    laptop, vm = provider_class(name), vm_provider(name)
    assert vm.snapshots == laptop.snapshots
    # A server that bills while off is said so whenever the VM leaves one powered off.
    assert bool(vm.stop_note) == laptop.stop_bills
    assert [variable for variable, _ in redacted_self_delete(name).secrets] == list(laptop.secret_variables)


def test_an_unknown_provider_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="unknown provider 'nimbus'; available: aws, docker, hetzner, ssh"):
        provider_class("nimbus")


def test_sizes_carry_prices_from_the_price_source(provider: Provider) -> None:
    sizes = provider.sizes("fsn1" if provider.name == "hetzner" else None)
    assert sizes and all(s.price_hourly is not None and s.price_hourly >= 0 for s in sizes)
    assert {"small", "medium", "large"} <= {s.preset for s in sizes}
    if not provider.public:  # a local engine bills nothing
        assert {s.price_hourly for s in sizes} == {0.0}


def test_what_does_not_exist_is_none_or_refused(provider: Provider) -> None:
    assert provider.get("vmgen-contract-nobody") is None
    assert all(w.name != "vmgen-contract-nobody" for w in provider.workspaces())
    assert provider.leftovers("vmgen-contract-nobody") == []
    assert provider.kept_disks("vmgen-contract-nobody") == []
    with pytest.raises(UsageError):
        provider.check(spec("vmgen-contract-nobody", size="no-such-size-99"))
    self_delete = provider.self_delete_spec()
    assert self_delete.provider == provider.name
    assert [variable for variable, _ in self_delete.secrets] == list(provider.secret_variables)
    assert provider.stop_note()


def test_bad_aws_credentials_are_an_auth_error_before_anything_is_made(home, monkeypatch) -> None:
    with FakeAws() as cloud:
        for variable, value in cloud.environment().items():
            monkeypatch.setenv(variable, value)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-wrong-key")
        with pytest.raises(ProviderAuthError):
            get_provider("aws", Settings()).workspaces()


def test_a_bad_token_is_an_auth_error_before_anything_is_made(home) -> None:
    with FakeHetzner(boot=False) as cloud:
        bad = get_provider(
            "hetzner", Settings(hcloud_token="test-wrong-token", region="fsn1", hcloud_endpoint=cloud.api_endpoint)
        )
        with pytest.raises(ProviderAuthError):
            bad.workspaces()
        assert not cloud.state.servers


# --- what a new provider does not have to touch --------------------------------------------------

PROVIDER_PACKAGES = ("laptop/providers/", "vmside/providers/")
# Where the user's settings are read: the settings' names (hcloud_token, docker_image) stay until
# providers declare their own settings (the settings' declaration is issue 30's).
SETTINGS_MODULES = ("laptop/config.py", "contract/documents.py", "laptop/packer/")
# "aws" as a word, in lower case: S3's own home ("AWS", the backup store's) is not the provider.
# The ssh provider's name is also the program's (laptop/ssh.py runs `ssh`): its setting and
# class are what name it.
NAMES = re.compile(r"(?i:docker|hetzner|hcloud|HCLOUD_TOKEN|\bec2\b)|\baws\b|\bssh_host\b|SshProvider")
DISPATCH = re.compile(r"isinstance\([^)]*Provider\)|getattr\(provider|provider(\.name)? [!=]= \"")


def outside_the_providers() -> list[Path]:
    return [
        path
        for path in sorted(SRC.rglob("*.py"))
        if not str(path.relative_to(SRC)).startswith(PROVIDER_PACKAGES + SETTINGS_MODULES)
    ]


def code_tokens(source: str) -> list[tokenize.TokenInfo]:
    """Names and strings that are code: comments and docstrings (a bare string statement, which
    may give a provider as an example) left out."""
    docstrings = {
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    return [
        token
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type in (tokenize.NAME, tokenize.STRING) and token.start[0] not in docstrings
    ]


def test_no_module_outside_the_providers_names_one_or_picks_behaviour_by_provider() -> None:
    found = []
    for path in outside_the_providers():
        source = path.read_text()
        found += [
            f"{path.relative_to(SRC)}:{t.start[0]}: {t.string}" for t in code_tokens(source) if NAMES.search(t.string)
        ]
        found += [f"{path.relative_to(SRC)}: {line.strip()}" for line in source.splitlines() if DISPATCH.search(line)]
    assert found == []


def test_the_check_above_finds_what_it_looks_for() -> None:
    """It would pass on nothing: the old CLI's isinstance and launch's getattr are what it catches."""
    assert DISPATCH.search("    if isinstance(chosen, HetznerProvider):")
    assert DISPATCH.search('    if not getattr(provider, "shares_local_folders", False):')
    assert DISPATCH.search('    if spec.host and provider == "docker":')
    tokens = [
        t.string for t in code_tokens('"""Docker, in a docstring."""\nx = secrets.get("HCLOUD_TOKEN")  # hetzner\n')
    ]
    assert [t for t in tokens if NAMES.search(t)] == ['"HCLOUD_TOKEN"']
    assert NAMES.search("settings.ssh_host") and not NAMES.search('["ssh", "-p", port]')
