#!/bin/sh
# Prints every hosts.toml under a certs.d directory ($1), each as a record:
# an ASCII record separator, its directory, a newline, then the file. Run in a
# node by devreg (scripts/lib/cluster/providers/kind.ts) so one exec reads them all.
set -eu
for f in "$1"/*/hosts.toml; do
  [ -f "$f" ] || continue
  printf '\036%s\n' "${f%/hosts.toml}"
  cat "$f"
done
