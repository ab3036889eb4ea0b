set -e
s=$(date +%s)
rm -rf /var/tmp/devc-base && debootstrap --variant=minbase bookworm /var/tmp/devc-base http://deb.debian.org/debian >/opt/devc/debootstrap.log 2>&1
rm -rf /var/tmp/devc-base/var/cache/apt/archives/*.deb
tar -C /var/tmp/devc-base -cf /var/tmp/devc-base.tar .
echo "debootstrap+tar: $(( $(date +%s) - s )) s, $(du -h /var/tmp/devc-base.tar | cut -f1)"
