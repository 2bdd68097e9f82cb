#!/bin/bash
# Before the kubelet starts: on cgroup v1 it checks that its cgroup root
# (kind's cgroupRoot /kubelet, kubelet.slice under the systemd driver) exists
# in every controller, and creates nothing itself. The node's cgroup
# namespace is its own, so these are the node's cgroups. Controllers the
# machine mounts read-only (hugetlb, perf_event, net_cls) the kubelet does not need.
set -o nounset
[[ -f /sys/fs/cgroup/cgroup.controllers ]] && exit 0
for controller in /sys/fs/cgroup/*/; do
  [[ -L ${controller%/} || $controller == */unified/ ]] && continue
  mkdir -p "${controller}kubelet.slice" "${controller}kubelet" 2>/dev/null || true
done
exit 0
