#!/bin/bash
# kubeadm in the rig's kind nodes, which run a real control plane but no kubelet
# yet (issue 21, stage 1). kind runs `kubeadm init` on the control-plane node
# and `kubeadm join` on the others, each with the /kind/kubeadm.conf it wrote.
#
# init runs the real kubeadm's phases (certificates, kubeconfigs, the static-pod
# manifests of etcd, kube-apiserver and kube-controller-manager, the uploaded
# configs, the control-plane label and taint, bootstrap tokens and the CoreDNS
# and kube-proxy addons); what a kubelet would do with the manifests, systemd
# does: each becomes a service with the manifest's command line. Then the node
# registers itself as its kubelet would (register-node.sh), and CoreDNS runs
# as a service with the Corefile of the addon's ConfigMap. join does a
# kubelet's TLS bootstrap and registers the worker the same way. Anything
# else goes to the real kubeadm. Everything is logged in /kind/kubeadm.log.
set -o errexit -o nounset -o pipefail

readonly REAL=/usr/local/libexec/kubernetes/kubeadm
readonly REGISTER=/usr/local/libexec/kubernetes/register-node.sh
readonly PLANE=(etcd kube-apiserver kube-controller-manager)

command=${1:-}
[[ $command == init || $command == join ]] || exec "$REAL" "$@"
exec > >(tee -a /kind/kubeadm.log) 2>&1
echo "kubeadm $* ($(date -u +%T.%N))"

# kind passes --config=FILE to init and --config FILE to join.
config=/kind/kubeadm.conf
verbosity=--v=1
previous=
for arg in "$@"; do
  case "$arg" in
    --config=*) config=${arg#--config=} ;;
    --v=*) verbosity=$arg ;;
    *) [[ $previous != --config ]] || config=$arg ;;
  esac
  previous=$arg
done

phase() { "$REAL" "$command" phase "$@" --config="$config" "$verbosity"; }

# A field of one document (by kind) of kubeadm.conf, read as data by kubectl, offline.
config_field() { # kind jsonpath
  KUBECONFIG=/dev/null kubectl label --local -f "$config" devreg.rig/read=1 \
    -o jsonpath="{.kind}{\"\\t\"}{$2}{\"\\n\"}" | awk -F'\t' -v kind="$1" '$1 == kind {print $2; exit}'
}

# A kubeletExtraArgs value kind set for this node (kubeadm v1beta4: a list of name/value pairs).
kubelet_arg() { # this-config-kind name
  config_field "$1" ".nodeRegistration.kubeletExtraArgs[?(@.name==\"$2\")].value"
}

# The command line of a static pod kubeadm wrote, one word a line, read as data.
manifest_command() {
  KUBECONFIG=/dev/null kubectl label --local -f "$1" devreg.rig/read=1 \
    -o jsonpath='{range .spec.containers[0].command[*]}{@}{"\n"}{end}'
}

# A systemd service running a static pod's command line, with extra flags.
service() { # name extra-flag...
  local name=$1 word
  shift
  {
    echo "# Written by kubeadm (devreg rig): the static pod /kind/static-pods/$name.yaml as a service."
    echo "[Unit]"
    echo "Description=$name (static pod of kubeadm, run by systemd: no kubelet in this node)"
    echo "After=network.target"
    echo "[Service]"
    printf 'ExecStart=/usr/local/bin/%s' "$name"
    while IFS= read -r word; do printf ' \\\n  %s' "${word//%/%%}"; done < <(manifest_command "/kind/static-pods/$name.yaml" | tail -n +2)
    for word in "$@"; do printf ' \\\n  %s' "$word"; done
    printf '\nRestart=always\nRestartSec=1\nLimitNOFILE=infinity\n'
    printf '[Install]\nWantedBy=multi-user.target\n'
  } >"/etc/systemd/system/$name.service"
}

wait_ready() { # url what
  for _ in $(seq 1 600); do
    curl -fsS --max-time 2 --cacert /etc/kubernetes/pki/ca.crt "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$2 did not answer at $1 within 60 s" >&2
  journalctl --no-pager -n 40 -u "${PLANE[@]/%/.service}" >&2 || true
  return 1
}

register() { # config-kind kubeconfig
  local ip
  ip=$(kubelet_arg "$1" node-ip)
  NODE_IP=${ip:-$(hostname -i | awk '{print $1}')} \
    NODE_LABELS=$(kubelet_arg "$1" node-labels) \
    PROVIDER_ID=$(kubelet_arg "$1" provider-id) \
    KUBELET_VERSION=$(cat /kind/version) \
    RUNTIME_VERSION="containerd://$(containerd --version | awk '{print $3}' | sed 's/^v//')" \
    "$REGISTER" register "$2"
}

# CoreDNS as the addon's Deployment would run it: its Corefile from the coredns
# ConfigMap, in-cluster credentials of the coredns service account where a
# kubelet projects them, the API server at this node's address.
start_coredns() {
  local sa=/var/run/secrets/kubernetes.io/serviceaccount admin=/etc/kubernetes/admin.conf
  mkdir -p /etc/coredns "$sa"
  kubectl --kubeconfig=$admin get configmap coredns -n kube-system -o jsonpath='{.data.Corefile}' >/etc/coredns/Corefile
  kubectl --kubeconfig=$admin create token coredns -n kube-system --duration=8760h >"$sa/token"
  cp /etc/kubernetes/pki/ca.crt "$sa/ca.crt"
  echo kube-system >"$sa/namespace"
  cat >/etc/systemd/system/coredns.service <<UNIT
# Written by kubeadm (devreg rig): CoreDNS as the coredns Deployment's pod would run, without a kubelet.
[Unit]
Description=CoreDNS with the Corefile of kube-system/coredns
After=kube-apiserver.service
[Service]
Environment=KUBERNETES_SERVICE_HOST=$(config_field InitConfiguration .localAPIEndpoint.advertiseAddress)
Environment=KUBERNETES_SERVICE_PORT=$(config_field InitConfiguration .localAPIEndpoint.bindPort)
ExecStart=/usr/local/bin/coredns -conf /etc/coredns/Corefile
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now coredns.service
}

init() {
  phase certs all
  phase kubeconfig all
  phase etcd local
  phase control-plane all
  # Nothing else is to run them: no kubelet reads /etc/kubernetes/manifests.
  mkdir -p /kind/static-pods
  mv /etc/kubernetes/manifests/*.yaml /kind/static-pods/
  service etcd
  service kube-apiserver
  # No kubelet renews a lease or a heartbeat: the node lifecycle controller stays
  # (it removes the not-ready taint every new Node gets), but never finds one late.
  service kube-controller-manager --node-monitor-grace-period=8760h
  systemctl daemon-reload
  systemctl enable --now "${PLANE[@]/%/.service}"
  wait_ready https://127.0.0.1:6443/readyz kube-apiserver
  # The kubeadm-config and kubelet-config ConfigMaps, and the binding admin.conf's group needs.
  phase upload-config all
  register InitConfiguration /etc/kubernetes/kubelet.conf
  phase mark-control-plane
  phase bootstrap-token
  phase addon all
  start_coredns
  echo "Your Kubernetes control-plane has initialized successfully! (devreg rig: no kubelet)"
}

join() {
  local kubeconfig=/etc/kubernetes/kubelet.conf
  if [[ $(config_field JoinConfiguration .controlPlane) != @(|null) ]]; then
    echo "kubeadm (devreg rig): joining a second control-plane node is not implemented; workers only" >&2
    exit 1
  fi
  # kind's discovery: a bootstrap token and no CA pinning (unsafeSkipCAVerification).
  "$REGISTER" bootstrap "$(config_field JoinConfiguration .discovery.bootstrapToken.apiServerEndpoint)" \
    "$(config_field JoinConfiguration .discovery.bootstrapToken.token)" \
    $kubeconfig /var/lib/kubelet/pki/kubelet-client-current.pem
  mkdir -p /etc/kubernetes/pki
  cp /var/lib/kubelet/pki/ca.crt /etc/kubernetes/pki/ca.crt
  register JoinConfiguration $kubeconfig
  echo "This node has joined the cluster. (devreg rig: no kubelet)"
}

"$command"
