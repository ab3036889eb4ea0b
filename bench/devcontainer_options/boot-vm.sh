#!/usr/bin/env bash
# Boot one simulated VM the way vmgen's docker provider does (systemd as PID 1, cgroupns host,
# SYS_ADMIN/NET_ADMIN/SYS_PTRACE, tmpfs /run /run/lock /tmp, /home on a volume), plus
# seccomp=unconfined (what Docker inside needs). Usage: boot-vm.sh NAME [extra docker run args]
set -euo pipefail
name=$1; shift
docker volume create --label devc-measure=1 "$name-home" >/dev/null
docker run -d --name "$name" --hostname "$name" --label devc-measure=1 \
  --cgroupns host --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE \
  $([ "${SECCOMP:-unconfined}" = unconfined ] && echo --security-opt seccomp=unconfined) \
  --tmpfs /run:rw,exec,mode=755 --tmpfs /run/lock:rw,mode=1777 --tmpfs /tmp:rw,exec,mode=1777 \
  --stop-signal SIGRTMIN+3 -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v "$name-home:/home" "$@" vmgen-debian12:latest /sbin/init
for _ in $(seq 1 120); do
  [ "$(docker inspect -f {{.State.Running}} "$name")" = true ] || { echo "$name exited" >&2; exit 1; }
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) echo "$name: $state"; exit 0 ;; esac
  sleep 1
done
echo "$name did not boot" >&2; exit 1
