#!/usr/bin/env bash
# Builds the Debian 12 "simulated VM" image for the docker provider without any container
# registry: debootstrap into a folder, configure it, `docker import`. The tag carries a hash of
# this recipe, so the image is rebuilt exactly when the recipe changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The host's own trust anchors (e.g. a proxy CA) go into the image, so the simulated VM reaches
# the package registries exactly as the host does.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()
recipe_hash=$(cat "$here/build.sh" "$here/packages.txt" "${extra_cas[@]}" | sha256sum | cut -c1-12)
tag="vmgen-debian12:$recipe_hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/vmgen-rootfs.XXXXXX)
cleanup() {
  if mountpoint -q "$root/proc"; then umount "$root/proc"; fi
  rm -rf "$root"
}
trap cleanup EXIT
packages=$(grep -v '^#' "$here/packages.txt" | grep -v '^$' | paste -sd" " -)

echo "==> debootstrap bookworm into $root (several minutes)" >&2
# debootstrap resolves a long --include list poorly; bootstrap a minimal system and let apt,
# inside the chroot, resolve the rest.
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >&2
cat >"$root/usr/sbin/policy-rc.d" <<'POLICY'
#!/bin/sh
exit 101
POLICY
chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends $packages >&2
umount "$root/proc"
rm -f "$root/usr/sbin/policy-rc.d"

echo "==> configuring the image" >&2
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
if ((${#extra_cas[@]})); then
  cp "${extra_cas[@]}" "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >&2
fi
# npm and pip bring their own CA lists; point both at the system's.
echo 'cafile=/etc/ssl/certs/ca-certificates.crt' >"$root/etc/npmrc"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
echo 'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' >>"$root/etc/environment"
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$root/etc/locale.gen"
chroot "$root" locale-gen >&2
echo 'LANG=en_US.UTF-8' >"$root/etc/default/locale"
# A cloud VM has no host keys and no machine id until first boot; cloud-init and systemd make them.
rm -f "$root"/etc/ssh/ssh_host_* "$root/etc/machine-id"
: >"$root/etc/machine-id"
# Only the NoCloud seed is ever present; skipping the others keeps boots fast.
echo 'datasource_list: [ NoCloud, None ]' >"$root/etc/cloud/cloud.cfg.d/90_vmgen_datasource.cfg"
# Units that cannot work inside a container.
for unit in systemd-resolved.service getty@tty1.service systemd-timesyncd.service \
            apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service; do
  chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
done
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*

echo "==> docker import $tag" >&2
tar -C "$root" -c . | docker import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=docker' \
  - "$tag" >&2
docker tag "$tag" vmgen-debian12:latest
echo "$tag"
