#!/bin/bash
# Runs while the control-plane images are built, in the node's Debian root:
# copies iptables (its nft backend, as the node uses) with its extensions and
# every shared library they load into DIR, laid out as on the node, for
# kube-proxy's container.
set -o errexit -o nounset -o pipefail
out=${1:?directory to copy into}
readonly multi=/usr/sbin/xtables-nft-multi
readonly extensions=/usr/lib/x86_64-linux-gnu/xtables
files=("$multi" "$extensions"/*.so)
# ldd heads each file's list with "FILE:"; the libraries are the indented lines' paths.
mapfile -t libraries < <(ldd "${files[@]}" 2>/dev/null | awk '/^\t/ { for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u)
for file in "${files[@]}" "${libraries[@]}"; do
  mkdir -p "$out$(dirname "$file")"
  cp -L "$file" "$out$file"
done
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s xtables-nft-multi "$out/usr/sbin/$tool"
done
mkdir -p "$out/run" "$out/tmp" "$out/etc"
echo 'hosts: files dns' >"$out/etc/nsswitch.conf"
