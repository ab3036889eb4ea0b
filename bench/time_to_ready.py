"""Time from `vmgen launch` to ready, cold (stock image, everything installed by cloud-init) and
baked (an image with the install steps done), split into phases, on the docker provider and on the
simulated Hetzner cloud (tests/fakes/hetzner: the real hcloud client, servers boot as containers)
and on the simulated EC2 (tests/fakes/aws: moto, instances boot as containers, an AMI's instances
boot the container its build instance was committed to).

    .venv/bin/python bench/time_to_ready.py [--runs N] [--provider docker|hetzner|aws|both]

Run after `scripts/dev-env.sh` (or the test script) has built the image; reads VMGEN_DOCKER_IMAGE
like the CLI. Every launch sends the CLI's own vmgen build over SSH (no wheel server), its
dependencies come hash-pinned from the index. Prints a table and writes
bench/results/time_to_ready.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the simulated cloud lives in tests/fakes
RESULTS = ROOT / "bench" / "results" / "time_to_ready.json"


def vmgen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "vmgen", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"vmgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def one_run(env: dict[str, str], repo: Path, name: str, cold: bool) -> dict[str, Any]:
    started = time.time()
    result = vmgen(env, "launch", str(repo), "--name", name, "--json", *(["--cold"] if cold else []))
    report = json.loads(result.stdout)
    vm_cpu = vm_cpu_seconds(name)
    ssh_ready = ssh_ready_seconds(env, name)
    sync_started = time.monotonic()
    vmgen(env, "sync-config", name)  # the bench user's small ~/.claude again, as a user would
    sync_config = round(time.monotonic() - sync_started, 3)
    # The simulated VM shares this machine's clock, so its phase stamps line up with `started`.
    marks = [(p["name"], p["at"] - started) for p in report["phases"]]
    phases = {name: round(end - begin, 2) for (name, begin), (_, end) in itertools.pairwise(marks)}
    blame = vmgen(env, "ssh", name, "--", "cloud-init analyze blame 2>/dev/null | head -8").stdout
    skipped = vmgen(env, "ssh", name, "--", "grep -c '^vmgen-skip ' /var/log/vmgen/phases.log || true").stdout
    vmgen(env, "destroy", name, "--yes")
    steps = report["timings"]
    # vmgen's own overhead: what is neither the VM booting nor cloud-init running.
    overhead = steps["render"] + (steps["handover"] - steps["cloud_init"]) + (steps["agent"] - steps["handover"])
    return {
        "image": report["image"] or "stock",
        "install_steps_skipped": int(skipped.strip() or 0),
        "total_s": report["seconds"],
        "vm_cpu_to_ready_s": vm_cpu,
        "ssh_ready_s": ssh_ready,
        "sync_config_s": sync_config,
        "vmgen_overhead_s": round(overhead, 2),
        "steps_s": {
            "render_and_checks": steps["render"],
            "container_start": round(steps["create"] - steps["render"], 2),
            "ssh_answers": round(steps["ssh"] - steps["create"], 2),
            "cloud_init": round(steps["cloud_init"] - steps["ssh"], 2),
            "handover_and_upload": round(steps["handover"] - steps["cloud_init"], 2),
            "agent_session": round(steps["agent"] - steps["handover"], 2),
        },
        "provision_phases_s": phases,
        "first_provision_phase_at_s": round(marks[0][1], 2) if marks else None,
        "cloud_init_blame": [line.strip() for line in blame.splitlines() if line.strip()][:8],
    }


def vm_cpu_seconds(name: str) -> float | None:
    """The CPU the simulated VM (its container, every process in it) used from its start to
    "ready": what a boot costs a VM's cores, apart from the time it waited on the network."""
    import docker

    for container in docker.from_env().containers.list(filters={"name": name}):
        named = container.name or ""
        if named == f"vmgen-{name}" or named.endswith(f"-{name}"):
            stats: dict[str, Any] = container.stats(stream=False)  # type: ignore[assignment]  # one reading, not a stream
            return round(stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9, 2)
    return None


def ssh_ready_seconds(env: dict[str, str], name: str, timeout: float = 60) -> float | None:
    """From "ready" (the launch returned) to a working `ssh vmgen-<name> true` through the entry
    the launch wrote (`-F`: ssh finds ~ through the passwd database, not the bench's HOME)."""
    config = Path(env["HOME"]) / ".ssh" / "config"
    started = time.monotonic()
    command = ["ssh", "-F", str(config), f"vmgen-{name}", "true"]
    while time.monotonic() - started < timeout:
        if subprocess.run(command, env=env, capture_output=True).returncode == 0:
            return round(time.monotonic() - started, 3)
    return None


def cli_startup_seconds(env: dict[str, str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        vmgen(env, "--version")
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def provider_env(provider: str, env: dict[str, str], stack):
    """The CLI's environment for the provider, and the simulated cloud (None for docker)."""
    if provider == "docker":
        return {**env, "VMGEN_PROVIDER": "docker"}, None
    if provider == "aws":
        from tests.fakes.aws import FakeAws

        cloud = stack.enter_context(
            FakeAws(boot=True, image=os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest"))
        )
        # No backup store: poweroff (the default without one) would terminate the instance on aws.
        # No background bake after the cold runs: the baked ones boot the AMI `bake` makes.
        return {
            **env,
            **cloud.environment(),
            "VMGEN_PROVIDER": "aws",
            "VMGEN_IDLE_ACTION": "delete",
            "VMGEN_AUTO_BAKE": "no",
        }, cloud
    from tests.fakes.hetzner import FakeHetzner

    fake = stack.enter_context(FakeHetzner(image=os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")))
    return {
        **env,
        "VMGEN_PROVIDER": "hetzner",
        "VMGEN_AUTO_BAKE": "no",
        "HCLOUD_TOKEN": fake.token,
        "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
        "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
    }, fake


def bake(provider: str, env: dict[str, str], fake, stack) -> float:
    """Seconds to bake an image the launches then pick up; removed again at the end."""
    started = time.monotonic()
    if fake is None:
        import docker

        client = docker.from_env()
        before = {image.id for image in client.images.list(filters={"label": "vmgen-baked=1"})}
        vmgen(env, "image", "build", "--provider", "docker")
        for image in client.images.list(filters={"label": "vmgen-baked=1"}):
            if image.id not in before:
                stack.callback(client.images.remove, image.id, force=True)
    else:
        # A build server (instance) in the simulated cloud; its image goes with the fake.
        vmgen(env, "image", "build", "--provider", provider)
    return round(time.monotonic() - started, 1)


def bench_user(tmp: Path) -> tuple[dict[str, str], Path]:
    """A user of the CLI of its own (home with an SSH key) and a repository to launch."""
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh/id_ed25519")], check=True)
    # A Claude Code setup of the ordinary kind, copied by each launch and by `vmgen sync-config`.
    claude = home / ".claude"
    for folder in ("commands", "agents", "skills/tidy"):
        (claude / folder).mkdir(parents=True)
    (claude / "CLAUDE.md").write_text(f"My notes are in {home}/notes.\n")
    (claude / "commands/hello.md").write_text("Say hello.\n")
    (claude / "agents/reviewer.md").write_text("---\nname: reviewer\n---\nReview.\n")
    (claude / "skills/tidy/SKILL.md").write_text("---\nname: tidy\n---\nTidy up.\n")
    (claude / "settings.json").write_text('{"model": "opus"}\n')
    repo = tmp / "bench-repo"
    repo.mkdir()
    (repo / "README.md").write_text("benchmark\n")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    env.setdefault("VMGEN_AGENT_VERSION", "2.1.332")
    return env, repo


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' record in the results file (a JSON document)."""
    return {
        "runs": runs,
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "median_vmgen_overhead_s": statistics.median(r["vmgen_overhead_s"] for r in runs),
        "median_vm_cpu_to_ready_s": statistics.median(r["vm_cpu_to_ready_s"] or 0.0 for r in runs),
    }


def earlier(key: str) -> dict[str, object]:
    """The results file's `key` (per provider) from the last runs."""
    try:
        return dict(json.loads(RESULTS.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--provider", choices=("docker", "hetzner", "aws", "both"), default="both")
    args = parser.parse_args()
    providers = ("docker", "hetzner") if args.provider == "both" else (args.provider,)

    with tempfile.TemporaryDirectory(prefix="vmgen-bench-") as tmp, contextlib.ExitStack() as stack:
        env, repo = bench_user(Path(tmp))
        results: dict[str, dict[str, Any]] = {}
        for provider in providers:
            penv, fake = provider_env(provider, env, stack)
            cold = summarize([one_run(penv, repo, f"bench-{provider[:2]}-c{i}", cold=True) for i in range(args.runs)])
            bake_s = bake(provider, penv, fake, stack)
            baked = summarize([one_run(penv, repo, f"bench-{provider[:2]}-b{i}", cold=False) for i in range(args.runs)])
            results[provider] = {
                "cold": cold,
                "baked": baked,
                "bake_s": bake_s,
                "baked_over_cold": round(baked["median_total_s"] / cold["median_total_s"], 3),
            }
        startup = cli_startup_seconds(env)

    summary = {
        "benchmark": "time_to_ready",
        "image": os.environ.get("VMGEN_DOCKER_IMAGE", ""),
        "agent_version": os.environ.get("VMGEN_AGENT_VERSION", "2.1.332"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cli_startup_s": startup,
        # A run of some providers keeps the others' last numbers, and when each was measured.
        "providers": {**earlier("providers"), **results},
        "when": {**earlier("when"), **dict.fromkeys(results, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"CLI start-up (vmgen --version): {startup * 1000:.0f} ms")
    for provider, result in results.items():
        if "baked" not in result:
            print(f"{provider}: cold {result['cold']['median_total_s']:.1f}s (no baked images)")
            continue
        print(
            f"{provider}: baked {result['baked']['median_total_s']:.1f}s"
            f" vs cold {result['cold']['median_total_s']:.1f}s"
            f" = {result['baked_over_cold']:.0%} of cold (target <= 25%); baking took {result['bake_s']:.0f}s"
        )
        for kind in ("cold", "baked"):
            runs = result[kind]
            print(
                f"  {kind}, {args.runs} run(s): median {runs['median_total_s']:.1f}s,"
                f" vmgen's own overhead {runs['median_vmgen_overhead_s']:.2f}s,"
                f" the VM's CPU to ready {runs['median_vm_cpu_to_ready_s']:.1f}s"
            )
            for step, seconds in runs["runs"][-1]["steps_s"].items():
                print(f"    {step:<22} {seconds:6.2f}s")
            for phase, seconds in runs["runs"][-1]["provision_phases_s"].items():
                print(f"      provision: {phase:<14} {seconds:6.1f}s")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
