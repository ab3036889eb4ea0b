"""Time from `vmgen launch` to ready on the docker provider, split into phases.

    .venv/bin/python bench/time_to_ready.py [--runs N]

Run after `scripts/dev-env.sh` (or the test script) has built the image and the wheel; reads
VMGEN_DOCKER_IMAGE and VMGEN_VMGEN_FIND_LINKS like the CLI. Prints a table and writes
bench/results/time_to_ready.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "time_to_ready.json"


def vmgen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmgen", *args], env=env, capture_output=True, text=True, check=True)


def one_run(env: dict[str, str], repo: Path, name: str) -> dict[str, object]:
    started = time.time()
    result = vmgen(env, "launch", str(repo), "--name", name, "--json")
    report = json.loads(result.stdout)
    # The simulated VM shares this machine's clock, so its phase stamps line up with `started`.
    marks = [(p["name"], p["at"] - started) for p in report["phases"]]
    phases = {name: round(end - begin, 2) for (name, begin), (_, end) in zip(marks, marks[1:])}
    blame = vmgen(env, "ssh", name, "--", "cloud-init analyze blame 2>/dev/null | head -8").stdout
    vmgen(env, "destroy", name, "--yes")
    steps = report["timings"]
    return {
        "total_s": report["seconds"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vmgen-bench-") as tmp:
        home = Path(tmp) / "home"
        (home / ".ssh").mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh/id_ed25519")], check=True)
        repo = Path(tmp) / "bench-repo"
        repo.mkdir()
        (repo / "README.md").write_text("benchmark\n")
        env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
        env.setdefault("VMGEN_AGENT_VERSION", "2.1.332")
        runs = [one_run(env, repo, f"bench-{i}") for i in range(args.runs)]

    totals = [r["total_s"] for r in runs]
    summary = {
        "benchmark": "time_to_ready",
        "provider": "docker",
        "image": os.environ.get("VMGEN_DOCKER_IMAGE", ""),
        "agent_version": os.environ.get("VMGEN_AGENT_VERSION", "2.1.332"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "median_total_s": statistics.median(totals),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"time to ready (docker provider, cold, {args.runs} run(s)): median {summary['median_total_s']:.1f}s")
    for step, seconds in runs[-1]["steps_s"].items():
        print(f"  {step:<22} {seconds:6.1f}s")
    for phase, seconds in runs[-1]["provision_phases_s"].items():
        print(f"    provision: {phase:<14} {seconds:6.1f}s")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
