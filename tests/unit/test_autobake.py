"""auto_bake, the parts without a VM: when it bakes, that the background build bakes exactly the
launch's install plan, and that one plan is never baked twice at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes.hetzner import FakeHetzner
from vmgen.errors import ConfigError
from vmgen.laptop.autobake import has_image_for, plan_key, plan_lock, plan_settings, wanted
from vmgen.laptop.builder.install import plan_of
from vmgen.laptop.cli.images import current_plan
from vmgen.laptop.config import load_settings
from vmgen.laptop.providers import auto_bakes
from vmgen.laptop.providers.docker import DockerProvider
from vmgen.laptop.providers.hetzner import HetznerProvider
from vmgen.laptop.spec import WebSpec
from vmgen.laptop.stamps import BakedImage

from .test_launch import FakeProvider, spec_for


def spec_with(home, domain: str = "", **changes):
    return spec_for(home, web=WebSpec(domain=domain), **changes) if domain else spec_for(home, **changes)


@pytest.mark.parametrize(
    ("setting", "cloud", "expected"),
    [
        ("auto", True, True),
        ("auto", False, False),
        ("yes", False, True),
        ("no", True, False),
        ("OFF", True, False),
    ],
)
def test_auto_bakes_on_clouds_unless_told(setting, cloud, expected) -> None:
    provider = FakeProvider()
    provider.auto_bakes = cloud
    assert wanted(setting, provider) is expected


def test_a_wrong_setting_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"auto_bake.*'sometimes'.*auto, yes or no"):
        wanted("sometimes", FakeProvider())


def test_the_providers_defaults() -> None:
    assert auto_bakes("hetzner") and not auto_bakes("docker")  # what `vmgen config show` says "auto" means
    assert HetznerProvider.auto_bakes and not DockerProvider.auto_bakes


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"desktop": True},
        {"agent_version": "2.1.400"},
        {"domain": "dev.example.com"},
    ],
)
def test_the_background_build_bakes_exactly_the_launchs_plan(home, changes) -> None:
    # The launch's command line may differ from the configuration: the build reads the launch's choices.
    spec = spec_with(home, **changes)
    built = current_plan(load_settings(environ={**plan_settings(spec)}))
    # vmgen's own build is the same process's: only the steps the settings choose can differ.
    assert built.stamp.agent == plan_of(spec).stamp.agent
    assert built.stamp.packages == plan_of(spec).stamp.packages
    assert built.stamp.code_ui == plan_of(spec).stamp.code_ui


def test_an_image_with_every_step_is_enough_and_one_with_an_older_step_is_not(home) -> None:
    spec = spec_with(home)
    provider = FakeProvider()
    assert not has_image_for(provider, spec)
    stamp = plan_of(spec).stamp
    provider.baked = BakedImage("sha256:1", "vmgen-baked:x", datetime.now(UTC), stamp, base="b")
    assert has_image_for(provider, spec)
    provider.baked = BakedImage(
        "sha256:2",
        "vmgen-baked:y",
        datetime.now(UTC),
        type(stamp)(**{**stamp.__dict__, "agent": "claude-2.0.0"}),
        base="b",
    )
    assert not has_image_for(provider, spec)


def test_one_plan_is_baked_by_one_process_at_a_time(home) -> None:
    key = plan_key("docker", plan_of(spec_with(home)))
    assert key != plan_key("docker", plan_of(spec_with(home, desktop=True)))
    with plan_lock(key) as first, plan_lock(key) as second:
        assert first and not second
    with plan_lock(key) as again:
        assert again  # released with its holder


def test_a_snapshots_price_comes_from_the_projects_price_list() -> None:
    with FakeHetzner(boot=False) as cloud:
        provider = HetznerProvider(token=cloud.token, location="fsn1", endpoint=cloud.api_endpoint)
        assert "0.0142 EUR per GB a month" in provider.image_cost_note()


def test_a_provider_that_fails_after_the_launch_costs_a_warning_not_the_launch(home, capsys) -> None:
    from vmgen.errors import ProviderUnavailable
    from vmgen.laptop.cli.launching import bake_for_next_time

    class Unreachable(FakeProvider):
        def newest_baked(self, spec=None):
            raise ProviderUnavailable("the API did not answer")

    bake_for_next_time(Unreachable(), spec_for(home))  # returns: the workspace is up
    assert "auto_bake: could not start a bake (the API did not answer)" in capsys.readouterr().err
