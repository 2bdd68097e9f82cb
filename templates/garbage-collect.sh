#!/bin/sh
# distribution's own garbage-collect on a registry volume, run by registry-gc
# (scripts/lib/registries/storage.ts) in a short-lived helper container of the registry's
# own image while the registry itself is stopped (it must serve no writes):
#   docker run --rm -v VOLUME:/var/lib/registry --entrypoint sh IMAGE -c "$(cat garbage-collect.sh)" garbage-collect REPOSITORIES PATH...
# REPOSITORIES is the storage's repositories directory (distribution's layout,
# from scripts/lib/registries/registry-layout.ts); each PATH, relative to it, is deleted
# first: a tag's directory (distribution 2.8 deletes tags only with their
# manifest) or a whole cached repository (a proxy refuses API deletes).
# garbage-collect walks storage directly, so it works on a cache whose delete
# setting is off.
# registry:2 keeps its config in /etc/docker/registry, registry:3 in /etc/distribution.
cd "$1" 2>/dev/null || exit 0
shift
for p; do rm -rf -- "$p"; done
for c in /etc/distribution/config.yml /etc/docker/registry/config.yml; do
  [ -f "$c" ] && exec registry garbage-collect "$c"
done
echo "no registry config in /etc/distribution or /etc/docker/registry" >&2
exit 1
