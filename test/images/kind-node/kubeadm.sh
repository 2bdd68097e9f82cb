#!/bin/bash
# Stand-in for kubeadm in rig nodes: no kubelet or API server runs on these
# machines. kind runs `kubeadm init` on the control-plane node and `kubeadm
# join` on the others, each with the /kind/kubeadm.conf it wrote; init leaves
# the admin.conf kind then reads (exactly one cluster, user and context).
# Every call is logged in /kind/stand-in.log; anything else is refused.
set -o errexit -o nounset -o pipefail

echo "kubeadm $*" >>/kind/stand-in.log
refuse() {
  echo "kubeadm (devreg rig stand-in): $*" >&2
  exit 1
}

command=${1:-}
shift || true
[[ -s /kind/kubeadm.conf ]] || refuse "no /kind/kubeadm.conf: kind writes it before init and join"
for arg in "$@"; do
  case "${arg}" in
    --config=/kind/kubeadm.conf | --config | /kind/kubeadm.conf | --skip-token-print | --skip-phases=* | --ignore-preflight-errors=* | --v=*) ;;
    *) refuse "kubeadm ${command}: the stand-in does not implement ${arg}" ;;
  esac
done

case "${command}" in
  init)
    mkdir -p /etc/kubernetes
    cat >/etc/kubernetes/admin.conf <<CONF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: ZGV2cmVnLXJpZy1zdGFuZC1pbg==
    server: https://$(hostname):6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ZGV2cmVnLXJpZy1zdGFuZC1pbg==
    client-key-data: ZGV2cmVnLXJpZy1zdGFuZC1pbg==
CONF
    echo "Your Kubernetes control-plane has initialized successfully! (devreg rig stand-in)"
    ;;
  join)
    echo "This node has joined the cluster. (devreg rig stand-in)"
    ;;
  *)
    refuse "the stand-in implements init and join, not '${command}'"
    ;;
esac
