#!/usr/bin/env bash
# Pins what a workspace VM installs beside vmgen, with every file's sha256 from the index, for
# the Pythons of the supported images (Debian 12: 3.11, Ubuntu 24.04: 3.12) on x86_64 and arm64.
# The VM installs with --require-hashes: nothing it did not get from here runs as root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/.venv/bin/python" -m uv pip compile "$root/scripts/vm-requirements.in" --universal \
  --python-version 3.11 --generate-hashes --no-header --quiet -o "$root/src/vmgen/vm-requirements.txt"
echo "wrote src/vmgen/vm-requirements.txt"
