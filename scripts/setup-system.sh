#!/usr/bin/env bash
# Installs the system packages vmgen's local default and its test suite need, and makes sure a
# Docker engine answers. Idempotent: a second run installs nothing and starts nothing new.
set -euo pipefail

PACKAGES=(
  docker.io debootstrap cloud-init tmux openssh-client git curl ca-certificates
  python3-venv zstd age iptables
  caddy chromium chromium-driver
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Caddy is here for `caddy validate` in the tests; its packaged site must not hold port 80.
  if [[ " ${missing[*]} " == *" caddy "* ]] && command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now caddy.service >/dev/null 2>&1 || true
  fi
fi

# Node.js and npm install the real Claude Code CLI for the tests; a machine that already has them
# (from another source) keeps its own.
if ! command -v npm >/dev/null 2>&1; then
  echo "==> installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "==> starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/vmgen-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/vmgen-dockerd.log" >&2; exit 1; }
fi
echo "==> docker engine answers"
