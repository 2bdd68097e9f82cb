#!/bin/sh
# The official registry:2 image's entrypoint, verbatim in behaviour.
set -e
case "$1" in
    *.yaml|*.yml) set -- registry serve "$@" ;;
    serve|garbage-collect|help|-*) set -- registry "$@" ;;
esac
exec "$@"
