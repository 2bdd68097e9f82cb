#!/bin/sh
# The official registry:3 image's argument rules: a YAML file means
# `registry serve FILE`; serve, garbage-collect, help or a flag is a registry
# subcommand; anything else (sh, wget) runs as given.
set -e
case "$1" in
  *.yaml | *.yml) set -- registry serve "$@" ;;
  serve | garbage-collect | help | -*) set -- registry "$@" ;;
esac
exec "$@"
