#!/usr/bin/env -S npx tsx
// Delete the cluster. The registries and their caches stay, so the next
// dev-up pulls nothing it has seen before; --purge also removes the caches.
import { isMain, openScript, runMain, runnerFor } from './lib/cli.ts'
import { type Config, loadConfig } from './lib/config.ts'
import * as docker from './lib/docker.ts'
import type { Runner } from './lib/exec.ts'
import { removeInCluster } from './lib/in-cluster.ts'
import { withLock } from './lib/lock.ts'
import { log } from './lib/log.ts'
import { PROVIDERS, requireTools } from './lib/providers/provider.ts'
import { removeRegistries } from './lib/registry-containers.ts'

const USAGE = `Usage: dev-down [options]

Deletes the kind or k3d cluster of the config. The local registry and the
caches keep running with their data.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --purge         also remove the caches and their volumes (never the local
                  registry's pushed images: that is \`dev-registry rm --purge\`),
                  after listing each volume with its size and asking
  --yes, -y       do not ask
  --dry-run       print the commands instead of running them
  --json          print what was deleted as JSON
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
  const config = loadConfig({ configPath: args.config })
  const run = runnerFor(args)
  return withLock(run, config, 'dev-down', () => down(run, config, { purge: args.purge, yes: args.yes, json: args.json }))
}

async function down(run: Runner, config: Config, args: { purge: boolean; yes: boolean; json: boolean }): Promise<number> {
  const { name, provider } = config.cluster

  // 1. Delete the cluster, if there is one.
  const cluster = PROVIDERS[provider].find(name, await docker.listContainers(run))
  if (cluster) {
    if (!run.dryRun) await requireTools(run, [provider])
    // --purge removes what devreg applied in the cluster first; without it, it goes with the cluster.
    if (args.purge) for (const r of await removeInCluster(run, config)) log.info(`removed ${r}`)
    await PROVIDERS[provider].delete(run, cluster)
    if (!run.dryRun) log.ok(`deleted ${provider} cluster ${name}; registries and caches kept`)
  } else log.info(`no ${provider} cluster named ${name}: nothing to delete`)

  // 2. With --purge, the caches and their volumes too.
  let purged = true
  if (args.purge) purged = await removeRegistries(run, config, { purge: true, yes: args.yes, roles: ['cache'] })
  if (args.json) log.out(JSON.stringify({ cluster: name, provider, deleted: Boolean(cluster), cachesPurged: args.purge && purged }))
  return purged ? 0 : 1
}

if (isMain(import.meta.url)) await runMain(main)
