#!/usr/bin/env -S npx tsx
import { applyInCluster, applyRegistryHosting } from './lib/cluster/in-cluster.ts'
import { kubeContext, waitReady } from './lib/cluster/kubectl.ts'
import { type Cluster, clusterDrift, findClusters, PROVIDERS, providerOf, requireTools } from './lib/cluster/providers/index.ts'
import { verifyPhase } from './lib/cluster/verify.ts'
// Bring up the registries and a kind or k3d cluster whose nodes pull through
// them; on an existing cluster, reconcile its mirrors and network instead.
import { isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig } from './lib/core/config.ts'
import * as docker from './lib/core/docker.ts'
import type { Runner } from './lib/core/exec.ts'
import { withLock } from './lib/core/lock.ts'
import { log, UserError } from './lib/core/log.ts'
import { findShadows } from './lib/machine/shadows.ts'
import { applyRegistries, attachRegistries, planRegistries, type Step } from './lib/registries/registry-containers.ts'

const USAGE = `Usage: dev-up [options]

Ensures the local registry and the caches, creates the kind or k3d cluster of
the config wired to them (or reconciles an existing one), publishes the
local-registry-hosting ConfigMap and waits until the nodes are Ready.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --recreate      delete and recreate a cluster that differs from the config
  --no-verify     skip the last phase, verify (a probe pull per node and registry domain)
  --dry-run       print every command and file instead of running or writing them
  --json          print a JSON summary on stdout
  --verbose, -v   echo every command
  --help, -h      show this help

Examples:
  dev-up
  dev-up --dry-run
  dev-up --recreate --config config/k3d.yaml`

export interface Summary {
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
  const run = runnerFor(args)
  const config = loadConfig({ configPath: args.config, env: run.env })
  const summary = await withLock(run, config, 'dev-up', () => up(run, config, { recreate: args.recreate, verify: args.verify }))
  if (args.json) log.out(JSON.stringify(summary, null, 2))
  return 0
}

/** What dev-up found before changing anything. */
interface Observed {
  networkExists: boolean
  steps: Step[]
  /** Clusters of the config's name, of either provider. */
  existing: Cluster[]
  drift: string[]
}

/** Records each phase's time in `phases` and prints its label and duration. */
type Phase = <T>(label: string, fn: () => Promise<T>) => Promise<T>

function phaseTimer(phases: Record<string, number>): Phase {
  return async (label, fn) => {
    const start = performance.now()
    log.step(`${Object.keys(phases).length + 1}. ${label}`)
    const result = await fn()
    phases[label] = Math.round(performance.now() - start)
    log.info(`   ${label}: ${(phases[label] / 1000).toFixed(1)}s`)
    return result
  }
}

export interface UpOptions {
  /** Delete and recreate a cluster that differs from the config. */
  recreate?: boolean
  /** Run the verify phase [default: true]. */
  verify?: boolean
}

/** Every phase of dev-up, in order; returns the summary --json prints. */
export async function up(run: Runner, config: Config, { recreate = false, verify = true }: UpOptions = {}): Promise<Summary> {
  const { provider, name } = config.cluster
  const phases: Record<string, number> = {}
  const phase = phaseTimer(phases)
  const changes: string[] = []

  // 0. Prerequisites, all checked before anything changes.
  const observed = await observe(run, config)
  if (observed.drift.length && !recreate)
    log.warn(
      `cluster ${name} differs from the config: ${observed.drift.join('; ')}. Run \`dev-up --recreate\` to delete and recreate it (cached images stay).`,
    )
  // 1. Registries. Where nodes pull while they boot (k3d: k3s's system images
  // from docker.io), the network and every registry on it come first.
  await phase('registries', () => ensureRegistriesPhase(run, config, observed, changes))
  // 2. The cluster.
  const created = await phase('cluster', () => ensureCluster(run, config, observed, recreate, changes))
  // 3. Mirrors: every registry on the cluster network, every node's routing as the config says.
  await phase('mirrors', () => ensureMirrors(run, config, created, changes))
  // 4. The KEP-1755 ConfigMap, so Tilt and others find the local registry.
  await phase('configmap', async () => {
    const out = await applyRegistryHosting(run, config)
    if (/created|configured/.test(out)) changes.push(`local-registry-hosting ConfigMap ${out.trim().split(' ').pop()}`)
  })
  // Pods reach the registries by Service names kept on their current addresses (lib/cluster/in-cluster.ts).
  await phase('in-cluster', async () => changes.push(...(await applyInCluster(run, config))))
  // 5. Ready nodes, within cluster.waitTimeout.
  await phase('ready', () => waitNodesReady(run, config))
  // 6. Every node pulls every registry domain through its route's first registry (lib/cluster/verify.ts).
  const verified = verify && !run.dryRun ? await phase('verify', () => verifyPhase(run, config)) : null

  const local = config.registries[0]
  const push = `${local.address.onHost}/NAME:TAG`
  const pullInCluster = `${local.address.onHost}/NAME:TAG (or ${local.address.inNetwork}/NAME:TAG)`
  if (!run.dryRun) printOutcome(config, changes, push, pullInCluster)
  return {
    cluster: name,
    provider,
    context: kubeContext(config),
    created,
    changes,
    drift: observed.drift,
    phases,
    push,
    pullInCluster,
    verify: verified,
  }
}

async function observe(run: Runner, config: Config): Promise<Observed> {
  const { name } = config.cluster
  const [containers, networkExists] = await Promise.all([docker.listContainers(run), docker.networkExists(run, config.network)])
  if (!run.dryRun) await requireTools(run, [providerOf(config).cli, 'kubectl'])
  const steps = await planRegistries(run, config, containers)
  // k3d keeps k3s's arguments in each node's command: observe reads them for the drift check.
  const existing = await Promise.all(findClusters(name, containers).map((c) => PROVIDERS[c.provider].observe(run, c)))
  return { networkExists, steps, existing, drift: existing.flatMap((c) => clusterDrift(config, c)) }
}

async function ensureRegistriesPhase(run: Runner, config: Config, observed: Observed, changes: string[]): Promise<void> {
  let network = observed.networkExists ? config.network : null
  if (providerOf(config).networkFirst && !network) {
    await docker.createNetwork(run, config.network)
    network = config.network
  }
  const { changed } = await applyRegistries(run, observed.steps, network)
  if (changed) changes.push(`${changed} registr${changed === 1 ? 'y' : 'ies'} created or updated`)
}

/** Deletes drifted clusters under --recreate, creates the cluster when missing; true when it created one. */
async function ensureCluster(run: Runner, config: Config, observed: Observed, recreate: boolean, changes: string[]): Promise<boolean> {
  const provider = providerOf(config)
  const { name } = config.cluster
  let cluster = observed.existing.find((c) => provider.owns(c)) ?? null
  if (observed.drift.length && recreate)
    for (const c of observed.existing) {
      await PROVIDERS[c.provider].delete(run, c)
      changes.push(`deleted ${c.provider} cluster ${c.name} (${observed.drift.join('; ')})`)
      if (c === cluster) cluster = null
    }
  if (cluster) {
    log.info(`   ${provider.name} cluster ${name} exists: reconciling it`)
    return false
  }
  await provider.create(run, config)
  changes.push(`created ${provider.name} cluster ${name}`)
  return true
}

async function ensureMirrors(run: Runner, config: Config, created: boolean, changes: string[]): Promise<void> {
  const provider = providerOf(config)
  const { name } = config.cluster
  // One look at Docker after the cluster phase serves both the nodes and the attachments.
  const containers = await docker.listContainers(run)
  const current = provider.find(name, containers)
  if (!current && !run.dryRun)
    throw new UserError(`${provider.name} reported success but no node of cluster ${name} runs: see \`docker ps -a\``)
  const attached = await attachRegistries(run, config.registries, config.network, (n) => containers.find((c) => c.name === n) ?? null)
  if (attached) changes.push(`attached ${attached} registr${attached === 1 ? 'y' : 'ies'} to network ${config.network}`)
  // A cluster just created may route as the config says already (k3d: the registries.yaml it was created with).
  if (!created || !provider.routedAtCreate)
    changes.push(...(await provider.reconcile(run, config, current ?? { provider: provider.name, name, nodes: [] })))
  if (!run.dryRun)
    for (const s of await findShadows(run, config))
      log.warn(
        `the local registry's ${s.repository} shadows ${s.domain}/${s.repository} on every node: alias ${s.alias} puts the local registry first for all of ${s.domain}; push it under ${s.alias}/ instead, or delete it with registry-gc`,
      )
}

async function waitNodesReady(run: Runner, config: Config): Promise<void> {
  try {
    await waitReady(run, config)
  } catch (err) {
    throw new UserError(
      `nodes of ${config.cluster.name} are not Ready within ${config.cluster.waitTimeout}: \`kubectl --context ${kubeContext(config)} get nodes\` shows why; raise cluster.waitTimeout if they are just slow (${(err as Error).message.split('\n')[0]})`,
    )
  }
}

function printOutcome(config: Config, changes: string[], push: string, pullInCluster: string): void {
  log.info(
    changes.length
      ? `\nchanged:\n  ${changes.join('\n  ')}`
      : '\nnothing changed: registries, cluster and mirrors already match the config',
  )
  log.info(`\npush:    docker push ${push}`)
  log.info(`use:     image: ${pullInCluster}`)
  for (const r of config.registries.filter((x) => x.role === 'cache'))
    log.info(`pulls of ${r.upstreamDomain}/* go through ${r.name} (${r.address.onHost} from this machine)`)
}

if (isMain(import.meta.url)) await runMain(main)
