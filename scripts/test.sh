#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it needs, starts dockerd,
# builds the simulated-VM image, then runs unit and end-to-end tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export VMGEN_SETUP_FOR_TESTS=1
source "$root/scripts/dev-env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -ra "$@"
