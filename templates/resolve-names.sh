#!/bin/sh
# Prints `NAME ADDRESS...` for each NAME, run by preflight in a container on
# the cluster network or in a node (scripts/lib/machine/dns.ts, resolveIn):
#   docker exec NODE sh -c "$(cat resolve-names.sh)" resolve-names NAME...
#   docker run --rm ... --entrypoint sh IMAGE -c "$(cat resolve-names.sh)" resolve-names NAME...
# getent goes through the libc resolver (files, then DNS); images without it
# (busybox) fall back to nslookup, which asks DNS only.
for n; do
  if command -v getent >/dev/null 2>&1; then
    a=$( (getent ahosts "$n" 2>/dev/null || getent hosts "$n" 2>/dev/null) | awk '{print $1}')
  else
    a=$(nslookup "$n" 2>/dev/null | awk '/^Name:/ {f=1; next} f && /^Address/ {for (i = 2; i <= NF; i++) if ($i ~ /^[0-9a-fA-F:.]+$/ && $i ~ /[.:]/) {print $i; break}}')
  fi
  # Unquoted on purpose: each address becomes its own word on the line.
  # shellcheck disable=SC2046
  echo "$n" $(printf '%s\n' "$a" | awk 'NF && !seen[$0]++')
done
