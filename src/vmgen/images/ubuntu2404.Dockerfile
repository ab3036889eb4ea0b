# The simulated VM for the docker provider, for machines that can pull from a registry:
# Ubuntu 24.04 with systemd as PID 1, cloud-init from a NoCloud seed, and sshd.
FROM ubuntu:24.04
ENV container=docker DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends systemd systemd-sysv dbus cloud-init locales \
      openssh-server sudo python3 python3-venv ca-certificates curl iproute2 iptables \
 && sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && locale-gen \
 && rm -f /etc/ssh/ssh_host_* && : > /etc/machine-id \
 && echo 'datasource_list: [ NoCloud, None ]' > /etc/cloud/cloud.cfg.d/90_vmgen_datasource.cfg \
 && systemctl mask systemd-resolved.service getty@tty1.service systemd-timesyncd.service \
 && userdel -r ubuntu 2>/dev/null || true \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
