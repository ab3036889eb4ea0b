#!/usr/bin/env bash
# A stand-in metadata service on 169.254.169.254:80 (root's), and vmgen's own guard rule.
ip addr add 169.254.169.254/32 dev lo 2>/dev/null || true
mkdir -p /root/md && echo "metadata-token-of-root" >/root/md/token
(cd /root/md && nohup python3 -m http.server --bind 169.254.169.254 80 >/root/md.log 2>&1 &)
iptables -C OUTPUT -p tcp -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT 2>/dev/null || \
  iptables -I OUTPUT -p tcp -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT
sleep 1
echo "root: $(curl -s -m 3 http://169.254.169.254/token)"
echo "agent: $(runuser -u agent -- curl -s -m 3 http://169.254.169.254/token || echo refused)"
