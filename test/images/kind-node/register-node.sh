#!/bin/sh
# What a kubelet does to put its node into the cluster, for the rig's nodes,
# which run no kubelet yet (issue 21, stage 1): kind's nodes (kubeadm.sh) and
# the k3s-like node (test/images/k3s-node). POSIX sh: bash runs it in kind
# nodes, busybox sh in the k3s-like node; the real kubectl does every API call.
#
#   register-node.sh bootstrap SERVER TOKEN KUBECONFIG PEM
#     A kubelet's TLS bootstrap with a bootstrap token: the cluster's CA from
#     kube-public/cluster-info (readable anonymously, as kubeadm's discovery
#     reads it; like kind's discovery, without pinning the CA), a key and a CSR for system:node:NAME that
#     kube-controller-manager's csrapprover approves for the token's group
#     (kubeadm's bootstrap RBAC) and its signer signs. PEM gets certificate and
#     key, KUBECONFIG points at it, as the kubelet's after its bootstrap.
#   register-node.sh register KUBECONFIG
#     The Node as a kubelet creates it, with the node's own identity, and its
#     status as a kubelet reports it: Ready, addresses, capacity, node info.
#     From the environment: NODE_IP, KUBELET_VERSION, RUNTIME_VERSION (as in
#     nodeInfo, e.g. containerd://2.3.4), NODE_LABELS (k=v,...) and PROVIDER_ID.
set -eu

node=$(hostname)

fail() {
  echo "register-node.sh: $*" >&2
  exit 1
}

# Runs "$@" until it succeeds, every 0.2 s for at most $1 tries.
retry() {
  tries=$1
  shift
  n=0
  until "$@"; do
    n=$((n + 1))
    [ "$n" -lt "$tries" ] || return 1
    sleep 0.2
  done
}

# kube-public/cluster-info, read anonymously, as kubeadm's discovery reads it:
# kubectl without credentials would ask for a user name instead. Only a 200
# counts; the body goes to FILE.
cluster_info() { # server file
  printf 'GET /api/v1/namespaces/kube-public/configmaps/cluster-info HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" |
    openssl s_client -quiet -connect "$1" 2>/dev/null | tr -d '\r' >"$2.http" || return 1
  head -1 "$2.http" | grep -q ' 200 ' || return 1
  sed '1,/^$/d' "$2.http" >"$2"
}

bootstrap() {
  server=$1 token=$2 kubeconfig=$3 pem=$4
  dir=$(dirname "$pem")
  mkdir -p "$dir" "$(dirname "$kubeconfig")"
  # The CA as cluster-info publishes it: the kubeconfig in its data, read as data.
  retry 300 cluster_info "$server" "$dir/cluster-info.json" || fail "no kube-public/cluster-info at https://$server within 60 s"
  KUBECONFIG=/dev/null kubectl label --local -f "$dir/cluster-info.json" devreg.rig/read=1 -o jsonpath='{.data.kubeconfig}' \
    >"$dir/cluster-info.kubeconfig"
  kubectl config view --kubeconfig="$dir/cluster-info.kubeconfig" --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' |
    base64 -d >"$dir/ca.crt"
  [ -s "$dir/ca.crt" ] || fail "kube-public/cluster-info holds no CA"

  boot="$dir/bootstrap.kubeconfig"
  kubectl config --kubeconfig="$boot" set-cluster default --server="https://$server" \
    --certificate-authority="$dir/ca.crt" --embed-certs=true >/dev/null
  kubectl config --kubeconfig="$boot" set-credentials bootstrap --token="$token" >/dev/null
  kubectl config --kubeconfig="$boot" set-context default --cluster=default --user=bootstrap >/dev/null
  kubectl config --kubeconfig="$boot" use-context default >/dev/null

  # An ECDSA P-256 key, as the kubelet makes one, and its CSR for the node's user and group.
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/kubelet-client.key" 2>/dev/null
  openssl req -new -config /dev/null -key "$dir/kubelet-client.key" -subj "/O=system:nodes/CN=system:node:$node" -out "$dir/kubelet-client.csr"
  csr=$(kubectl --kubeconfig="$boot" create -o jsonpath='{.metadata.name}' -f - <<CSR
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  generateName: node-csr-
spec:
  request: $(base64 -w0 "$dir/kubelet-client.csr")
  signerName: kubernetes.io/kube-apiserver-client-kubelet
  usages: [digital signature, client auth]
CSR
)
  signed() {
    cert=$(kubectl --kubeconfig="$boot" get csr "$csr" -o jsonpath='{.status.certificate}')
    [ -n "$cert" ]
  }
  retry 300 signed || fail "CSR $csr for $node was not signed within 60 s"
  { echo "$cert" | base64 -d && cat "$dir/kubelet-client.key"; } >"$pem"
  chmod 0600 "$pem"

  kubectl config --kubeconfig="$kubeconfig" set-cluster default --server="https://$server" \
    --certificate-authority="$dir/ca.crt" --embed-certs=true >/dev/null
  kubectl config --kubeconfig="$kubeconfig" set-credentials "system:node:$node" \
    --client-certificate="$pem" --client-key="$pem" >/dev/null
  kubectl config --kubeconfig="$kubeconfig" set-context default --cluster=default --user="system:node:$node" >/dev/null
  kubectl config --kubeconfig="$kubeconfig" use-context default >/dev/null
  echo "node $node: client certificate signed through CSR $csr"
}

# NODE_LABELS (k=v,k=v) as YAML mapping entries.
labels_yaml() {
  echo "${NODE_LABELS:-}" | tr ',' '\n' | while IFS='=' read -r key value; do
    [ -n "$key" ] && printf '    %s: "%s"\n' "$key" "$value"
  done
}

# PRETTY_NAME of os-release, as the kubelet reports it; empty where there is none.
os_image() {
  sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null || true
}

# The Node as the kubelet creates it: its own labels, then those it was given (--node-labels).
node_yaml() {
  cat <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels:
    kubernetes.io/hostname: $node
    kubernetes.io/os: linux
    kubernetes.io/arch: $arch
    beta.kubernetes.io/os: linux
    beta.kubernetes.io/arch: $arch
$(labels_yaml)
spec:
  providerID: "${PROVIDER_ID:-}"
YAML
}

register() {
  kubeconfig=$1
  : "${NODE_IP:?}" "${KUBELET_VERSION:?}" "${RUNTIME_VERSION:?}"
  arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
  # Tried until the API server answers: a node may start before its server.
  work=$(dirname "$kubeconfig")
  node_yaml >"$work/node.yaml"
  apply_node() {
    kubectl --kubeconfig="$kubeconfig" apply --server-side --field-manager=kubelet -f "$work/node.yaml" 2>"$work/node.err"
  }
  retry 300 apply_node || fail "Node $node was not registered: $(cat "$work/node.err")"
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  memory=$(awk '/^MemTotal:/ {print $2 "Ki"}' /proc/meminfo)
  storage=$(df -k / | awk 'NR == 2 {print $2 "Ki"}')
  capacity="{\"cpu\": \"$(nproc)\", \"memory\": \"$memory\", \"ephemeral-storage\": \"$storage\", \"pods\": \"110\"}"
  condition() { # type status reason
    printf '{"type": "%s", "status": "%s", "reason": "%s", "message": "%s", "lastHeartbeatTime": "%s", "lastTransitionTime": "%s"}' \
      "$1" "$2" "$3" "reported once by the devreg rig: no kubelet runs in this node" "$now" "$now"
  }
  # Server-side apply of the status subresource: a PATCH, as the kubelet's; the
  # Node authorizer lets a node patch its status but not read it first.
  kubectl --kubeconfig="$kubeconfig" apply --server-side --field-manager=kubelet --subresource=status -f - <<JSON
{
  "apiVersion": "v1",
  "kind": "Node",
  "metadata": {"name": "$node"},
  "status": {
    "conditions": [
      $(condition MemoryPressure False KubeletHasSufficientMemory),
      $(condition DiskPressure False KubeletHasNoDiskPressure),
      $(condition PIDPressure False KubeletHasSufficientPID),
      $(condition Ready True KubeletReady)
    ],
    "addresses": [{"type": "InternalIP", "address": "$NODE_IP"}, {"type": "Hostname", "address": "$node"}],
    "capacity": $capacity,
    "allocatable": $capacity,
    "nodeInfo": {
      "machineID": "$(cat /etc/machine-id 2>/dev/null || true)",
      "systemUUID": "",
      "bootID": "$(cat /proc/sys/kernel/random/boot_id)",
      "kernelVersion": "$(uname -r)",
      "osImage": "$(os_image)",
      "containerRuntimeVersion": "$RUNTIME_VERSION",
      "kubeletVersion": "$KUBELET_VERSION",
      "operatingSystem": "linux",
      "architecture": "$arch"
    }
  }
}
JSON
}

case "${1:-}" in
  bootstrap)
    [ $# -eq 5 ] || fail "usage: register-node.sh bootstrap SERVER TOKEN KUBECONFIG PEM"
    bootstrap "$2" "$3" "$4" "$5"
    ;;
  register)
    [ $# -eq 2 ] || fail "usage: register-node.sh register KUBECONFIG"
    register "$2"
    ;;
  *) fail "usage: register-node.sh bootstrap|register ..." ;;
esac
