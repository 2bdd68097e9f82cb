#!/bin/sh
# Runs in a short-lived helper container (the registry's own image: busybox
# find, stat, grep, sed, xargs and awk) with a registry volume mounted
# read-only at /volume, for scripts/lib/storage.ts:
#   docker run --rm -v VOLUME:/volume:ro --entrypoint sh IMAGE -c "$(cat read-storage.sh)" read-storage list
#   ... --workdir /volume/docker/registry/v2 ... read-storage blobs PATH...
#
# list: one traversal of the volume, then only the files whose content matters:
#   S BLOCKS SIZE MTIME ./PATH      every file and directory (stat)
#   L ./PATH:sha256:...             a tag's current/link and the digest in it
#   M ./PATH JSON                   a manifest blob, newlines folded
#   T DATE TIME ZONE ./PATH         a layer link's mtime to the nanosecond: when
#                                   a cache stored that blob for that repository
# blobs: an M line for each PATH (relative to the workdir) that is a file.
#
# distribution's filesystem driver keeps everything under docker/registry/v2.
# xargs reads from pipes: busybox 1.35's xargs garbles names read from a file.

# awk: one line per file, "M PATH CONTENT", its newlines folded into spaces (JSON does not mind).
# shellcheck disable=SC2016 # awk's $0, not the shell's
fold='FNR==1{if(NR>1)print ""; printf "M %s ", FILENAME} {printf "%s ", $0} END{if(NR>0)print ""}'

mode=$1
shift
case $mode in
  list)
    out=$(mktemp -d)
    cd /volume || exit 1
    find . -exec stat -c 'S %b %s %Y %n' {} + > "$out/s"
    # shellcheck disable=SC2016 # awk's $0, not the shell's
    grep -E '^S [0-9]+ [0-9]+ [0-9]+ \./docker/registry/v2/repositories/.*/_manifests/tags/[^/]+/current/link$' "$out/s" | cut -d' ' -f5- |
      xargs -r awk '{ print "L " FILENAME ":" $0 }' > "$out/l" &
    grep -E '/_manifests/revisions/sha256/[0-9a-f]{64}$' "$out/s" |
      sed -E 's#.*/([0-9a-f]{2})([0-9a-f]{62})$#./docker/registry/v2/blobs/sha256/\1/\1\2/data#' | sort -u |
      while read -r f; do [ -f "$f" ] && echo "$f"; done |
      xargs -r awk "$fold" > "$out/m" &
    grep -E '^S [0-9]+ [0-9]+ [0-9]+ \./docker/registry/v2/repositories/.*/_layers/sha256/[0-9a-f]{64}/link$' "$out/s" | cut -d' ' -f5- |
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
