#!/bin/bash
# PID 1 of a rig node until it execs systemd: what kind's nodes do before
# systemd starts (kind's own entrypoint is the reference for which fixes a
# node needs; this is our own, smaller version). It never prints "detected
# cgroup v1": kind stops waiting at that line, before systemd has started
# containerd, and then skips the containerd restart a real node gets.
set -o errexit -o nounset -o pipefail

# systemd in a container expects /sys read-only; the cgroup mounts beneath stay writable.
mount -o remount,ro /sys
# Mount propagation for what containerd mounts.
mount --make-rshared /
if [[ ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
  mount --make-rprivate /sys/fs/cgroup
fi

# Every node its own machine-id, as kubelet and CNIs expect.
rm -f /etc/machine-id
systemd-machine-id-setup >/dev/null

# kind passes HTTP_PROXY, HTTPS_PROXY and NO_PROXY into the node's
# environment; systemd hands them to every service, containerd included.
mkdir -p /etc/systemd/system.conf.d
cat >/etc/systemd/system.conf.d/proxy-default-environment.conf <<CONF
[Manager]
DefaultEnvironment="HTTP_PROXY=${HTTP_PROXY:-}" "HTTPS_PROXY=${HTTPS_PROXY:-}" "NO_PROXY=${NO_PROXY:-}"
CONF

exec "$@"
