#!/usr/bin/env -S npx tsx
// Delete the cluster. The registries and their caches stay, so the next
// dev-up pulls nothing it has seen before; --purge also removes the caches.

import { removeInCluster } from './lib/cluster/in-cluster.ts'
import { configuredCluster, providerOf, requireTools } from './lib/cluster/providers/index.ts'
import { confirm, isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig } from './lib/core/config.ts'
import * as docker from './lib/core/docker.ts'
import type { Runner } from './lib/core/exec.ts'
import { withLock } from './lib/core/lock.ts'
import { log } from './lib/core/log.ts'
import { applyRemoval, planRemoval, volumeLine } from './lib/registries/registry-removal.ts'

const USAGE = `Usage: dev-down [options]

Deletes the kind or k3d cluster of the config. The local registry and the
caches keep running with their data.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --purge         also remove the caches and their volumes (never the local
                  registry's pushed images: that is \`dev-registry rm --purge\`);
                  first lists the cluster and each volume with its size and
                  asks, before anything is deleted (no terminal, no --yes:
                  exit 2, nothing deleted)
  --yes, -y       do not ask
  --dry-run       print the commands instead of running them
  --json          print what was deleted as JSON:
                  {"cluster", "provider", "deleted", "cachesPurged"}
  --verbose, -v   echo every command
  --help, -h      show this help

Examples:
  dev-down
  dev-down --purge --dry-run`

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(
    argv,
    { string: ['config'], boolean: ['purge', 'yes', 'dry-run', 'json', 'verbose', 'help'], alias: { y: 'yes', v: 'verbose', h: 'help' } },
    USAGE,
  )
  if (!args) return 0
  const run = runnerFor(args)
  const config = loadConfig({ configPath: args.config, env: run.env })
  return withLock(run, config, 'dev-down', () => down(run, config, { purge: args.purge, yes: args.yes, json: args.json }))
}

export async function down(run: Runner, config: Config, args: { purge: boolean; yes: boolean; json: boolean }): Promise<number> {
  const { name, provider } = config.cluster

  // 1. What goes: the cluster, if there is one; with --purge each cache's container and volume.
  const cluster = configuredCluster(config, await docker.listContainers(run))
  if (!cluster) log.info(`no ${provider} cluster named ${name}: nothing to delete`)
  const caches = args.purge ? await planRemoval(run, config, { purge: true, roles: ['cache'] }) : null

  // 2. With --purge, all of it is listed and asked about before anything is deleted.
  if (caches && (cluster || caches.containers.length || caches.volumes.length)) {
    log.info('These would be deleted:')
    if (cluster) log.info(`  ${provider} cluster ${name} (${cluster.nodes.map((n) => n.name).join(', ')})`)
    for (const r of caches.containers) log.info(`  container ${r.name}`)
    for (const v of caches.volumes) log.info(volumeLine(v))
    if (!run.dryRun && !(await confirm(run, 'Delete them?', args.yes))) {
      log.info('nothing deleted')
      if (args.json) log.out(JSON.stringify({ cluster: name, provider, deleted: false, cachesPurged: false }))
      return 1
    }
  }

  // 3. The cluster.
  if (cluster) {
    if (!run.dryRun) await requireTools(run, [providerOf(config).cli])
    // --purge removes what devreg applied in the cluster first; without it, it goes with the cluster.
    if (caches) for (const r of await removeInCluster(run, config)) log.info(`removed ${r}`)
    await providerOf(config).delete(run, cluster)
    if (!run.dryRun) log.ok(`deleted ${provider} cluster ${name}${caches ? '' : '; registries and caches kept'}`)
  }

  // 4. With --purge, the caches and their volumes.
  if (caches) await applyRemoval(run, caches)
  if (args.json) log.out(JSON.stringify({ cluster: name, provider, deleted: Boolean(cluster), cachesPurged: Boolean(caches) }))
  return 0
}

if (isMain(import.meta.url)) await runMain(main)
