#!/usr/bin/env bash
# Set vmgen up for a user on a Debian 12 machine (as root or with sudo) and launch a workspace on
# the local docker provider.
#   scripts/quickstart.sh [SOURCE]      SOURCE defaults to this repository
# Prints one line per step; what the steps themselves print goes to a log file it names.
# Installs what a user needs only: vmgen with pipx, from the wheel `python -m build` makes of this
# clone (not editable: the clone can go), as ~/.local/bin/vmgen; the tests' packages are
# scripts/test.sh's business. Workspaces get this very vmgen from the CLI over SSH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="${XDG_DATA_HOME:-$HOME/.local/share}/vmgen"
logs="${XDG_STATE_HOME:-$HOME/.local/state}/vmgen"
config="${XDG_CONFIG_HOME:-$HOME/.config}/vmgen/config.toml"
bin="$HOME/.local/bin"
mkdir -p "$data" "$logs" "$bin" "$(dirname "$config")"
log="$logs/quickstart.log"
: >"$log"

exec 3>&1 4>&2 >>"$log" 2>&1 # 3, 4: the terminal; everything else: the log
step() { echo "==> $*" >&3; echo "==> $*"; }
trap 'echo "quickstart failed; the last lines of $log:" >&4; tail -n 20 "$log" | sed "s/^/  /" >&4' ERR
step "details of every step go to $log"

step "system packages and a running Docker engine"
bash "$root/scripts/setup-system.sh"

step "the simulated-VM image (built once per recipe with debootstrap: minutes the first time)"
image=$(bash "$root/images/debian12-test/build.sh")

step "vmgen with pipx, on your PATH as $bin/vmgen"
dist="$data/dist"
rm -rf "$dist" "$data/build-env" && mkdir -p "$dist"
python3 -m venv "$data/build-env"
"$data/build-env/bin/pip" install -q --disable-pip-version-check build
"$data/build-env/bin/python" -m build --sdist --wheel --outdir "$dist" "$root"
rm -rf "$data/build-env"
# The same version number may hold newer code (a pulled clone): --force installs this build.
PIPX_BIN_DIR="$bin" pipx install --force "$dist"/vmgen-*.whl
case ":$PATH:" in *":$bin:"*) ;; *) step "add $bin to your PATH (a new login shell on Debian does)" ;; esac

if ! ls "$HOME"/.ssh/*.pub >/dev/null 2>&1; then
  step "no SSH key yet: creating ~/.ssh/id_ed25519"
  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
  ssh-keygen -q -t ed25519 -N "" -f "$HOME/.ssh/id_ed25519"
fi

# Every later `vmgen launch` (in any shell) uses the image built here: no registry needed.
set_setting() {
  python3 - "$config" "$1" "$2" <<'PY'
import json, re, sys
from pathlib import Path
path, key, value = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
lines = path.read_text().splitlines() if path.exists() else []
line = f"{key} = {json.dumps(value)}"
lines = [line if re.match(rf"{key}\s*=", old) else old for old in lines]
path.write_text("\n".join(lines if line in lines else [*lines, line]) + "\n")
PY
}
set_setting docker_image "$image"
step "recorded in $config: docker_image = $image (the image built here: no registry needed)"

source_dir=${1:-$root}
step "vmgen launch $source_dir --provider docker"
trap - ERR # the launch speaks for itself, on the terminal
"$bin/vmgen" launch "$source_dir" --provider docker >&3 2>&4
"$bin/vmgen" list >&3 2>&4
