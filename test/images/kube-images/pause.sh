#!/bin/sh
# The pod sandbox's one process (registry.k8s.io/pause in the rig): holds the
# pod's namespaces until containerd stops it, reaping what it inherits.
trap 'exit 0' TERM INT
while :; do
  busybox sleep 3600 &
  wait
done
