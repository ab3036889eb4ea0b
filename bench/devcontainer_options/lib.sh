# The measurement of docs/devcontainers.md: copied to /opt/devc in each simulated VM.
# Sourced by the option scripts: a timer that prints "TIME label: N.NN s".
timed() {
  local label=$1; shift
  local start; start=$(date +%s.%N)
  "$@"
  local rc=$?
  python3 -c "print('TIME %s: %.2f s (rc %d)' % ('$label', $(date +%s.%N) - $start, $rc))"
  return $rc
}
probe() {  # what the agent's process inside the container can reach
  cat <<'PROBE'
echo "id: $(id)"
grep -E '^Cap(Eff|Bnd)' /proc/self/status | tr '\n' ' '; echo
echo "tool: $(jq --version 2>&1)"; echo "env DEMO_ENV=$DEMO_ENV"
echo "marker: $(cat /tmp/postcreate-marker 2>&1)"; echo "feature: $(cat /etc/local-feature-greeting 2>&1)"
ls -l /var/run/docker.sock /run/docker.sock /run/user/2000/docker.sock /run/podman/podman.sock 2>&1 | sed 's/^/socket: /'
echo "metadata: $(timeout 5 bash -c 'exec 3<>/dev/tcp/169.254.169.254/80 && printf "GET /token HTTP/1.0\r\n\r\n" >&3 && tail -1 <&3' 2>&1 || echo unreachable)"
for f in /host-root/secret /host-etc/vmgen/provider.env /host-etc/shadow; do [ -e "$f" ] && echo "read $f: $(head -c 40 "$f" 2>&1 | head -1)"; done
echo "uid_map: $(cat /proc/self/uid_map | tr -s ' ')"
PROBE
}
