"""Launch paths beside the main slice: a git URL with a branch cloned on the VM, the laptop's
Claude login and .gitconfig carried over, vmgen installed cold from the build the CLI delivers, and a
launch whose cloud-init fails (on the run's baked image: the failing step, the agent's install of a
version that does not exist, is the one step its stamps do not skip)."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading

import pytest

from .conftest import QuietHandler, make_repo, unique

CLONED, BROKEN, KEPT, SHIPPED = unique("cloned"), unique("broken"), unique("kept"), unique("shipped")


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    """A repository served over git's dumb HTTP protocol, for the VM to clone."""
    base = tmp_path_factory.mktemp("git")
    work = make_repo(base, "work")
    git = ["git", "-C", str(work), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "checkout", "-q", "-b", "feature/x"], check=True)
    (work / "FEATURE.md").write_text("only on the branch\n")
    subprocess.run([*git, "add", "FEATURE.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "feature"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(base / "served" / "app.git")], check=True)
    subprocess.run(["git", "-C", str(base / "served" / "app.git"), "update-server-info"], check=True)
    handler = functools.partial(QuietHandler, directory=str(base / "served"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://host.docker.internal:{server.server_address[1]}/app.git"
    server.shutdown()


def test_git_url_with_branch_login_and_gitconfig(cli, model, git_server, stock_image) -> None:
    # The cold path: a stock image, every install step on the VM (apt, npm, pip from a local wheel
    # folder); --cold, so that no image baked from it meanwhile is picked.
    baked, cli.env["VMGEN_DOCKER_IMAGE"] = cli.env["VMGEN_DOCKER_IMAGE"], stock_image
    claude_dir = cli.home / ".claude"
    claude_dir.mkdir(exist_ok=True)
    (claude_dir / ".credentials.json").write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "test-token", "note": f"{cli.home}/.claude/cache"}})
    )
    (cli.home / ".gitconfig").write_text(
        f"[user]\n\tname = Tester\n[core]\n\texcludesfile = {cli.home}/.gitignore_global\n"
    )
    try:
        cli("launch", f"{git_server}#feature/x", "--name", CLONED, "--copy-claude-login", "--cold")
        # A prompt sent the moment the launch returns is not lost while the agent's UI starts.
        cli("send", CLONED, "first words right after the launch")
        model.wait_for("first words right after the launch", timeout=60)
        files = cli.ssh(CLONED, f"cd work/{CLONED} && git branch --show-current && ls").split()
        assert files[0] == "feature/x" and "FEATURE.md" in files
        credentials = cli.ssh(CLONED, "stat -c %a .claude/.credentials.json && cat .claude/.credentials.json")
        mode, content = credentials.split("\n", 1)
        assert mode == "600"
        assert "/home/agent/.claude/cache" in content and str(cli.home) not in content
        assert cli.ssh(CLONED, "git config --global user.name").strip() == "Tester"
        assert cli.ssh(CLONED, "git config --global core.excludesfile").strip() == "/home/agent/.gitignore_global"
        # The cold path installed the CLI's own build, its dependencies hash-pinned from the index.
        assert cli.ssh(CLONED, "vmgen --version") == cli("--version").stdout
    finally:
        cli("destroy", CLONED, "--yes", check=False)
        cli.env["VMGEN_DOCKER_IMAGE"] = baked


def test_failed_cloud_init_shows_the_log_and_leaves_nothing(cli, tmp_path, docker_client) -> None:
    repo = make_repo(tmp_path, BROKEN)
    result = cli("launch", str(repo), "--cold", "--agent-version", "0.0.0-does-not-exist", check=False)
    assert result.returncode == 1
    assert "cloud-init status: error" in result.stderr
    assert "npm" in result.stderr  # the tail of the log says what failed
    assert "Traceback" not in result.stderr
    assert not docker_client.containers.list(all=True, filters={"label": f"vmgen-ws={BROKEN}"})
    assert not [v for v in docker_client.volumes.list() if v.name == f"vmgen-{BROKEN}-home"]
    assert not (cli.home / f".local/state/vmgen/workspaces/{BROKEN}").exists()


def test_keep_on_failure_keeps_the_workspace_for_inspection(cli, tmp_path, docker_client) -> None:
    repo = make_repo(tmp_path, KEPT)
    result = cli(
        "launch", str(repo), "--cold", "--agent-version", "0.0.0-does-not-exist", "--keep-on-failure", check=False
    )
    assert result.returncode == 1
    try:
        assert "status: error" in cli.ssh(KEPT, "cloud-init status", check=False)
    finally:
        cli("destroy", KEPT, "--yes")
    assert not docker_client.containers.list(all=True, filters={"label": f"vmgen-ws={KEPT}"})


def test_the_shipped_image_is_built_when_missing_or_a_clear_line_says_why(cli, tmp_path, docker_client) -> None:
    repo = make_repo(tmp_path, SHIPPED)
    image = cli.env["VMGEN_DOCKER_IMAGE"]
    cli.env["VMGEN_DOCKER_IMAGE"] = "vmgen-ubuntu:24.04"
    try:
        result = cli("launch", str(repo), "--cold", check=False)
    finally:
        cli.env["VMGEN_DOCKER_IMAGE"] = image
    # This machine reaches no container registry, so building from ubuntu:24.04 must fail cleanly.
    assert result.returncode == 1
    assert "could not build the simulated-VM image vmgen-ubuntu:24.04" in result.stderr
    assert "images/debian12-test/build.sh" in result.stderr and "Traceback" not in result.stderr
    assert not docker_client.containers.list(all=True, filters={"label": f"vmgen-ws={SHIPPED}"})
    assert not (cli.home / f".local/state/vmgen/workspaces/{SHIPPED}").exists()
