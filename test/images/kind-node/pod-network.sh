#!/bin/bash
# The node's part of the rig's one-bridge pod network (what kindnet does on
# kindest/node): once the controller manager has given this node its podCIDR,
# a conflist for the bridge, host-local, loopback and portmap plugins in
# /opt/cni/bin, whose addresses come from that range. Run by kubeadm.sh after
# init or join; the kubelet reports the node Ready once the file is there.
# Routes to the other nodes' pods: the DaemonSet of manifests/default-cni.yaml.
set -o errexit -o nounset -o pipefail
readonly KUBECONFIG=/etc/kubernetes/kubelet.conf
readonly CONFLIST=/etc/cni/net.d/10-devreg-rig-bridge.conflist

node=$(hostname)
cidr=
for _ in $(seq 1 600); do
  cidr=$(kubectl --kubeconfig=$KUBECONFIG get node "$node" -o jsonpath='{.spec.podCIDR}' 2>/dev/null) || true
  [[ -n $cidr ]] && break
  sleep 0.1
done
if [[ -z $cidr ]]; then
  echo "pod-network: node $node got no podCIDR within 60 s (is the controller manager allocating node CIDRs?)" >&2
  exit 1
fi
# Traffic between pods on the bridge passes iptables, so kube-proxy's NAT of a
# Service answered by a pod on the same bridge is undone on the way back.
sysctl -q -w net.bridge.bridge-nf-call-iptables=1
mkdir -p "$(dirname $CONFLIST)"
cat >"$CONFLIST.partial" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "devreg-rig",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CONF
mv "$CONFLIST.partial" "$CONFLIST"
echo "pod-network: $CONFLIST for $cidr"
