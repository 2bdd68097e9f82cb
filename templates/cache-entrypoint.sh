#!/bin/sh
# devreg pull-through cache supervisor (PID 1 of every devreg cache container).
#
# distribution in proxy mode panics at start-up when its upstream is
# unreachable (distribution issue #4038: `panic: Get "<remote>/v2/"`), so after
# a reboot without network a plain registry:2 cache crash-loops exactly when it
# is needed. And once running, a proxy whose upstream drops packets makes every
# tag check wait for Go's 30 s dial timeout, longer than containerd waits. So
# this script picks the mode itself and keeps asking, with a short timeout (the
# registry's own probe has none and hangs for minutes when packets are dropped):
#   upstream answers   -> run the registry in proxy mode (pull-through), and
#                         switch to read-only after two failed probes in a row;
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
watch_timeout=${DEVREG_WATCH_TIMEOUT:-3}
watch_interval=${DEVREG_WATCH_INTERVAL:-2}
pid=

# Any HTTP answer (Docker Hub says 401) means reachable; distribution only
# panics when the request itself fails.
reachable() {
  out=$(timeout "$1" wget -q -O /dev/null "$remote/v2/" 2>&1) && return 0
  case $out in *"HTTP/"*) return 0 ;; esac
  return 1
}

# Starts the registry in the background in mode $1 (proxy or offline).
serve() {
  echo "$1" > /tmp/devreg-mode
  if [ "$1" = proxy ]; then
    echo "devreg: upstream $remote reachable, serving as pull-through cache"
    registry serve "$config" &
  else
    echo "devreg: upstream $remote unreachable, serving cached content read-only"
    env -u REGISTRY_PROXY_REMOTEURL -u REGISTRY_PROXY_USERNAME -u REGISTRY_PROXY_PASSWORD \
      REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled":true}' \
      registry serve "$config" &
  fi
  pid=$!
}

trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid"; exit 0' TERM INT

if reachable "$probe_timeout"; then mode=proxy; else mode=offline; fi
serve "$mode"
failures=0
while kill -0 "$pid" 2>/dev/null; do
  if [ "$mode" = proxy ]; then
    sleep "$watch_interval" &
    wait $!
    if reachable "$watch_timeout"; then
      failures=0
      continue
    fi
    failures=$((failures + 1))
    [ "$failures" -lt 2 ] && continue
    echo "devreg: upstream $remote stopped answering, switching to read-only"
    next=offline
  else
    sleep "$probe_interval" &
    wait $!
    reachable "$probe_timeout" || continue
    echo "devreg: upstream $remote is back, restarting in proxy mode"
    next=proxy
  fi
  kill -TERM "$pid"
  wait "$pid"
  mode=$next
  failures=0
  serve "$mode"
done
wait "$pid"
exit $?
