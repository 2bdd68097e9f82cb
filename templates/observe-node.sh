#!/bin/sh
# Everything devreg reads from a cluster node, and verify's probe pulls, in one
# exec (scripts/lib/cluster/nodes.ts, observeNode); each section is asked for by name:
#   docker exec NODE sh -c "$(cat observe-node.sh)" observe-node \
#     [hosts DIR] [file PATH]... [containerd] [env] [pull SECONDS REF...]
#   hosts DIR      every DIR/*/hosts.toml         "\036hosts DIR/DOMAIN" + the file
#   file PATH      PATH, when it is a file         "\036file PATH" + the file
#   containerd     `containerd --version`, then `containerd config dump`
#                                                  "\036containerd-version", "\036containerd-config"
#   env            containerd's proxy variables    "\036env" + NAME=VALUE lines
#   gate           the pulls wait for a line on stdin (docker exec -i): `go`
#                  runs them, anything else leaves them out
#   pull ...       the node's clock, then one `crictl pull` per REF, all at once
#                                                  "\036since SECONDS", "\036pull RC REF OUTPUT" each
# Paths and references arrive as arguments, never as part of this text.
# Output that can be long is printed only after the pulls, whose one-line
# records would otherwise land in the middle of it.
set -u

containerd=0 env=0 gate=0 seconds=''
while [ $# -gt 0 ]; do
  case $1 in
    hosts)
      for f in "$2"/*/hosts.toml; do
        [ -f "$f" ] || continue
        printf '\036hosts %s\n' "${f%/hosts.toml}"
        cat "$f"
      done
      shift 2
      ;;
    file)
      if [ -f "$2" ]; then
        printf '\036file %s\n' "$2"
        cat "$2"
      fi
      shift 2
      ;;
    containerd) containerd=1; shift ;;
    env) env=1; shift ;;
    gate) gate=1; shift ;;
    pull) seconds=$2; shift 2; break ;;
    *)
      echo "observe-node: unknown section $1" >&2
      exit 2
      ;;
  esac
done

if [ -n "$seconds" ] && [ "$gate" = 1 ]; then
  # The caller reads the rest while it makes sure the pulls may run.
  read -r go || go=''
  [ "$go" = go ] || seconds=''
fi
if [ -n "$seconds" ]; then
  # verify reads the registries' logs from this moment on (`docker logs
  # --since`), by the clock Docker stamps them with: containers share the
  # kernel's. Without nanoseconds (a busybox date), the next whole second.
  since=$(date +%s.%N)
  case $since in
    *[!0-9.]* | *. | .* | '') since=$(($(date +%s) + 1)); sleep 1 ;;
  esac
  printf '\036since %s\n' "$since"
  # crictl waits as long as containerd tries registries; a probe needs only the first.
  limit=''
  if command -v timeout >/dev/null 2>&1; then limit="timeout $seconds"; fi
  for ref; do
    (
      # shellcheck disable=SC2086 # $limit is empty or two words
      out=$($limit crictl pull "$ref" 2>&1)
      rc=$?
      printf '\036pull %s %s %s\n' "$rc" "$ref" "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-400)"
    ) &
  done
fi

if [ "$containerd" = 1 ]; then
  version=$(containerd --version 2>&1)
  config=$(containerd config dump 2>/dev/null)
fi
if [ "$env" = 1 ]; then
  # containerd's own environment decides whether its pulls take a proxy.
  proxy=$(for pid in $(pgrep -x containerd 2>/dev/null || pidof containerd 2>/dev/null); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null
  done | grep -iE '^(http_proxy|https_proxy|no_proxy)=')
fi
wait

if [ "$containerd" = 1 ]; then
  printf '\036containerd-version\n%s\n' "$version"
  printf '\036containerd-config\n%s\n' "$config"
fi
if [ "$env" = 1 ]; then printf '\036env\n%s\n' "$proxy"; fi
exit 0
