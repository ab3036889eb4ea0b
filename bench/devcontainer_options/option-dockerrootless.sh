#!/usr/bin/env bash
# Option (a), rootless Docker: as the agent.
set -uo pipefail
. /opt/devc/lib.sh
export XDG_RUNTIME_DIR=/run/user/$(id -u) PATH=/usr/local/bin:/usr/share/docker.io/contrib:/usr/sbin:/sbin:/usr/bin:/bin
export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock
cd ~
driver=${DRIVER:-overlay2}
start=$(date +%s.%N)
nohup dockerd-rootless.sh --storage-driver "$driver" >~/dockerd-rootless.log 2>&1 &
for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
python3 -c "print('TIME dockerd-rootless start: %.2f s' % ($(date +%s.%N) - $start))"
docker info --format 'driver={{.Driver}} cgroups={{.CgroupVersion}}/{{.CgroupDriver}} security={{.SecurityOptions}}' 2>&1 || tail -30 ~/dockerd-rootless.log
timed "docker import" docker import ~/base.tar localhost/devc-base:12 >/dev/null
timed "docker run true (first)" docker run --rm localhost/devc-base:12 true
timed "docker run true" docker run --rm localhost/devc-base:12 true
rm -rf ~/repo-docker && cp -r /opt/devc/repo ~/repo-docker
timed "devcontainer up cold" devcontainer up --workspace-folder ~/repo-docker >~/up-docker.log 2>&1 || tail -30 ~/up-docker.log
tail -1 ~/up-docker.log
timed "devcontainer exec true" devcontainer exec --workspace-folder ~/repo-docker true
timed "devcontainer exec true (2)" devcontainer exec --workspace-folder ~/repo-docker true
cid=$(docker ps -q --filter label=devcontainer.local_folder=$HOME/repo-docker)
timed "docker exec true" docker exec "$cid" true
devcontainer exec --workspace-folder ~/repo-docker bash -c "$(probe)"
ls -ln ~/repo-docker/.postcreate-ran
echo "== evil config"
rm -rf ~/evil-docker && cp -r /opt/devc/evil ~/evil-docker
timed "devcontainer up evil" devcontainer up --workspace-folder ~/evil-docker >~/up-evil-docker.log 2>&1 || tail -15 ~/up-evil-docker.log
devcontainer exec --workspace-folder ~/evil-docker bash -c "$(probe)" 2>&1
