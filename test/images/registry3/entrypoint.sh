#!/bin/sh
# The official registry:3 image's entrypoint, in behaviour: a config file
# argument means `registry serve FILE`, `sh` a shell, anything else a registry
# subcommand (garbage-collect, --version).
set -e
if [ -f "$1" ]; then
  set -- /bin/registry serve "$@"
  exec "$@"
fi
if [ "$1" = "sh" ]; then
  shift
  set -- /bin/sh "$@"
  exec "$@"
fi
set -- /bin/registry "$@"
exec "$@"
