#!/bin/sh
# Runs in a short-lived helper container (the registry's own image: busybox
# sh, find, tar, ln) with a registry volume mounted and as the working directory:
#   docker run --rm -i -v VOLUME:/var/lib/registry[:ro] -w /var/lib/registry --entrypoint sh IMAGE -c "$(cat volume-files.sh)" volume-files COMMAND [ID] [ARG...]
#   list ROOT   every file under ROOT (distribution's storage), one path a line
#   export      a tar on stdout of the paths read from stdin (relative to the
#               volume): several tars one after another when xargs splits
#               the list; a path that is gone is named on stderr and left out
#   stage ID    extract the tar on stdin into .devreg-import-ID, outside the
#               registry's storage; it is kept only when it ends with the file
#               .devreg-complete, which devreg writes after every digest checked out
#   commit ID GLOB...
#               link what ID staged into the storage, the files each GLOB (for
#               find -path) matches in turn: blobs first and links last (a link
#               only ever names content already in place), never replacing a
#               file that is there; then remove the stage
#   clean ID    remove a stage without committing it
#   stages      the ID of every stage in the volume, one a line
# A stage belongs to the run that made it (its ID names the host and pid): this
# script never removes another run's stage; devreg removes one whose run is
# provably gone, by its ID.
# devreg checks every path against distribution's layout (sha256 hex,
# repository and tag patterns) before it reaches this script, and hands it the
# layout's paths (scripts/lib/registry-layout.ts).
set -eu

case $1 in
  stage | commit | clean)
    case ${2-} in
      '' | *[!A-Za-z0-9.-]*)
        echo "volume-files: bad stage ID ${2-}" >&2
        exit 2
        ;;
    esac
    ;;
esac

case $1 in
  list)
    [ -d "$2" ] || exit 0
    find "$2" -type f
    ;;
  export)
    # busybox tar has no -T: the list goes through xargs (from a pipe: busybox
    # 1.35's xargs garbles names read from a file).
    while IFS= read -r f; do
      if [ -f "$f" ]; then printf '%s\n' "$f"; else echo "gone: $f" >&2; fi
    done | xargs -r tar -c -f - --no-recursion
    ;;
  stage)
    stage=.devreg-import-$2
    mkdir "$stage"
    if ! tar -x -f - -C "$stage" || [ ! -f "$stage/.devreg-complete" ]; then
      rm -rf "$stage"
      echo "the archive stream stopped before its end: nothing was staged" >&2
      exit 1
    fi
    ;;
  commit)
    stage=.devreg-import-$2
    shift 2
    cd "$stage"
    for pattern; do
      find . -type f -path "$pattern" | while IFS= read -r f; do
        mkdir -p "../$(dirname "$f")"
        # A hard link appears whole, in one step, and fails when the name exists.
        [ -e "../$f" ] || ln "$f" "../$f" || [ -e "../$f" ]
      done
    done
    cd ..
    rm -rf "$stage"
    ;;
  clean)
    rm -rf ".devreg-import-$2"
    ;;
  stages)
    for d in .devreg-import-*; do
      if [ -d "$d" ]; then echo "${d#.devreg-import-}"; fi
    done
    ;;
  *)
    echo "volume-files: unknown command $1" >&2
    exit 2
    ;;
esac
