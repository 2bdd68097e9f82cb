#!/bin/sh
# Runs in a short-lived helper container (the registry's own image: busybox
# sh, find, ln) with a registry volume mounted and as the working directory:
#   docker run --rm -i -v VOLUME:/var/lib/registry[:ro] -w /var/lib/registry --entrypoint sh IMAGE -c "$(cat volume-files.sh)" volume-files COMMAND [ID] [ARG...]
#   list ROOT   every file under ROOT (distribution's storage), one path a line
#   commit ID GLOB...
#               link what stage ID (.devreg-import-ID, outside the registry's
#               storage, written through `docker cp`) holds into the storage,
#               the files each GLOB (for find -path) matches in turn: blobs
#               first and links last (a link only ever names content already
#               in place), never replacing a file that is there; then remove
#               the stage. Only a complete stage is committed: one that holds
#               .devreg-complete, which devreg writes after every digest
#               checked out
#   clean ID    remove a stage without committing it
#   stages      the ID of every stage in the volume, one a line
# A stage belongs to the run that made it (its ID names the host and pid): this
# script never removes another run's stage; devreg removes one whose run is
# provably gone, by its ID.
# devreg checks every path against distribution's layout (sha256 hex,
# repository and tag patterns) before it reaches this script, and hands it the
# layout's paths (scripts/lib/registries/registry-layout.ts).
set -eu

case $1 in
  commit | clean)
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
  commit)
    stage=.devreg-import-$2
    shift 2
    if [ ! -f "$stage/.devreg-complete" ]; then
      echo "stage $stage is not complete: nothing was committed" >&2
      exit 1
    fi
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
