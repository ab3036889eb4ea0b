#!/usr/bin/env bash
# Installs the system packages vmgen's local default needs (and, with VMGEN_SETUP_FOR_TESTS=1, its
# test suite's), and makes sure a Docker engine answers. Idempotent: a second run installs nothing
# and starts nothing new.
set -euo pipefail

PACKAGES=(
  docker.io debootstrap cloud-init tmux openssh-client git curl ca-certificates
  python3-venv pipx zstd age iptables
)
# The test suite's own real parts: Caddy (caddy validate), headless Chromium, and an sshd for the
# SSH tests; Pebble, Let's Encrypt's ACME test server, that the web tests get certificates from;
# restic, the peer bench/backup.py measures vmgen's backups against. A user's setup (the
# quickstart) does not install them.
if [ "${VMGEN_SETUP_FOR_TESTS:-}" = 1 ]; then
  PACKAGES+=(caddy chromium chromium-driver openssh-server pebble restic)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The tests start their own sshd and Caddy on free ports: the packages' services must not start
  # (and take ports 22 and 80) just because they were installed.
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d
  # Caddy is here for `caddy validate`, sshd for the SSH tests: what this script installed stays off.
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    [[ " ${missing[*]} " != *" caddy "* ]] || systemctl disable --now caddy.service >/dev/null 2>&1 || true
    [[ " ${missing[*]} " != *" openssh-server "* ]] || systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
fi

# Node.js and npm install the real Claude Code CLI for the tests (workspaces install their agent
# themselves); a machine that already has them (from another source) keeps its own.
if [ "${VMGEN_SETUP_FOR_TESTS:-}" = 1 ] && ! command -v npm >/dev/null 2>&1; then
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
