#!/usr/bin/env bash
# A developer's environment on a Debian 12 machine: system packages (with the tests' own) and a
# running Docker engine, the simulated-VM image, an editable virtualenv in .venv with the test
# extra, and the agent CLIs the tests drive: Claude Code, codex, opencode, gemini (every VM gets
# the CLI's own vmgen build over SSH: no wheel folder or package index for it). Exports the image
# setting; sourced by test.sh. A user's setup is quickstart.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bash "$root/scripts/setup-system.sh"

# The image's debootstrap and the virtualenv's downloads run side by side: on a fresh machine each
# takes minutes, mostly waiting on a mirror. What the build prints is in its log; a failure shows it.
image_log=$(mktemp /tmp/vmgen-image-build.XXXXXX)
echo "==> simulated-VM image (built once per recipe; a few minutes the first time; log: $image_log)"
bash "$root/images/debian12-test/build.sh" >"$image_log.tag" 2>"$image_log" &
image_build=$!

echo "==> virtualenv in $root/.venv"
[ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
# uv (in the test extra) installs the rest: a tenth of pip's CPU on a machine without caches.
[ -x "$root/.venv/bin/uv" ] || "$root/.venv/bin/pip" install -q --disable-pip-version-check uv
"$root/.venv/bin/uv" pip install -q --python "$root/.venv/bin/python" -e "$root[test]"

claude_version=2.1.332  # the tests drive this exact version
if [ "$("$root/.cache/claude/bin/claude" --version 2>/dev/null | cut -d' ' -f1)" != "$claude_version" ]; then
  echo "==> Claude Code $claude_version for the watchdog's real-process tests"
  npm install -g --silent --no-fund --no-audit --prefix "$root/.cache/claude" "@anthropic-ai/claude-code@$claude_version" >/dev/null
fi
codex_version=0.169.0  # the watchdog's real-codex test drives this exact version
if [ "$("$root/.cache/codex/bin/codex" --version 2>/dev/null | cut -d' ' -f2)" != "$codex_version" ]; then
  echo "==> codex $codex_version for the watchdog's real-process tests"
  npm install -g --silent --no-fund --no-audit --prefix "$root/.cache/codex" "@openai/codex@$codex_version" >/dev/null
fi
opencode_version=1.18.33  # the watchdog's real-opencode test drives this exact version
if [ "$("$root/.cache/opencode/bin/opencode" --version 2>/dev/null)" != "$opencode_version" ]; then
  echo "==> opencode $opencode_version for the watchdog's real-process tests"
  npm install -g --silent --no-fund --no-audit --prefix "$root/.cache/opencode" "opencode-ai@$opencode_version" >/dev/null
fi
gemini_version=0.61.0  # the watchdog's real-gemini test drives this exact version
if [ "$("$root/.cache/gemini/bin/gemini" --version 2>/dev/null)" != "$gemini_version" ]; then
  echo "==> gemini $gemini_version for the watchdog's real-process tests"
  npm install -g --silent --no-fund --no-audit --prefix "$root/.cache/gemini" "@google/gemini-cli@$gemini_version" >/dev/null
fi
# aider (a virtualenv of its own, ~50 s of downloads on a fresh machine) is installed by its test's
# fixture on first use, beside the rest of the suite (tests/integration/test_watchdog_real_aider.py).

if ! wait "$image_build"; then
  tail -n 40 "$image_log" >&2
  echo "error: the simulated-VM image did not build (the end of $image_log is above)" >&2
  exit 1
fi
image=$(tail -n 1 "$image_log.tag")
rm -f "$image_log.tag"
[ -s "$image_log" ] || rm -f "$image_log"  # the image was there already
export VMGEN_DOCKER_IMAGE="$image"
