"""Time from `vmgen restore` to the agent's session ready, on a baked image, for a small and a
large workspace, split into phases (docker provider, local backup store).

    .venv/bin/python bench/restore.py [--sizes-mb 200,2048]

For each size: a baked launch, the workspace filled by the agent user (~20% small text files,
~80% incompressible binaries, like bench/backup.py), `vmgen backup`, `vmgen destroy`, then
`vmgen restore --json` timed. The restore's download, verify, decrypt and extract are one
streaming pass on the VM (each stage feeds the next through a pipe), so they are reported as
one phase with its throughput. Prints a table and writes bench/results/restore.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.time_to_ready import bake, bench_user, provider_env, vmgen

RESULTS = ROOT / "bench" / "results" / "restore.json"

# Run as the agent on the VM: ~20% of the bytes as 8 KiB text files, the rest as 64 MiB binaries.
FILL = r"""
set -e
cd ~/work
mkdir -p data/src data/bin
small=$(( {mb} * 1024 / 5 / 8 ))
python3 - "$small" <<'PY'
import os, random, sys
rng = random.Random(42)
words = "def class return import self value result None True for while if else".split()
for n in range(int(sys.argv[1])):
    d = f"data/src/p{{n // 1000:03d}}"
    os.makedirs(d, exist_ok=True)
    with open(f"{{d}}/f{{n % 1000:03d}}.py", "w") as f:
        f.write(" ".join(rng.choice(words) for _ in range(1400))[:8192])
PY
big=$(( {mb} * 4 / 5 ))
n=0
while [ "$big" -gt 0 ]; do
  chunk=$(( big < 64 ? big : 64 ))
  head -c "${{chunk}}M" /dev/urandom > "data/bin/b$n.bin"
  big=$(( big - chunk )); n=$(( n + 1 ))
done
du -sb data | cut -f1
"""


def one_size(env: dict[str, str], repo: Path, size_mb: int) -> dict[str, Any]:
    """One size's record in the results file (a JSON document)."""
    name = f"bench-rs-{size_mb}"
    vmgen(env, "launch", str(repo), "--name", name)
    try:
        filled = int(vmgen(env, "ssh", name, "--", FILL.format(mb=size_mb)).stdout.split()[-1])
        started = time.monotonic()
        made = vmgen(env, "backup", name)
        backup_s = time.monotonic() - started
        vmgen(env, "destroy", name, "--yes")
        report = json.loads(vmgen(env, "restore", name, "--json").stdout)
    finally:
        subprocess.run([sys.executable, "-m", "vmgen", "destroy", name, "--yes"], env=env, capture_output=True)
    steps = report["timings"]
    restored = report["restored"]
    stream_s = steps["restore"] - steps["cloud_init"]
    return {
        "size_mb": size_mb,
        "workspace_bytes": filled,
        "backup_s": round(backup_s, 1),
        "backup_line": made.stderr.strip().splitlines()[-1],
        "total_s": report["seconds"],
        "phases_s": {
            "render_and_checks": steps["render"],
            "vm_boot_to_ssh": round(steps["ssh"] - steps["render"], 2),
            "cloud_init": round(steps["cloud_init"] - steps["ssh"], 2),
            "download_verify_decrypt_extract": round(stream_s, 2),
            "handover": round(steps["handover"] - steps["restore"], 2),
            "agent_session": round(steps["agent"] - steps["handover"], 2),
            "first_verdict": round(steps["verdict"] - steps["agent"], 2),
        },
        "restore_on_vm_s": restored["seconds_on_vm"],
        "restore_mb_per_s": round(restored["plaintext_bytes"] / 1e6 / max(restored["seconds_on_vm"], 1e-6), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="200,2048")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes_mb.split(",")]

    with tempfile.TemporaryDirectory(prefix="vmgen-bench-") as tmp, contextlib.ExitStack() as stack:
        env, repo = bench_user(Path(tmp))
        penv, fake = provider_env("docker", env, stack)
        bake_s = bake("docker", penv, fake, stack)
        runs = [one_size(penv, repo, size) for size in sizes]

    summary = {
        "benchmark": "restore_to_ready",
        "provider": "docker",
        "store": "local",
        "image": "baked",
        "bake_s": bake_s,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    for run in runs:
        print(
            f"{run['size_mb']} MB workspace: restore to a working agent {run['total_s']:.1f}s "
            f"(backup took {run['backup_s']:.1f}s); on the VM {run['restore_mb_per_s']} MB/s"
        )
        for phase, seconds in run["phases_s"].items():
            print(f"    {phase:<34} {seconds:6.2f}s")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
