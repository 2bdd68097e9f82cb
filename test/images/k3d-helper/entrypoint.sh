#!/bin/sh
# Stands in for k3d's helper images, one image for both:
# - the tools node: k3d v5.9.0 runs it with `noop` while it creates a cluster
#   (pkg/client/tools.go runToolsNode) and deletes it once it has read the
#   environment. `k3d image import`, which needs the real k3d-tools, is not reached.
# - the server load balancer: run with no command after k3d wrote
#   /etc/confd/values.yaml into it; k3d waits for nginx's "start worker
#   processes" (pkg/types/k3slogs.go). Nothing is proxied: no API server is behind it.
set -eu
sleep_until_stopped() {
  trap 'exit 0' TERM INT
  while :; do
    sleep 3600 &
    wait $!
  done
}
case "${1:-}" in
  noop) sleep_until_stopped ;;
  "")
    if [ ! -s /etc/confd/values.yaml ]; then
      echo "no /etc/confd/values.yaml: k3d writes it before it starts the load balancer" >&2
      exit 1
    fi
    echo "$(date '+%Y/%m/%d %H:%M:%S') [notice] 1#1: start worker processes"
    sleep_until_stopped
    ;;
  *)
    echo "k3d helper (devreg test image): runs as the tools node (noop) or the load balancer (no command), not: $*" >&2
    exit 1
    ;;
esac
