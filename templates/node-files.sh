#!/bin/sh
# Runs inside a cluster node, all of devreg's file changes in one exec:
#   docker exec NODE sh -c "$(cat node-files.sh)" node-files write PATH CONTENT remove DIR ...
# Paths and contents arrive as arguments, so nothing from the config is ever
# part of this script's text. A written file appears whole (written beside it,
# then renamed): containerd re-reads hosts.toml on every pull.
set -eu

while [ $# -gt 0 ]; do
  case $1 in
    write)
      mkdir -p "$(dirname "$2")"
      printf '%s' "$3" > "$2.tmp"
      mv "$2.tmp" "$2"
      shift 3
      ;;
    remove)
      rm -rf "$2"
      shift 2
      ;;
    *)
      echo "node-files: unknown action $1" >&2
      exit 2
      ;;
  esac
done
