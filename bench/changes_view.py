"""What one look at the agent's changes costs, and how long the page waits at worst.

    .venv/bin/python bench/changes_view.py [--runs N]

A look is what root's page socket does for the changes view (vmside/web/changes.py): git status,
diff and log in the repository, read and parsed into the page's document. Measured on a copy of
this repository with a few files edited (median of N), with a 50 MB diff (cut at the size cap),
and with a git that hangs (its index a FIFO: stopped at the deadline); plus the start of root's
per-request process (`python -I` importing vmgen.vmside.pageops), which every look pays on a VM.
The page looks at most every CHANGES_SECONDS while a viewer is connected. Writes
bench/results/changes_view.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "changes_view.json"
sys.path.insert(0, str(ROOT / "src"))

from vmgen.contract import codec
from vmgen.vmside.privileges import RunAs
from vmgen.vmside.web.changes import DEADLINE, read_changes
from vmgen.vmside.web.server import CHANGES_SECONDS


def timed(repo: Path, seconds: float = DEADLINE) -> tuple[float, int, str]:
    started = time.perf_counter()
    changes = read_changes(RunAs.current(), str(repo), seconds)
    return time.perf_counter() - started, len(json.dumps(codec.to_value(changes))), changes.cut


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(repo)], check=True)
        tracked = subprocess.run(["git", "-C", str(repo), "ls-files"], capture_output=True, text=True).stdout.split()
        for name in [n for n in tracked if n.endswith(".py")][:5]:
            path = repo / name
            path.write_text(path.read_text().replace("def ", "def  ", 3) + "# edited\n")
        (repo / "NEW.md").write_text("new\n")
        looks = [timed(repo) for _ in range(args.runs)]
        big = repo / "README.md"
        with open(big, "w") as f:
            f.writelines(("x" * 99 + "\n") * 1024 for _ in range(512))
        huge = timed(repo)
        hanging = Path(tmp) / "hanging"
        shutil.copytree(repo, hanging, symlinks=True)
        (hanging / ".git/index").unlink()
        os.mkfifo(hanging / ".git/index")
        hung = timed(hanging)
        imports = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-I", "-c", "import vmgen.vmside.pageops"], check=True, env={"PYTHONPATH": ""}
            )
            imports.append(time.perf_counter() - started)
    result = {
        "runs": args.runs,
        "repo_files": len(tracked),
        "look_median_s": round(statistics.median(t for t, _, _ in looks), 3),
        "look_max_s": round(max(t for t, _, _ in looks), 3),
        "document_bytes": looks[0][1],
        "diff_50mb_s": round(huge[0], 3),
        "diff_50mb_cut": huge[2],
        "diff_50mb_document_bytes": huge[1],
        "hanging_git_s": round(hung[0], 3),
        "hanging_git_cut": hung[2],
        "deadline_s": DEADLINE,
        "root_process_start_median_s": round(statistics.median(imports), 3),
        "looks_at_most_every_s": CHANGES_SECONDS,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        + subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
