#!/usr/bin/env bash
# Option (a), Podman: as the agent. Run: runuser -l agent -c 'bash /opt/devc/option-podman.sh'
set -uo pipefail
. /opt/devc/lib.sh
export XDG_RUNTIME_DIR=/run/user/$(id -u) PATH=/usr/local/bin:/usr/bin:/bin
cd ~
mkdir -p ~/.config/containers
printf '[storage]\ndriver = "%s"\n' "${DRIVER:-overlay}" >~/.config/containers/storage.conf
podman system reset -f >/dev/null 2>&1
podman info --format 'driver={{.Store.GraphDriverName}} cgroups={{.Host.CgroupsVersion}}/{{.Host.CgroupManager}} net={{.Host.NetworkBackend}} rootless={{.Host.Security.Rootless}} runtime={{.Host.OCIRuntime.Name}}' 2>&1
timed "podman import" podman import -q ~/base.tar localhost/devc-base:12
timed "podman run true (first)" podman run --rm localhost/devc-base:12 true
timed "podman run true" podman run --rm localhost/devc-base:12 true
rm -rf ~/repo-podman && cp -r /opt/devc/repo ~/repo-podman
timed "devcontainer up cold" devcontainer up --workspace-folder ~/repo-podman --docker-path podman >~/up-podman.log 2>&1 || tail -30 ~/up-podman.log
tail -1 ~/up-podman.log
timed "devcontainer exec true" devcontainer exec --workspace-folder ~/repo-podman --docker-path podman true
timed "devcontainer exec true (2)" devcontainer exec --workspace-folder ~/repo-podman --docker-path podman true
cid=$(podman ps -q --filter label=devcontainer.local_folder=$HOME/repo-podman)
timed "podman exec true" podman exec "$cid" true
devcontainer exec --workspace-folder ~/repo-podman --docker-path podman bash -c "$(probe)"
ls -ln ~/repo-podman/.postcreate-ran
timed "devcontainer up again (container running)" sh -c 'devcontainer up --workspace-folder ~/repo-podman --docker-path podman >/dev/null 2>&1'
podman stop -t 1 "$cid" >/dev/null
timed "devcontainer up after stop" sh -c 'devcontainer up --workspace-folder ~/repo-podman --docker-path podman >/dev/null 2>&1'
podman rm -f -t 1 "$cid" >/dev/null
timed "devcontainer up, image kept, container removed" sh -c 'devcontainer up --workspace-folder ~/repo-podman --docker-path podman >/dev/null 2>&1'
echo "== evil config"
rm -rf ~/evil-podman && cp -r /opt/devc/evil ~/evil-podman
timed "devcontainer up evil" devcontainer up --workspace-folder ~/evil-podman --docker-path podman >~/up-evil-podman.log 2>&1 || tail -15 ~/up-evil-podman.log
devcontainer exec --workspace-folder ~/evil-podman --docker-path podman bash -c "$(probe)" 2>&1
podman images
