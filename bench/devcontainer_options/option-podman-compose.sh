#!/usr/bin/env bash
# A compose dev container under rootless Podman, as the agent (after option-podman.sh). The CLI
# asks `<compose> version --short`, which podman-compose 1.0.3 (Debian 12) does not answer, so
# Debian's docker-compose 1.29 talks to the agent's own Podman API socket.
set -uo pipefail
. /opt/devc/lib.sh
export XDG_RUNTIME_DIR=/run/user/$(id -u) PATH=/usr/local/bin:/usr/bin:/bin
export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock
cd ~
systemctl --user start podman.socket 2>&1 || { nohup podman system service -t 0 "$DOCKER_HOST" >/dev/null 2>&1 & sleep 1; }
docker-compose version --short
rm -rf ~/repo-compose && cp -r /opt/devc/compose ~/repo-compose
timed "devcontainer up compose" devcontainer up --workspace-folder ~/repo-compose --docker-path podman \
  --docker-compose-path docker-compose >~/up-compose.log 2>&1 || tail -25 ~/up-compose.log
tail -1 ~/up-compose.log
timed "devcontainer exec (compose)" devcontainer exec --workspace-folder ~/repo-compose --docker-path podman \
  --docker-compose-path docker-compose sh -c 'id; getent hosts db || echo "db: not resolved"'
cat ~/repo-compose/.db-resolved 2>&1
podman ps --format '{{.Names}} {{.Status}}'
