"""Time from `ready` to a working code UI (CloudCLI behind vmgen's login on `code.<host>`), cold
(stock image: Node, the agent and the code UI installed after boot, the code UI in the background
after `ready`) and baked (an image with every install step done), on the simulated Hetzner cloud
with a fake Cloudflare zone; and how long Node's own install step takes.

    .venv/bin/python bench/code_ui.py [--skip-baked]

Working means what a user sees: signed in through vmgen's login (the form, then the ticket to
`code.`), CloudCLI's page is served and its API answers (`/api/projects`) through Caddy. Polled
every 2 s. The code UI's own install phases (download, native modules, compile where no prebuilt
binary can be fetched, setup) come from the VM's phase log. This machine reaches no GitHub, so
better-sqlite3's prebuilt binary cannot be fetched and is compiled here (on the clouds it is
downloaded). Run after `scripts/dev-env.sh` has built the image (VMGEN_DOCKER_IMAGE). Prints a
table and writes bench/results/code_ui.json.
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT))  # the simulated cloud and the HTTPS client live in tests/
RESULTS = ROOT / "bench" / "results" / "code_ui.json"
POLL_S = 2.0
LIMIT_S = 45 * 60


def vmgen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vmgen", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"vmgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def code_ui_works(ip: str, host: str, password: str) -> bool:
    from tests.e2e.web_helpers import sign_in

    _, session = sign_in(ip, host, password)
    if session is None:
        return False
    session.open("code")
    code = f"code.{host}"
    page = session.get(code, "/")
    return page.status == 200 and "<title>CloudCLI" in page.text and session.get(code, "/api/projects").status == 200


def one_run(env: dict[str, str], dns: Any, repo: Path, name: str, cold: bool) -> dict[str, Any]:
    from tests.e2e.web_helpers import ZONE, records

    started = time.time()
    launched = vmgen(env, "launch", str(repo), "--name", name, *(["--cold"] if cold else []))
    ready = time.time()
    password = launched.stderr.split("password ")[1].split(";")[0]
    host = f"{name}.{ZONE}"
    ip = records(dns, name)[host]
    while True:
        with contextlib.suppress(OSError):
            if code_ui_works(ip, host, password):
                break
        if time.time() - ready > LIMIT_S:
            sys.exit(f"{name}: the code UI did not work within {LIMIT_S / 60:.0f} min of ready")
        time.sleep(POLL_S)
    working = time.time()
    phases_log = vmgen(env, "ssh", name, "--", "cat /var/log/vmgen/phases.log").stdout
    vmgen(env, "destroy", name, "--yes")
    marks = [
        (parts[2], float(parts[1]))
        for parts in (line.split() for line in phases_log.splitlines())
        if len(parts) >= 3 and parts[0] == "vmgen-phase" and parts[2].startswith("code-ui")
    ]
    return {
        "image": "stock" if cold else "baked",
        "launch_to_ready_s": round(ready - started, 1),
        "ready_to_code_ui_s": round(working - ready, 1),
        # The simulated VM shares this machine's clock: each code UI phase until the next one.
        "code_ui_phases_s": {step: round(end - begin, 1) for (step, begin), (_, end) in itertools.pairwise(marks)},
    }


def node_install_seconds(image: str, runs: int = 3) -> list[float]:
    """Node's install step alone (download, integrity check, unpack) in a plain container."""
    from vmgen.laptop.agents import AGENTS
    from vmgen.laptop.builder.install import plan_for
    from vmgen.laptop.builder.render import render_node_install
    from vmgen.laptop.spec import VmgenInstall

    script = render_node_install(plan_for(AGENTS["claude"], "2.1.332", VmgenInstall(version="0")))
    timings = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", image, "bash", "-c", script], check=True, capture_output=True)
        timings.append(round(time.perf_counter() - begin, 1))
    return timings


def cloud_env(env: dict[str, str], stack: contextlib.ExitStack):
    from tests.e2e.web_helpers import ZONE
    from tests.fakes.cloudflare import FakeCloudflare
    from tests.fakes.hetzner import FakeHetzner

    fake = stack.enter_context(FakeHetzner(image=os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")))
    dns = FakeCloudflare(zones=[ZONE], host="0.0.0.0", public_host=fake.gateway).start()
    stack.callback(dns.stop)
    return {
        **env,
        "VMGEN_PROVIDER": "hetzner",
        "VMGEN_AUTO_BAKE": "no",
        "HCLOUD_TOKEN": "test-token",
        "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
        "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
        "VMGEN_DOMAIN": ZONE,
        "CLOUDFLARE_API_TOKEN": "test-token",
        "VMGEN_CLOUDFLARE_ENDPOINT": dns.endpoint,
        "VMGEN_WEB_TLS": "internal",
    }, dns


def main() -> None:
    from bench.time_to_ready import bench_user  # a CLI user of its own and a repository to launch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-baked", action="store_true", help="only the cold launch")
    args = parser.parse_args()
    image = os.environ.get("VMGEN_DOCKER_IMAGE", "vmgen-debian12:latest")
    node = node_install_seconds(image)
    with tempfile.TemporaryDirectory(prefix="vmgen-bench-") as tmp, contextlib.ExitStack() as stack:
        env, repo = bench_user(Path(tmp))
        cenv, dns = cloud_env(env, stack)
        results: dict[str, Any] = {"cold": one_run(cenv, dns, repo, "bench-ui-cold", cold=True)}
        if not args.skip_baked:
            bake_started = time.time()
            vmgen(cenv, "image", "build", "--provider", "hetzner")  # a snapshot in the simulated cloud, gone with it
            results["bake_s"] = round(time.time() - bake_started, 1)
            results["baked"] = one_run(cenv, dns, repo, "bench-ui-baked", cold=False)
    summary = {
        "benchmark": "code_ui",
        "image": image,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "node_install_s": {"runs": node, "median": statistics.median(node)},
        **results,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"Node's install step: median {statistics.median(node):.1f}s of {node}")
    for kind in ("cold", "baked"):
        if kind in results:
            run = results[kind]
            print(
                f"{kind}: ready after {run['launch_to_ready_s']:.0f}s,"
                f" code UI working {run['ready_to_code_ui_s']:.0f}s after ready"
            )
            for step, seconds in run["code_ui_phases_s"].items():
                print(f"    {step:<18} {seconds:6.1f}s")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
