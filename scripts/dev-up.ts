#!/usr/bin/env -S npx tsx
// Bring up the registries and a kind or k3d cluster whose nodes pull through
// them; on an existing cluster, reconcile its mirrors and network instead.
import { isMain, openScript, run } from './lib/cli.ts'
import {
  applyRegistryHosting,
  clusterDrift,
  createCluster,
  deleteCluster,
  findClusters,
  kubeContext,
  reconcileMirrors,
  requireTools,
  waitReady,
  withK3sArgs,
} from './lib/cluster.ts'
import { type Config, loadConfig } from './lib/config.ts'
import * as docker from './lib/docker.ts'
import { settings } from './lib/exec.ts'
import { applyInCluster } from './lib/in-cluster.ts'
import { withLock } from './lib/lock.ts'
import { log, UserError } from './lib/log.ts'
import { applyRegistries, attachRegistries, planRegistries } from './lib/registries.ts'
import { findShadows } from './lib/shadows.ts'
import { verifyPhase } from './lib/verify.ts'

const USAGE = `Usage: dev-up [options]

Ensures the local registry and the caches, creates the kind or k3d cluster of
the config wired to them (or reconciles an existing one), publishes the
local-registry-hosting ConfigMap and waits until the nodes are Ready.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --recreate      delete and recreate a cluster that differs from the config
  --no-verify     skip the last phase, verify (a probe pull per node and registry host)
  --dry-run       print every command and file instead of running or writing them
  --json          print a JSON summary on stdout
  --verbose, -v   echo every command
  --help, -h      show this help

Examples:
  dev-up
  dev-up --dry-run
  dev-up --recreate --config config/k3d.yaml`

interface Summary {
  cluster: string
  provider: string
  context: string
  created: boolean
  changes: string[]
  drift: string[]
  phases: Record<string, number>
  push: string
  pullInCluster: string
  /** Probes per verdict; null when verify did not run (--no-verify, --dry-run). */
  verify: Record<string, number> | null
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(
    argv,
    {
      string: ['config'],
      boolean: ['recreate', 'verify', 'dry-run', 'json', 'verbose', 'help'],
      alias: { v: 'verbose', h: 'help' },
      default: { verify: true },
    },
    USAGE,
  )
  if (!args) return 0
  const config = loadConfig({ configPath: args.config })
  const summary = await withLock(config, 'dev-up', () => up(config, args.recreate, args.verify))
  if (args.json) log.out(JSON.stringify(summary, null, 2))
  return 0
}

async function up(config: Config, recreate: boolean, verify = true): Promise<Summary> {
  const { provider, name } = config.cluster
  const phases: Record<string, number> = {}
  const phase = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const start = performance.now()
    log.step(`${Object.keys(phases).length + 1}. ${label}`)
    const result = await fn()
    phases[label] = Math.round(performance.now() - start)
    log.info(`   ${label}: ${(phases[label] / 1000).toFixed(1)}s`)
    return result
  }

  // 0. Prerequisites, all checked before anything changes.
  const [containers, networkExists] = await Promise.all([docker.listContainers(), docker.networkExists(config.network)])
  if (!settings.dryRun) await requireTools([provider, 'kubectl'])
  const steps = await planRegistries(config, containers)
  // k3d keeps k3s's arguments in each node's command: read them for the drift check.
  const existing = await Promise.all(findClusters(name, containers).map(withK3sArgs))
  const drift = existing.flatMap((c) => clusterDrift(config, c))
  if (drift.length && !recreate)
    log.warn(
      `cluster ${name} differs from the config: ${drift.join('; ')}. Run \`dev-up --recreate\` to delete and recreate it (cached images stay).`,
    )
  let cluster = existing.find((c) => c.provider === provider) ?? null
  const changes: string[] = []

  // 1. Registries. k3d nodes pull their system images from docker.io while
  // booting, so for k3d the network and every registry on it come first.
  await phase('registries', async () => {
    let network = networkExists ? config.network : null
    if (provider === 'k3d' && !network) {
      await docker.createNetwork(config.network)
      network = config.network
    }
    const { changed } = await applyRegistries(steps, network)
    if (changed) changes.push(`${changed} registr${changed === 1 ? 'y' : 'ies'} created or updated`)
  })

  // 2. The cluster.
  const created = await phase('cluster', async () => {
    if (drift.length && recreate)
      for (const c of existing) {
        await deleteCluster(c)
        changes.push(`deleted ${c.provider} cluster ${c.name} (${drift.join('; ')})`)
        if (c === cluster) cluster = null
      }
    if (cluster) {
      log.info(`   ${provider} cluster ${name} exists: reconciling it`)
      return false
    }
    await createCluster(config)
    changes.push(`created ${provider} cluster ${name}`)
    return true
  })
  // 3. Mirrors: every registry on the cluster network, every node's routing as the config says.
  await phase('mirrors', async () => {
    // One look at Docker after the cluster phase serves both the nodes and the attachments.
    const containers = await docker.listContainers()
    const current = findClusters(name, containers).find((c) => c.provider === provider)
    if (!current && !settings.dryRun)
      throw new UserError(`${provider} reported success but no node of cluster ${name} runs: see \`docker ps -a\``)
    const attached = await attachRegistries(config.registries, config.network, (n) => containers.find((c) => c.name === n) ?? null)
    if (attached) changes.push(`attached ${attached} registr${attached === 1 ? 'y' : 'ies'} to network ${config.network}`)
    if (!created || provider === 'kind') changes.push(...(await reconcileMirrors(config, current ?? { provider, name, nodes: [] })))
    if (!settings.dryRun)
      for (const s of await findShadows(config))
        log.warn(
          `the local registry's ${s.repository} shadows ${s.host}/${s.repository} on every node: alias ${s.alias} puts the local registry first for all of ${s.host}; push it under ${s.alias}/ instead, or delete it with registry-gc`,
        )
  })

  // 4. The KEP-1755 ConfigMap, so Tilt and others find the local registry.
  await phase('configmap', async () => {
    const out = await applyRegistryHosting(config)
    if (/created|configured/.test(out)) changes.push(`local-registry-hosting ConfigMap ${out.trim().split(' ').pop()}`)
  })

  // Pods reach the registries by Service names kept on their current addresses (lib/in-cluster.ts).
  await phase('in-cluster', async () => changes.push(...(await applyInCluster(config))))

  // 5. Ready nodes, within cluster.waitTimeout.
  await phase('ready', async () => {
    try {
      await waitReady(config)
    } catch (err) {
      throw new UserError(
        `nodes of ${name} are not Ready within ${config.cluster.waitTimeout}: \`kubectl --context ${kubeContext(config)} get nodes\` shows why; raise cluster.waitTimeout if they are just slow (${(err as Error).message.split('\n')[0]})`,
      )
    }
  })

  // 6. Every node pulls every registry host through its route's first registry (lib/verify.ts).
  const verified = verify && !settings.dryRun ? await phase('verify', () => verifyPhase(config)) : null

  const local = config.registries[0]
  const push = `${local.address.host}/NAME:TAG`
  const pullInCluster = `${local.address.host}/NAME:TAG (or ${local.address.inNetwork}/NAME:TAG)`
  if (!settings.dryRun) {
    log.info(
      changes.length
        ? `\nchanged:\n  ${changes.join('\n  ')}`
        : '\nnothing changed: registries, cluster and mirrors already match the config',
    )
    log.info(`\npush:    docker push ${push}`)
    log.info(`use:     image: ${pullInCluster}`)
    for (const r of config.registries.filter((x) => x.role === 'cache'))
      log.info(`pulls of ${r.host}/* go through ${r.name} (${r.address.host} from the host)`)
  }
  return { cluster: name, provider, context: kubeContext(config), created, changes, drift, phases, push, pullInCluster, verify: verified }
}

if (isMain(import.meta.url)) await run(main)
