#!/bin/sh
# Prints the status and headers of GET URL/v2/ for each URL (http://NAME:PORT),
# each after an ASCII record separator and the URL; run by preflight in a node
# (scripts/lib/machine/preflight.ts, pingV2In):
#   docker exec NODE sh -c "$(cat ping-v2.sh)" ping-v2 URL...
# Uses curl (kind nodes have it) or else busybox nc. A static busybox cannot
# use the libc resolver, so nc gets the address getent found.
for u; do
  printf '\036%s\n' "$u"
  if command -v curl >/dev/null 2>&1; then curl -sS -m 5 -o /dev/null -D - "$u/v2/" 2>&1
  elif command -v nc >/dev/null 2>&1; then
    hp=${u#*://}; h=${hp%:*}; a=$h
    if command -v getent >/dev/null 2>&1; then a=$(getent ahostsv4 "$h" 2>/dev/null | awk '{print $1; exit}'); fi
    if [ -z "$a" ]; then echo "$h does not resolve"
    else printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$hp" | nc -w 5 "$a" "${hp##*:}" 2>&1
    fi
  else echo "no curl or nc in this container"
  fi
done
