"""Backup and restore throughput and peak RSS of vmgen.backup, against the shell pipeline.

    .venv/bin/python bench/backup.py [--size-mb 2048] [--rounds 1] [--keep]

The synthetic workspace (generated once under /tmp/bk-bench-tree/<size>mb and reused) is ~20%
many small source-like text files and ~80% large incompressible binaries. Each measurement runs
in its own child process, whose peak RSS comes from wait4(): for vmgen one Python process, for
the shell pipeline the largest of its processes. Compared in the same run on the same data:

  backup   vmgen create_backup() to a LocalStore (tar -> zstd -3 -> age, sha256, fsync, then
           read back and verified, manifest)   vs   tar -c | zstd -3 | age -r KEY > file
  restore  vmgen restore_backup() (verify + decrypt + unzstd + safe extract into staging, move)
           vs   age -d -i ID < file | zstd -d | tar -x

and restic (a deduplicating backup tool) as a peer, into a throwaway repository under the work
dir: a first backup, a second one of the unchanged tree, a third after 1% of the files were
written again, and a restore of the latest. vmgen does the same: its second and third backups
are increments (its restore of the latest restores that chain of three; its full backup is
also restored alone, like for like with the pipeline).

Throughput is the tree's file bytes over wall time. Targets: >= 0.8x the pipeline, < 200 MB.
Every restore of a run goes into a directory of its own and they are all deleted at the end:
on ext4, creating 60k files right after deleting 60k others is several times slower (the inode
allocator skips recently deleted inodes), which would penalise whichever restore came second.
Prints a table and writes bench/results/backup.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "backup.json"
TREE_BASE = Path("/tmp/bk-bench-tree")
WORK = Path("/tmp/bk-bench-work")
PYTHON = sys.executable
SMALL_SHARE = 0.2
WORDS = [
    "def",
    "class",
    "return",
    "import",
    "self",
    "value",
    "result",
    "None",
    "True",
    "for",
    "while",
    "if",
    "else",
    "async",
    "await",
    "yield",
    "lambda",
    "try",
    "except",
    "raise",
    "with",
    "open",
    "path",
    "config",
    "manifest",
    "store",
    "stream",
    "buffer",
    "const",
    "let",
    "function",
    "export",
    "default",
    "interface",
    "type",
    "struct",
    "impl",
    "pub",
    "fn",
    "match",
]

sys.path.insert(0, str(ROOT / "src"))

from vmgen.backup import generate_identity


def make_tree(size_mb: int) -> Path:
    tree = TREE_BASE / f"{size_mb}mb"
    if (tree / ".complete").exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    rng = random.Random(42)
    total = size_mb << 20
    small_budget, n = int(total * SMALL_SHARE), 0
    while small_budget > 0:  # ~8 KiB source files, 100 per directory, 3 levels deep
        path = tree / "src" / f"pkg{n // 10000:02d}" / f"mod{n // 100 % 100:02d}" / f"file{n % 100:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(20, 300))]
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(data)
        small_budget -= len(data)
        n += 1
    big_left, k = total - int(total * SMALL_SHARE), 0
    big_size = max(1 << 20, min(256 << 20, big_left // 6))
    (tree / "data").mkdir(parents=True, exist_ok=True)
    while big_left > 0:
        size = min(big_size, big_left)
        with open(tree / "data" / f"blob{k:02d}.bin", "wb") as f:
            f.writelines(os.urandom(min(1 << 20, size - off)) for off in range(0, size, 1 << 20))
        big_left -= size
        k += 1
    (tree / ".complete").write_text("")
    return tree


def tree_bytes(tree: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(tree):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:  # a child exited while the tree was listed: this sample is skipped
        return 0
    for p in family:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall time and peak RSS of one child process: the largest single process (wait4), and
    the whole process tree summed (sampled every 20 ms: vmgen runs its stages as processes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env={**os.environ, **env} if env else None)
    peak, done = [0], threading.Event()

    def sample() -> None:
        try:
            watched = psutil.Process(proc.pid)
        except psutil.Error:  # a step that ended before the sampler started: nothing to sample
            return
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss(watched))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed ({proc.returncode}): {argv}")
    return {"seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "peak_tree_rss_mb": peak[0] / 2**20}


VMGEN_BACKUP = """
import sys; from pathlib import Path
from vmgen.backup import LocalStore, create_backup
from vmgen.backup.indexkeeper import IndexKeeper
m = create_backup(sys.argv[1], LocalStore(Path(sys.argv[2])), "bench", sys.argv[3], excludes=(),
                  keeper=IndexKeeper(Path(sys.argv[4])), max_increments=10)
kind = f"increment {m.depth}: {m.summary.files} files, {m.summary.unchanged} unchanged" if m.parent else "full"
print(f"  vmgen ({kind}): plaintext {m.plaintext_bytes>>20} MiB -> zstd {m.compressed_bytes>>20} MiB -> "
      f"age {m.ciphertext_bytes>>20} MiB", flush=True)
"""
VMGEN_RESTORE = """
import sys; from pathlib import Path
from vmgen.backup import LocalStore, parse_identity, restore_backup
restore_backup(LocalStore(Path(sys.argv[1])), "bench", sys.argv[4] if len(sys.argv) > 4 else None,
               parse_identity(Path(sys.argv[2]).read_text()), sys.argv[3])
"""


RESTIC_ENV = {"RESTIC_PASSWORD": "bench-fake-password-not-a-secret"}


def restic(*args: str) -> list[str]:
    return ["restic", "--quiet", "--repo", str(WORK / "restic-repo"), "--cache-dir", str(WORK / "restic-cache"), *args]


def one_round(
    tree: Path, identity: Path, recipient: str, restore_base: Path, number: int
) -> dict[str, dict[str, float]]:
    store, pipe_out, keeper = WORK / "store", WORK / "pipeline.tar.zst.age", WORK / "index"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(keeper, ignore_errors=True)
    pipe_out.unlink(missing_ok=True)
    env_py = [PYTHON, "-c"]
    out: dict[str, dict[str, float]] = {}
    out["pipeline_backup"] = run(
        [
            "bash",
            "-c",
            'set -o pipefail; tar -C "$1" -cf - . | zstd -q -3 | age -r "$2" > "$3"',
            "_",
            str(tree),
            recipient,
            str(pipe_out),
        ]
    )
    vmgen_backup = [*env_py, VMGEN_BACKUP, str(tree), str(store), recipient, str(keeper)]
    out["vmgen_backup"] = run(vmgen_backup)
    for d in ("restic-repo", "restic-cache"):
        shutil.rmtree(WORK / d, ignore_errors=True)
    subprocess.run(restic("init"), check=True, env={**os.environ, **RESTIC_ENV}, stdout=subprocess.DEVNULL)
    out["restic_backup_first"] = run(restic("backup", str(tree)), RESTIC_ENV)
    out["restic_backup_unchanged"] = run(restic("backup", str(tree)), RESTIC_ENV)
    out["vmgen_backup_unchanged"] = run(vmgen_backup)
    touch_some(tree)
    out["vmgen_backup_changed"] = run(vmgen_backup)
    out["restic_backup_changed"] = run(restic("backup", str(tree)), RESTIC_ENV)
    full_id = min(path.stem for path in (store / "ws" / "bench").glob("*.json"))
    restores = [
        (
            "pipeline_restore",
            [
                "bash",
                "-c",
                'set -o pipefail; mkdir "$3" && age -d -i "$1" < "$2" | zstd -q -d | tar -x -C "$3"',
                "_",
                str(identity),
                str(pipe_out),
                str(restore_base / f"restore-pipeline-{number}"),
            ],
        ),
        (
            "vmgen_restore_full",
            [
                *env_py,
                VMGEN_RESTORE,
                str(store),
                str(identity),
                str(restore_base / f"restore-vmgen-full-{number}"),
                full_id,
            ],
        ),
        (
            "vmgen_restore",
            [*env_py, VMGEN_RESTORE, str(store), str(identity), str(restore_base / f"restore-vmgen-{number}")],
        ),
        ("restic_restore", restic("restore", "latest", "--target", str(restore_base / f"restore-restic-{number}"))),
    ]
    # Each round starts with a different one: the first restore of a round is the one nearest
    # the deletions of the previous run (and of this round's store), slow on ext4 (see above).
    for name, argv in restores[number % len(restores) :] + restores[: number % len(restores)]:
        subprocess.run(["sync"], check=True)  # start each restore with no dirty pages pending
        out[name] = run(argv, RESTIC_ENV if name.startswith("restic") else None)
    return out


def touch_some(tree: Path, share: float = 0.01) -> int:
    """A slightly changed workspace: 1% of the small files written again (same bytes, so the tree
    stays the one the next round measures; both tools see new mtimes and ctimes)."""
    sources = sorted((tree / "src").rglob("*.py"))
    chosen = sources[:: max(1, int(1 / share))]
    for path in chosen:
        path.write_bytes(path.read_bytes())
    return len(chosen)


def remove_restores(restore_base: Path) -> None:
    for d in restore_base.glob("restore-*"):
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=1, help="best round is reported")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (store, restores)")
    parser.add_argument(
        "--restore-base",
        type=Path,
        default=WORK,
        help="where both restores extract (e.g. /dev/shm to take the disk out)",
    )
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")

    t0 = time.perf_counter()
    tree = make_tree(args.size_mb)
    files, size = tree_bytes(tree)
    print(f"tree {tree}: {files} files, {size / 2**20:.0f} MiB (ready in {time.perf_counter() - t0:.0f} s)")
    subprocess.run(f"tar -C '{tree}' -cf - . | cat > /dev/null", shell=True, check=True)  # warm cache

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    text, recipient = generate_identity()
    identity = WORK / "identity.txt"
    identity.write_text(text)
    args.restore_base.mkdir(parents=True, exist_ok=True)
    remove_restores(args.restore_base)
    if shutil.which("restic") is None:
        raise SystemExit("restic is not installed (scripts/setup-system.sh installs it with VMGEN_SETUP_FOR_TESTS=1)")
    try:
        rounds = [one_round(tree, identity, recipient, args.restore_base, n) for n in range(args.rounds)]
    finally:
        if not args.keep:
            remove_restores(args.restore_base)
    best = {k: min((r[k] for r in rounds), key=lambda m: m["seconds"]) for k in rounds[0]}
    for m in best.values():
        m["mb_per_s"] = size / 1e6 / m["seconds"]

    result: dict[str, Any] = {
        "tree": {"files": files, "bytes": size, "size_mb_arg": args.size_mb, "small_share": SMALL_SHARE},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds,
        "restore_base": str(args.restore_base),
        "best": best,
        # vmgen restores its latest backup: the full one and the two increments after it.
        "vmgen_restore_chain": 3,
        "ratio_backup": best["vmgen_backup"]["mb_per_s"] / best["pipeline_backup"]["mb_per_s"],
        # Like for like: the full backup against the pipeline's archive; and the chain of three.
        "ratio_restore": best["vmgen_restore_full"]["mb_per_s"] / best["pipeline_restore"]["mb_per_s"],
        "ratio_restore_chain": best["vmgen_restore"]["mb_per_s"] / best["pipeline_restore"]["mb_per_s"],
        "ratio_vs_restic": {
            "backup_first": best["vmgen_backup"]["mb_per_s"] / best["restic_backup_first"]["mb_per_s"],
            # vmgen's second backup is an increment, as restic's is a snapshot of what changed.
            "backup_unchanged": best["vmgen_backup_unchanged"]["mb_per_s"]
            / best["restic_backup_unchanged"]["mb_per_s"],
            "backup_changed_1pct": best["vmgen_backup_changed"]["mb_per_s"] / best["restic_backup_changed"]["mb_per_s"],
            "restore": best["vmgen_restore"]["mb_per_s"] / best["restic_restore"]["mb_per_s"],
        },
        "restic_version": subprocess.run(
            ["restic", "version"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "targets": {"ratio_min": 0.8, "peak_rss_mb_max": 200},
    }
    print(f"\n{'step':<18}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}{'tree RSS MB':>13}")
    for name, m in best.items():
        print(
            f"{name:<18}{m['seconds']:>9.2f}{m['mb_per_s']:>9.0f}{m['peak_rss_mb']:>13.1f}"
            f"{m['peak_tree_rss_mb']:>13.1f}"
        )
    print(
        f"\nvmgen / pipeline: backup {result['ratio_backup']:.2f}x, restore {result['ratio_restore']:.2f}x "
        f"(the chain of three: {result['ratio_restore_chain']:.2f}x)"
        f" (target >= 0.8x); vmgen peak RSS "
        f"{max(best['vmgen_backup']['peak_rss_mb'], best['vmgen_restore']['peak_rss_mb']):.0f} MB (target < 200)"
    )
    vs = result["ratio_vs_restic"]
    print(
        f"vmgen / restic: backup {vs['backup_first']:.2f}x (first), {vs['backup_unchanged']:.2f}x (unchanged "
        f"tree), {vs['backup_changed_1pct']:.2f}x (1% of files changed), restore {vs['restore']:.2f}x (vmgen: a "
        "chain of 3)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
