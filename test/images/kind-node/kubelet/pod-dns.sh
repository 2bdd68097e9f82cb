#!/bin/bash
# Before the kubelet starts: the resolv.conf it gives pods with dnsPolicy
# Default (and host-network pods: kube-proxy), which names the node's address
# where the node's names Docker's embedded DNS at 127.0.0.11, and a DNAT from
# the node's address, port 53, to the port that server listens on (what
# Docker's own rules do for 127.0.0.11 inside the node), for packets from pods
# (PREROUTING) and from the node itself (OUTPUT): CoreDNS forwards names
# outside the cluster there, and kube-proxy finds the control plane by name.
set -o errexit -o nounset -o pipefail
readonly EMBEDDED=127.0.0.11

address=$(ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1]; exit }')
sed "s/^nameserver $EMBEDDED\$/nameserver $address/" /etc/resolv.conf >/etc/kubernetes/pod-resolv.conf
rules=$(iptables-save -t nat)
for protocol in udp tcp; do
  port=$(sed -n "s|.*-d $EMBEDDED/32 -p $protocol .*--to-destination $EMBEDDED:\\([0-9]*\\).*|\\1|p" <<<"$rules")
  [[ -n $port ]] || continue
  for chain in PREROUTING OUTPUT; do
    rule=("$chain" -d "$address/32" -p "$protocol" --dport 53 -j DNAT --to-destination "$EMBEDDED:$port")
    iptables -t nat -C "${rule[@]}" 2>/dev/null || iptables -t nat -A "${rule[@]}"
  done
done
