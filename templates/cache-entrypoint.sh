#!/bin/sh
# devreg pull-through cache supervisor (PID 1 of every devreg cache container).
#
# distribution in proxy mode panics at start-up when its upstream is
# unreachable (distribution issue #4038: `panic: Get "<remote>/v2/"`), so after
# a reboot without network a plain registry:2 cache crash-loops exactly when it
# is needed. This script decides the mode itself, with a short timeout (the
# registry's own probe has none and hangs for minutes when packets are dropped):
#   upstream answers   -> exec the registry in proxy mode (pull-through);
#   upstream silent    -> serve the volume read-only, without the proxy, and
#                         switch to proxy mode as soon as the upstream answers.
# Docker's restart policy reruns this script, so the same holds for restarts
# devreg does not see. The mode is written to /tmp/devreg-mode for `status`.
# registry:2 keeps its config in /etc/docker/registry, registry:3 in /etc/distribution.
config=$1
if [ -z "$config" ]; then
  for c in /etc/distribution/config.yml /etc/docker/registry/config.yml; do
    [ -f "$c" ] && { config=$c; break; }
  done
fi
remote=$REGISTRY_PROXY_REMOTEURL
probe_timeout=${DEVREG_PROBE_TIMEOUT:-5}
probe_interval=${DEVREG_PROBE_INTERVAL:-10}

# Any HTTP answer (Docker Hub says 401) means reachable; distribution only
# panics when the request itself fails.
reachable() {
  out=$(timeout "$probe_timeout" wget -q -O /dev/null "$remote/v2/" 2>&1) && return 0
  case $out in *"HTTP/"*) return 0 ;; esac
  return 1
}

while :; do
  if reachable; then
    echo proxy > /tmp/devreg-mode
    echo "devreg: upstream $remote reachable, serving as pull-through cache"
    exec registry serve "$config"
  fi
  echo offline > /tmp/devreg-mode
  echo "devreg: upstream $remote unreachable, serving cached content read-only"
  env -u REGISTRY_PROXY_REMOTEURL -u REGISTRY_PROXY_USERNAME -u REGISTRY_PROXY_PASSWORD \
    REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled":true}' \
    registry serve "$config" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
  while kill -0 "$pid" 2>/dev/null; do
    sleep "$probe_interval" &
    wait $!
    if reachable; then
      echo "devreg: upstream $remote is back, restarting in proxy mode"
      kill -TERM "$pid"
      wait "$pid"
      continue 2
    fi
  done
  wait "$pid"
  exit $?
done
