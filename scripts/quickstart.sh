#!/usr/bin/env bash
# Set everything up and launch a workspace on the local default (docker provider).
#   scripts/quickstart.sh [SOURCE]      SOURCE defaults to this repository
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/dev-env.sh"

if ! ls "$HOME"/.ssh/*.pub >/dev/null 2>&1; then
  echo "==> no SSH key yet: creating ~/.ssh/id_ed25519"
  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
  ssh-keygen -q -t ed25519 -N "" -f "$HOME/.ssh/id_ed25519"
fi

# Later `vmgen launch` runs (in any shell) use the image built here: no registry needed.
config="${XDG_CONFIG_HOME:-$HOME/.config}/vmgen/config.toml"
mkdir -p "$(dirname "$config")"
for setting in docker_image; do
  variable="VMGEN_${setting^^}"
  if ! grep -qs "^$setting" "$config"; then
    echo "$setting = \"${!variable}\"" >>"$config"
    echo "==> recorded $setting = ${!variable} in $config"
  fi
done

source_dir=${1:-$root}
echo "==> vmgen launch $source_dir --provider docker"
"$root/.venv/bin/vmgen" launch "$source_dir" --provider docker
"$root/.venv/bin/vmgen" list
