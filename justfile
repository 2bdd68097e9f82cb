# devreg: a local registry, pull-through caches and kind/k3d clusters that pull through them.
# Every recipe delegates to one script; arguments pass through unchanged.

set positional-arguments

runtime := env("DEVREG_RUNTIME", "node_modules/.bin/bun")

# List the recipes
default:
    @just --list --unsorted

# Ensure the local registry and one pull-through cache per mirror (up | status | stop | rm | adopt NAME | warm | report | export FILE | import FILE)
[group('registries')]
dev-registry *args:
    @{{runtime}} scripts/dev-registry.ts "$@"

# Pull images (default: the config's images) through the caches, so the next cluster starts warm (-f PATH, --from-cluster, --save, --platform, --json)
[group('registries')]
warm *args:
    @{{runtime}} scripts/dev-registry.ts warm "$@"

# Make this machine's Docker engine pull through the caches: registry-mirrors for docker.io, hosts.toml per host on the containerd store (shows the diff, asks; --undo, --dry-run, --json, --yes)
[group('registries')]
host-mirrors *args:
    @{{runtime}} scripts/dev-registry.ts host-mirrors "$@"

# Bring up the registries and the kind or k3d cluster wired to them (--recreate, --dry-run, --json)
[group('cluster')]
dev-up *args:
    @{{runtime}} scripts/dev-up.ts "$@"

# Prove every node pulls every registry host through its first registry: a probe pull per node × host, judged by the registries' logs (--json)
[group('cluster')]
verify *args:
    @{{runtime}} scripts/verify.ts "$@"

# Delete the cluster; registries and caches stay (--purge also removes the caches, after asking)
[group('cluster')]
dev-down *args:
    @{{runtime}} scripts/dev-down.ts "$@"

# What each registry holds (--stats), or delete by policy: dry run unless --apply (--keep-last N, --older-than 14d, --untagged, --repo GLOB)
[group('registries')]
registry-gc *args:
    @{{runtime}} scripts/registry-gc.ts "$@"

# Check that every configured name resolves and answers on this machine, in a container and in each node (NAME..., --json, --fix-hosts)
[group('hosts')]
preflight *args:
    @{{runtime}} scripts/preflight-dns.ts "$@"

# Run docker build with --add-host NAME:buildAddress for every configured host (arguments pass through; --dry-run prints the command)
[group('hosts')]
docker-build *args:
    @{{runtime}} scripts/docker-build.ts "$@"

# Set up a fresh devcontainer, unattended: dependencies, registries, preflight (silent unless a step fails)
[group('dev')]
[no-exit-message]
postcreate:
    @sh .devcontainer/postcreate.sh

# Run every test: unit, CLI and integration on this machine's Docker, e2e on the real kind and k3d CLIs in the rig's private engine (needs root and Go; DEVREG_REQUIRE_DOCKER=1 makes a missing Docker, Go or rig a failure)
[group('dev')]
test *args:
    @node_modules/.bin/bun test/run.ts "$@"

# Run the unit tests: fakes and fixtures, no Docker, no script run, in seconds (bun test flags pass through)
[group('dev')]
test-unit *args:
    @node_modules/.bin/bun test test/unit "$@"

# Run the scripts as a user does, under bun (and once each under tsx), without Docker (bun test flags pass through)
[group('dev')]
test-cli *args:
    @node_modules/.bin/bun test test/cli "$@"

# Check formatting and lint rules (biome), and every shell file (shellcheck)
[group('dev')]
lint:
    @node_modules/.bin/biome check scripts test bench
    @command -v shellcheck >/dev/null || { echo "shellcheck not found: apt-get install shellcheck (or brew install shellcheck)"; exit 1; }
    @shellcheck $(git ls-files '*.sh' .ci/run)

# Type-check everything under strict settings
[group('dev')]
typecheck:
    @node_modules/.bin/tsc -p .

# Measure cold/warm pulls, the no-op re-run, registry-gc --stats and dev-up on the real kind CLI against their targets; writes bench/results.md (exit 1 when one is missed)
[group('dev')]
bench *args:
    @{{runtime}} bench/run.ts "$@"
