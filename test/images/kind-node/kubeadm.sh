#!/bin/bash
# kubeadm in the rig's kind nodes (issue 21, stage 2): the real
# kubeadm does init and join with the node's real kubelet. Before it runs, the
# control plane's images go into containerd's k8s.io namespace under the
# names kubeadm's manifests and addons use (nothing is pulled from
# registry.k8s.io); after it, pod-network.sh writes the node's CNI conflist.
# Anything else goes straight to the real kubeadm. init and join are logged
# in /kind/kubeadm.log.
set -o errexit -o nounset -o pipefail

readonly REAL=/usr/local/libexec/kubernetes/kubeadm

command=${1:-}
[[ $command == init || $command == join ]] || exec "$REAL" "$@"
exec > >(tee -a /kind/kubeadm.log) 2>&1
echo "kubeadm $* ($(date -u +%T.%N))"
ctr --namespace=k8s.io images import --all-platforms /kind/images/kube-images.tar >/dev/null
echo "imported the control plane's images ($(date -u +%T.%N))"
"$REAL" "$@"
/usr/local/libexec/kubernetes/pod-network.sh
echo "kubeadm $command done ($(date -u +%T.%N))"
