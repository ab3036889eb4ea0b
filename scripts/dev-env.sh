#!/usr/bin/env bash
# A developer's environment on a Debian 12 machine: system packages (with the tests' own) and a
# running Docker engine, the simulated-VM image, an editable virtualenv in .venv with the test
# extra, the Claude Code the tests drive, and vmgen's own wheel for the VMs to install (vmgen is
# installed on each VM at the CLI's version). Exports the settings that use them; sourced by
# test.sh. A user's setup is quickstart.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

bash "$root/scripts/setup-system.sh"

echo "==> simulated-VM image (built once per recipe; a few minutes the first time)"
image=$(bash "$root/images/debian12-test/build.sh")

echo "==> virtualenv in $root/.venv"
[ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
"$root/.venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]"

claude_version=2.1.332  # the tests drive this exact version
if [ "$("$root/.cache/claude/bin/claude" --version 2>/dev/null | cut -d' ' -f1)" != "$claude_version" ]; then
  echo "==> Claude Code $claude_version for the watchdog's real-process tests"
  npm install -g --silent --no-fund --no-audit --prefix "$root/.cache/claude" "@anthropic-ai/claude-code@$claude_version" >/dev/null
fi

wheels="$root/.cache/wheels"
rm -rf "$wheels" && mkdir -p "$wheels"
"$root/.venv/bin/pip" wheel -q --no-deps --disable-pip-version-check -w "$wheels" "$root"

export VMGEN_DOCKER_IMAGE="$image"
export VMGEN_VMGEN_FIND_LINKS="$wheels"
