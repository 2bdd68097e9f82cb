#!/bin/sh
# Stands in for k3d's helper images, one image for both:
# - the tools node: k3d v5.9.0 runs it with `noop` while it creates a cluster
#   (pkg/client/tools.go runToolsNode) and deletes it once it has read the
#   environment. `k3d image import`, which needs the real k3d-tools, is not reached.
# - the server load balancer: run with no command after k3d wrote
#   /etc/confd/values.yaml into it (pkg/types/loadbalancer.go: ports, each
#   "PORT.tcp" with the nodes behind it). It forwards each TCP port to the
#   first of its nodes, as k3d's nginx does with one server (busybox nc, a
#   process per connection), and says nginx's "start worker processes", which
#   k3d waits for (pkg/types/k3slogs.go).
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
    # Each "  PORT.tcp:" key and the first "  - NODE" item under it, as k3d writes them (sigs.k8s.io/yaml).
    awk '/^ports:/ {on = 1; next} /^[^ ]/ {on = 0} on && /^  [0-9]+\.tcp:$/ {port = $1; sub(/\.tcp:$/, "", port); next}
      on && port != "" && /^ *- / {print port, $2; port = ""}' /etc/confd/values.yaml >/tmp/proxied
    [ -s /tmp/proxied ] || { echo "no TCP port in /etc/confd/values.yaml" >&2; exit 1; }
    while read -r port node; do
      nc -ll -p "$port" -e nc "$node" "$port" &
    done </tmp/proxied
    echo "$(date '+%Y/%m/%d %H:%M:%S') [notice] 1#1: start worker processes"
    sleep_until_stopped
    ;;
  *)
    echo "k3d helper (devreg test image): runs as the tools node (noop) or the load balancer (no command), not: $*" >&2
    exit 1
    ;;
esac
