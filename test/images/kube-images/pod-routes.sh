#!/bin/sh
# The routes of the rig's bridge pod network between nodes (kindnet's other
# job on kindest/node), run on every node by the DaemonSet of kind's
# default-cni.yaml (test/images/kind-node/manifests): every few seconds, a
# route to each other node's podCIDR through that node's InternalIP. POSIX
# sh for busybox; kubectl reads the Nodes with the pod's service account.
set -u
fields='{range .items[*]}{.metadata.name}{" "}{.spec.podCIDR}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'
self=${NODE_NAME:?the node this pod runs on, from the downward API}

while :; do
  kubectl get nodes -o jsonpath="$fields" | while read -r node cidr address; do
    if [ "$node" = "$self" ] || [ -z "$cidr" ] || [ -z "$address" ]; then continue; fi
    busybox ip route replace "$cidr" via "$address" || echo "pod-routes: no route to $node's $cidr via $address" >&2
  done
  busybox sleep 5
done
