#!/bin/bash
# Stand-in for kubectl in rig nodes: kind uses it with the admin.conf to
# taint and label nodes and to create the CNI and storage manifests. It logs
# every call in /kind/stand-in.log, keeps each manifest under /kind/applied,
# and refuses other verbs and flags.
set -o errexit -o nounset -o pipefail

echo "kubectl $*" >>/kind/stand-in.log
refuse() {
  echo "kubectl (devreg rig stand-in): $*" >&2
  exit 1
}

verb=""
file=""
words=()
while (($#)); do
  case "$1" in
    --kubeconfig=/etc/kubernetes/admin.conf) ;;
    --kubeconfig)
      [[ ${2:-} == /etc/kubernetes/admin.conf ]] || refuse "only the node's admin.conf is a kubeconfig here"
      shift
      ;;
    -f | --filename)
      file=${2:-}
      shift
      ;;
    --all | --overwrite) ;;
    -*) refuse "the stand-in does not implement ${1}" ;;
    *)
      if [[ -z ${verb} ]]; then verb=$1; else words+=("$1"); fi
      ;;
  esac
  shift
done
[[ -f /etc/kubernetes/admin.conf ]] || refuse "no /etc/kubernetes/admin.conf: kubeadm init has not run"

case "${verb}" in
  create | apply)
    [[ -n ${file} ]] || refuse "${verb} needs -f FILE or -f -"
    mkdir -p /kind/applied
    target=/kind/applied/$(date +%s%N).yaml
    if [[ ${file} == - ]]; then cat >"${target}"; else cp "${file}" "${target}"; fi
    echo "manifest ${verb}d (devreg rig stand-in)"
    ;;
  taint | label)
    [[ ${words[0]:-} == nodes || ${words[0]:-} == node ]] || refuse "${verb} works on nodes only"
    echo "node/$(hostname) ${verb}ed (devreg rig stand-in)"
    ;;
  *)
    refuse "the stand-in implements create, apply, taint and label, not '${verb}'"
    ;;
esac
