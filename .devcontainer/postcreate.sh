#!/bin/sh
# The devcontainer's postCreateCommand (`just postcreate`): install the
# dependencies, ensure the registries and run preflight. Unattended (nothing
# reads a terminal) and idempotent. Silent when all is well; otherwise one
# line saying which step failed and why, the full output in a log file.
set -u
cd "$(dirname "$0")/.." || exit 1
runtime=${DEVREG_RUNTIME:-node_modules/.bin/bun}
log=${TMPDIR:-/tmp}/devreg-postcreate.log
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
: > "$log"

# Runs a step with its output in the log; on failure says why in one line:
# the step's last `error:` line with the lines indented under it, or its last line.
step() {
  what=$1
  shift
  "$@" < /dev/null > "$out" 2>&1
  code=$?
  cat "$out" >> "$log"
  [ "$code" -eq 0 ] && return 0
  reason=$(awk '/^error: / { msg = substr($0, 8); more = 1; next } more && /^ / { sub(/^ +/, ""); msg = msg " " $0; next } { more = 0 } END { print msg }' "$out")
  [ -n "$reason" ] || reason=$(grep . "$out" | tail -n 1)
  echo "postcreate: $what failed: ${reason:-exit code $code} (full output: $log)" >&2
  exit 1
}

# docker-in-docker starts dockerd alongside the container: give it a minute.
waited=0
until docker info > /dev/null 2>&1; do
  if [ "$waited" -ge 60 ]; then
    step 'waiting for Docker' docker info
  fi
  sleep 1
  waited=$((waited + 1))
done

# 1. Dependencies, when package.json or the lock file changed since the last install.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ -n "$(find package.json package-lock.json -newer "$stamp")" ]; then
  step 'npm ci' npm ci --no-audit --no-fund
fi

# 2. The local registry and the caches.
step 'dev-registry' "$runtime" scripts/dev-registry.ts up

# 3. Every configured name, registry and mirror file.
step 'preflight' "$runtime" scripts/preflight-dns.ts
