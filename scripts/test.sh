#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it needs, starts dockerd,
# builds the simulated-VM image, then runs unit and end-to-end tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export VMGEN_SETUP_FOR_TESTS=1
source "$root/scripts/dev-env.sh"
cd "$root"
echo "==> ruff and mypy on src/, tests/ and bench/ (the files pyproject.toml names)"
"$root/.venv/bin/ruff" check src tests bench
"$root/.venv/bin/ruff" format --check src tests bench
# mypy (half a minute of one core) checks beside the tests' first minutes, which wait on image
# bakes; its verdict is read after them, and a type error fails the run as before.
mypy_log=$(mktemp /tmp/vmgen-mypy.XXXXXX)
"$root/.venv/bin/mypy" >"$mypy_log" 2>&1 &
mypy_pid=$!
# Test files run side by side: most of their time is spent waiting on simulated VMs. A file's
# tests stay on one worker (they share its workspace). The 15 slowest are printed at the end.
workers=${VMGEN_TEST_WORKERS:-4}
tests=0
"$root/.venv/bin/python" -m pytest -ra -n "$workers" --dist loadfile --no-loadscope-reorder --durations=15 "$@" || tests=$?
types=0
wait "$mypy_pid" || types=$?
echo "==> mypy (run beside the tests)"
cat "$mypy_log"
rm -f "$mypy_log"
if ((types)); then
  echo "error: mypy found type errors (above)" >&2
fi
((tests)) && exit "$tests"
exit "$types"
