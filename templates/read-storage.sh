#!/bin/sh
# Runs in a short-lived helper container (the registry's own image: busybox
# find, stat, grep, sed, xargs and awk) with a registry volume mounted
# read-only and as the working directory, for scripts/lib/registries/storage.ts:
#   docker run --rm -v VOLUME:/volume:ro -w /volume --entrypoint sh IMAGE -c "$(cat read-storage.sh)" read-storage list TAGS REVISIONS BLOB_OF LAYERS
#   ... read-storage blobs PATH...
#
# list: one traversal of the volume, then only the files whose content matters:
#   S BLOCKS SIZE MTIME ./PATH      every file and directory (stat)
#   L ./PATH:sha256:...             a tag's current/link and the digest in it
#   M ./PATH JSON                   a manifest blob, newlines folded
#   T DATE TIME ZONE ./PATH         a layer link's mtime to the nanosecond: when
#                                   a cache stored that blob for that repository
# Which paths those are is distribution's layout, and comes as arguments
# (scripts/lib/registries/registry-layout.ts): EREs over ./PATH for TAGS (tag links),
# REVISIONS (a repository's manifests) and LAYERS (layer links), and BLOB_OF,
# the sed expression that turns a revision into its blob's path.
# blobs: an M line for each PATH (relative to the volume) that is a file.
#
# xargs reads from pipes: busybox 1.35's xargs garbles names read from a file.

# awk: one line per file, "M PATH CONTENT", its newlines folded into spaces (JSON does not mind).
# shellcheck disable=SC2016 # awk's $0, not the shell's
fold='FNR==1{if(NR>1)print ""; printf "M %s ", FILENAME} {printf "%s ", $0} END{if(NR>0)print ""}'

mode=$1
shift
case $mode in
  list)
    tags=$1 revisions=$2 blob_of=$3 layers=$4
    out=$(mktemp -d)
    find . -exec stat -c 'S %b %s %Y %n' {} + > "$out/s"
    # shellcheck disable=SC2016 # awk's $0, not the shell's
    grep -E "^S [0-9]+ [0-9]+ [0-9]+ $tags\$" "$out/s" | cut -d' ' -f5- |
      xargs -r awk '{ print "L " FILENAME ":" $0 }' > "$out/l" &
    grep -E "^S [0-9]+ [0-9]+ [0-9]+ $revisions\$" "$out/s" |
      sed -E "$blob_of" | sort -u |
      while read -r f; do [ -f "$f" ] && echo "$f"; done |
      xargs -r awk "$fold" > "$out/m" &
    grep -E "^S [0-9]+ [0-9]+ [0-9]+ $layers\$" "$out/s" | cut -d' ' -f5- |
      xargs -r stat -c 'T %y %n' > "$out/t"
    wait
    cat "$out/s" "$out/l" "$out/m" "$out/t"
    ;;
  blobs)
    for f; do [ -f "$f" ] && echo "$f"; done | xargs -r awk "$fold"
    ;;
  *)
    echo "read-storage: unknown mode $mode" >&2
    exit 2
    ;;
esac
