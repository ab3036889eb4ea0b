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

# The agent CLIs the tests drive, each an exact version: their installs (mostly waiting on the
# registry) run side by side; a failed one is said with its own output.
npm_log=$(mktemp -d /tmp/vmgen-npm.XXXXXX)
npm_jobs=()
agent_cli() {  # name version package version-command-field
  local name=$1 version=$2 package=$3 field=$4
  if [ "$("$root/.cache/$name/bin/$name" --version 2>/dev/null | cut -d' ' -f"$field")" != "$version" ]; then
    echo "==> $name $version for the watchdog's real-process tests"
    npm install -g --silent --no-fund --no-audit --prefix "$root/.cache/$name" "$package@$version" \
      >"$npm_log/$name" 2>&1 &
    npm_jobs+=("$!:$name")
  fi
}
agent_cli claude 2.1.332 @anthropic-ai/claude-code 1  # the tests drive this exact version
agent_cli codex 0.169.0 @openai/codex 2               # the watchdog's real-codex test
agent_cli opencode 1.18.33 opencode-ai 1              # the watchdog's real-opencode test
agent_cli gemini 0.61.0 @google/gemini-cli 1          # the watchdog's real-gemini test
for job in "${npm_jobs[@]}"; do
  if ! wait "${job%%:*}"; then
    cat "$npm_log/${job#*:}" >&2
    echo "error: installing ${job#*:} with npm failed (its output is above)" >&2
    exit 1
  fi
done
rm -rf "$npm_log"
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
