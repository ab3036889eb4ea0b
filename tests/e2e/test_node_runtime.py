"""Node 22 on every VM (vmgen/builder/node.py): the install step a workspace's provisioning and a
bake both run, here on the stock test image in a plain container (no boot, no cloud). The official
build comes from the npm registry and is checked against the integrity vmgen pinned; with it the
agent's and the code UI's packages resolve without an engine warning (EBADENGINE), which Debian's
Node 18 gave Claude Code 2.1 (`node >= 22`) and CloudCLI's dependencies."""

from __future__ import annotations

import shlex
from dataclasses import replace

import pytest

from tests.conftest import RUN_LABEL
from vmgen.laptop.agents import AGENTS
from vmgen.laptop.builder import codeui
from vmgen.laptop.builder.install import plan_for
from vmgen.laptop.builder.node import NODE
from vmgen.laptop.builder.render import render_node_install
from vmgen.laptop.config import Settings

from .conftest import AGENT_VERSION, RUN, this_vmgen


@pytest.fixture(scope="module")
def plan():
    """What a launch of Claude Code with the code UI installs."""
    return plan_for(AGENTS["claude"], AGENT_VERSION, this_vmgen(), code_ui_version=Settings.code_ui_version)


def run_in(docker_client, image: str, script: str) -> tuple[int, str]:
    container = docker_client.containers.run(image, ["bash", "-c", script], detach=True, labels={RUN_LABEL: RUN})
    try:
        status = container.wait(timeout=600)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_node_22_from_the_registry_and_no_package_finds_it_too_old(docker_client, stock_image, plan):
    assert plan.node is not None and plan.code_ui is not None
    resolve = f"""
node --version
mkdir -p {codeui.LEFT_OUT_DIR} /tmp/agent && cd {codeui.DIR}
printf '%s' {shlex.quote(plan.code_ui.project())} > package.json
printf '%s' {shlex.quote(plan.code_ui.left_out())} > {codeui.LEFT_OUT_DIR}/package.json
npm install --dry-run --ignore-scripts --no-audit --no-fund 2>&1
cd /tmp/agent && npm install --dry-run --no-audit --no-fund @anthropic-ai/claude-code@{AGENT_VERSION} 2>&1
"""
    status, output = run_in(docker_client, stock_image, render_node_install(plan) + resolve)
    assert status == 0, output[-3000:]
    assert f"vmgen: Node.js v{NODE.version}, npm {NODE.npm.version}" in output
    assert output.count("added ") >= 2, output[-3000:]  # both resolved
    assert "EBADENGINE" not in output, output[output.index("EBADENGINE") - 200 :][:1500]


def test_a_download_that_is_not_the_pinned_build_is_refused(docker_client, stock_image, plan):
    other = replace(NODE.builds["amd64"], integrity=NODE.npm.integrity)  # a real digest, of something else
    tampered = replace(plan, node=replace(NODE, builds={**NODE.builds, "amd64": other}))
    status, output = run_in(docker_client, stock_image, render_node_install(tampered) + "\necho installed anyway")
    assert status != 0 and "installed anyway" not in output
    assert "does not have the integrity vmgen pinned" in output
    status, output = run_in(docker_client, stock_image, "test -e /usr/local/bin/node && echo there || echo absent")
    assert output.strip() == "absent"
