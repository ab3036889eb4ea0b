#!/usr/bin/env bash
# Option (b): rootful Docker (vfs) driven by root; the agent only inside a container.
set -uo pipefail
. /opt/devc/lib.sh
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
driver=${DRIVER:-vfs}
mkdir -p /etc/docker && echo "{\"storage-driver\": \"$driver\"}" >/etc/docker/daemon.json
start=$(date +%s.%N)
systemctl start docker
python3 -c "print('TIME dockerd start: %.2f s' % ($(date +%s.%N) - $start))"
docker info --format 'driver={{.Driver}} cgroups={{.CgroupVersion}}/{{.CgroupDriver}}'
timed "docker import" docker import /home/agent/base.tar localhost/devc-base:12 >/dev/null
timed "docker run true (first)" docker run --rm localhost/devc-base:12 true
timed "docker run true" docker run --rm localhost/devc-base:12 true
repo=/home/agent/repo-rootful
rm -rf $repo && cp -r /opt/devc/repo $repo && chown -R agent:agent $repo
# What root would add so that the agent inside has no capabilities and runs as its own uid.
mkdir -p $repo/.devcontainer/rootdriven
cat >$repo/.devcontainer/rootdriven/devcontainer.json <<'JSON'
{
  "build": { "dockerfile": "../Dockerfile", "context": "..", "args": { "BASE": "localhost/devc-base:12" } },
  "features": { "../local-feature": { "greeting": "hello-from-feature" } },
  "containerEnv": { "DEMO_ENV": "from-containerEnv" },
  "postCreateCommand": "echo created > /tmp/postcreate-marker && touch .postcreate-ran",
  "runArgs": ["--cap-drop=ALL", "--security-opt=no-new-privileges"],
  "containerUser": "2000:2000", "remoteUser": "2000:2000", "updateRemoteUserUID": false
}
JSON
timed "devcontainer up cold" devcontainer up --workspace-folder $repo --config $repo/.devcontainer/rootdriven/devcontainer.json >/root/up-rootful.log 2>&1 || tail -30 /root/up-rootful.log
tail -1 /root/up-rootful.log
timed "devcontainer exec true" devcontainer exec --workspace-folder $repo --config $repo/.devcontainer/rootdriven/devcontainer.json true
timed "devcontainer exec true (2)" devcontainer exec --workspace-folder $repo --config $repo/.devcontainer/rootdriven/devcontainer.json true
cid=$(docker ps -q --filter label=devcontainer.local_folder=$repo)
timed "docker exec true" docker exec "$cid" true
docker exec -u 2000:2000 "$cid" bash -c "$(probe)"
ls -ln $repo/.postcreate-ran
echo "== evil config (as root would run it if no policy)"
rm -rf /home/agent/evil-rootful && cp -r /opt/devc/evil2 /home/agent/evil-rootful
timed "devcontainer up evil" devcontainer up --workspace-folder /home/agent/evil-rootful >/root/up-evil.log 2>&1 || tail -15 /root/up-evil.log
devcontainer exec --workspace-folder /home/agent/evil-rootful bash -c "$(probe)" 2>&1
echo "== agent without the socket"
runuser -u agent -- docker ps 2>&1 | head -2
