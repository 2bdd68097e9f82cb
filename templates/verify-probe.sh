#!/bin/sh
# Runs inside a cluster node for `verify` (scripts/lib/cluster/verify.ts), one exec per node:
#   verify-probe pull SECONDS REF...      one `crictl pull` per REF, all at once;
#                                         prints "\036RC REF OUTPUT" per probe
#   verify-probe facts CERTS_D HOST...    which HOST has CERTS_D/HOST/hosts.toml,
#                                         and containerd's proxy variables
# References and hosts arrive as arguments, never as part of this text.
set -u

mode=$1
shift
case $mode in
  pull)
    seconds=$1
    shift
    # crictl waits as long as containerd tries hosts; a probe needs only the first.
    limit=""
    if command -v timeout >/dev/null 2>&1; then limit="timeout $seconds"; fi
    for ref; do
      (
        # shellcheck disable=SC2086 # $limit is empty or two words
        out=$($limit crictl pull "$ref" 2>&1)
        rc=$?
        printf '\036%s %s %s\n' "$rc" "$ref" "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-400)"
      ) &
    done
    wait
    ;;
  facts)
    dir=$1
    shift
    for host; do
      if [ -f "$dir/$host/hosts.toml" ]; then echo "hosts.toml $host"; fi
    done
    # containerd's own environment decides whether its pulls take a proxy.
    for pid in $(pgrep -x containerd 2>/dev/null || pidof containerd 2>/dev/null); do
      tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null
    done | grep -iE '^(http_proxy|https_proxy|no_proxy)=' | sed 's/^/env /'
    ;;
  *)
    echo "verify-probe: unknown mode $mode" >&2
    exit 2
    ;;
esac
