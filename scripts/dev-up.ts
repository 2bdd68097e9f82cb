#!/usr/bin/env -S npx tsx
// Bring up the registries and a kind or k3d cluster whose nodes pull through
// them; on an existing cluster, reconcile its mirrors and network instead.

import { applyInCluster } from './lib/cluster/in-cluster.ts'
import { kubeContext, waitReady } from './lib/cluster/kubectl.ts'
import { type NodeSnapshot, observeNode } from './lib/cluster/nodes.ts'
import { type Cluster, clusterDrift, findClusters, PROVIDERS, providerOf, requireTools } from './lib/cluster/providers/index.ts'
import type { NodeImageFacts } from './lib/cluster/providers/provider.ts'
import {
  ensureProbeImage,
  judgeProbes,
  PROBE_SECONDS,
  planVerify,
  probeImageFound,
  runningAddresses,
  type SeenAddresses,
  type VerifyPlan,
  verifyPhase,
  verifyWith,
} from './lib/cluster/verify.ts'
import { nodeRefs, probeRead } from './lib/cluster/verify-nodes.ts'
import { isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig } from './lib/core/config.ts'
import type { Container } from './lib/core/docker.ts'
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
  /** Every container's address on the cluster network; null when there is no such network. */
  network: Map<string, string> | null
  containers: Container[]
  steps: Step[]
  /** Clusters of the config's name, of either provider. */
  existing: Cluster[]
  drift: string[]
}

/** Records each phase's time in `phases` and prints its label and duration; phases may overlap. */
type Phase = <T>(label: string, fn: () => Promise<T>) => Promise<T>

function phaseTimer(phases: Record<string, number>): Phase {
  let started = 0
  return async (label, fn) => {
    const start = performance.now()
    log.step(`${++started}. ${label}`)
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

/** What each phase changed, kept apart while phases overlap and reported in phase order. */
interface Changes {
  registries: string[]
  cluster: string[]
  mirrors: string[]
  inCluster: string[]
}

/** Every phase of dev-up; returns the summary --json prints. */
export async function up(run: Runner, config: Config, { recreate = false, verify = true }: UpOptions = {}): Promise<Summary> {
  const { name } = config.cluster
  const provider = providerOf(config)
  const phases: Record<string, number> = {}
  const phase = phaseTimer(phases)
  const changes: Changes = { registries: [], cluster: [], mirrors: [], inCluster: [] }

  // 0. Prerequisites, all checked before anything changes; whether each registry holds verify's probe image, meanwhile.
  const probesFound = verify && !run.dryRun ? probeImageFound(run, config) : null
  // Not phases, no change is made in them, but where a no-op's time goes besides the phases: from the process's
  // start to here (loading devreg, the config, the lock), and the reads everything after depends on.
  phases.start = Math.round(performance.now())
  const observing = performance.now()
  const observed = await observe(run, config)
  phases.observe = Math.round(performance.now() - observing)
  if (observed.drift.length && !recreate)
    log.warn(
      `cluster ${name} differs from the config: ${observed.drift.join('; ')}. Run \`dev-up --recreate\` to delete and recreate it (cached images stay).`,
    )
  // While the registries come up: what the node image brings, when a cluster is to be created; and verify's
  // probe image in every registry, when they are all up already (verify's pulls may then come with the mirrors).
  const creates = !observed.existing.some((c) => provider.owns(c)) || (recreate && observed.drift.length > 0)
  const image = creates ? provider.nodeImageFacts(run, config).catch(() => null) : Promise.resolve(null)
  const probeImage =
    probesFound && observed.steps.every((s) => s.action === 'none') ? ensureProbeImage(run, config, observed.containers, probesFound) : null
  probeImage?.catch(() => {})
  // 1. Registries. Where nodes pull while they boot (k3d: k3s's system images
  // from docker.io), the network and every registry on it come first.
  await phase('registries', () => ensureRegistriesPhase(run, config, observed, changes.registries))
  // 2. The cluster, and every registry on its network.
  const current = await phase('cluster', () => ensureCluster(run, config, { observed, recreate, image, changes }))
  // 3.-6. From here on at once: the nodes' routing then verify, the objects in the cluster, Ready nodes.
  const verified = await afterCluster(run, config, { ...current, phase, verify, changes, probeImage })

  const local = config.registries[0]
  const push = `${local.address.onHost}/NAME:TAG`
  const pullInCluster = `${local.address.onHost}/NAME:TAG (or ${local.address.inNetwork}/NAME:TAG)`
  const all = [...changes.registries, ...changes.cluster, ...changes.mirrors, ...changes.inCluster]
  if (!run.dryRun) printOutcome(config, all, push, pullInCluster)
  return {
    cluster: name,
    provider: config.cluster.provider,
    context: kubeContext(config),
    created: current.created,
    changes: all,
    drift: observed.drift,
    phases,
    push,
    pullInCluster,
    verify: verified,
  }
}

async function observe(run: Runner, config: Config): Promise<Observed> {
  const { name } = config.cluster
  const tools = run.dryRun ? Promise.resolve() : requireTools(run, [providerOf(config).cli, 'kubectl'])
  // Docker first: without it, nothing else is worth saying.
  const [containers, network] = await inOrder([docker.listContainers(run), docker.networkMembers(run, config.network), tools] as const)
  // k3d keeps k3s's arguments in each node's command: observe reads them for the drift check.
  const [steps, existing] = await Promise.all([
    planRegistries(run, config, containers),
    Promise.all(findClusters(name, containers).map((c) => PROVIDERS[c.provider].observe(run, c))),
  ])
  return { network, containers, steps, existing, drift: existing.flatMap((c) => clusterDrift(config, c)) }
}

async function ensureRegistriesPhase(run: Runner, config: Config, observed: Observed, changes: string[]): Promise<void> {
  let network = observed.network ? config.network : null
  if (providerOf(config).networkFirst && !network) {
    await docker.createNetwork(run, config.network)
    network = config.network
  }
  const { changed, attached } = await applyRegistries(run, observed.steps, network)
  if (changed) changes.push(`${changed} registr${changed === 1 ? 'y' : 'ies'} created or updated`)
  if (attached) changes.push(`attached ${attached} registr${attached === 1 ? 'y' : 'ies'} to network ${config.network}`)
}

interface ClusterPhase {
  observed: Observed
  recreate: boolean
  image: Promise<NodeImageFacts | null>
  changes: Changes
}

/**
 * Deletes drifted clusters under --recreate, creates the cluster when
 * missing, then puts every registry on its network. Returns whether it
 * created one, and the containers and cluster as they are now.
 */
async function ensureCluster(run: Runner, config: Config, { observed, recreate, image, changes }: ClusterPhase) {
  const provider = providerOf(config)
  const { name } = config.cluster
  let existing = observed.existing.find((c) => provider.owns(c)) ?? null
  let routed: string[] = []
  if (observed.drift.length && recreate)
    for (const c of observed.existing) {
      await PROVIDERS[c.provider].delete(run, c)
      changes.cluster.push(`deleted ${c.provider} cluster ${c.name} (${observed.drift.join('; ')})`)
      if (c === existing) existing = null
    }
  if (existing) log.info(`   ${provider.name} cluster ${name} exists: reconciling it`)
  else {
    const made = await provider.create(run, config, await image)
    changes.cluster.push(`created ${provider.name} cluster ${name}`)
    changes.mirrors.push(...made.changes)
    routed = made.routed
  }
  // Docker's listing from before still holds when nothing changed since.
  const changed = changes.registries.length + changes.cluster.length > 0
  const containers = changed ? await docker.listContainers(run) : observed.containers
  const cluster = provider.find(name, containers)
  if (!cluster && !run.dryRun)
    throw new UserError(`${provider.name} reported success but no node of cluster ${name} runs: see \`docker ps -a\``)
  const attached = await attachRegistries(run, config.registries, config.network, (n) => containers.find((c) => c.name === n) ?? null)
  if (attached) changes.cluster.push(`attached ${attached} registr${attached === 1 ? 'y' : 'ies'} to network ${config.network}`)
  // So do the addresses on the network.
  const addresses = changed || attached ? undefined : (observed.network ?? undefined)
  return { created: !existing, containers, cluster: cluster ?? { provider: provider.name, name, nodes: [] }, addresses, routed }
}

interface AfterCluster {
  phase: Phase
  created: boolean
  containers: Container[]
  cluster: Cluster
  /** Every container's address on the cluster network, when Docker's listing from before still holds. */
  addresses?: Map<string, string>
  /** The nodes create routed as the config says while they booted. */
  routed: string[]
  verify: boolean
  changes: Changes
  /** Verify's probe image placed in every registry; null when that was not done ahead. */
  probeImage: Promise<void> | null
}

/**
 * The phases that need the cluster, at once: mirrors then verify, in-cluster,
 * ready. Verify's probe pulls ride along in the mirrors phase's one exec per
 * node where routing should be final already, and stand when the mirrors
 * phase changes nothing. Where rerouting restarts the cluster (k3d), the
 * others wait for the mirrors phase. The first failure, in phase order, is thrown.
 */
async function afterCluster(run: Runner, config: Config, a: AfterCluster): Promise<Record<string, number> | null> {
  const { phase, changes } = a
  const probing = a.verify && !run.dryRun
  // Verify's pulls come with the mirrors phase's reads where routing should be final already: nothing changed, or
  // every node of a new cluster routed while it booted. They stand when the mirrors phase changes nothing either.
  const unchanged = Object.values(changes).every((c: string[]) => !c.length)
  const routedAtBoot = a.created && a.cluster.nodes.length > 0 && a.cluster.nodes.every((n) => a.routed.includes(n.name))
  const mirrors = phase('mirrors', () => ensureMirrors(run, config, a, probing && (unchanged || routedAtBoot) ? a.probeImage : null))
  const judged = (pulled: Pulled | null) =>
    pulled
      ? judgeProbes(run, config, pulled.plan, pulled.snapshots, pulled.seen)
      : verifyWith(run, config, { containers: a.containers, probeImage: a.probeImage })
  const verified = probing ? mirrors.then((pulled) => phase('verify', async () => verifyPhase(await judged(pulled)))) : null
  const gate = providerOf(config).reroutingRestarts ? mirrors : Promise.resolve(null)
  const inCluster = gate.then(() =>
    phase('in-cluster', async () => changes.inCluster.push(...(await applyInCluster(run, config, a.addresses)))),
  )
  const ready = gate.then(() => phase('ready', () => waitNodesReady(run, config)))
  const [, , , tally] = await inOrder([mirrors, inCluster, ready, verified] as const)
  return tally
}

/** Promise.all that waits for every promise and then throws the first failure in the order given, not in time. */
async function inOrder<T extends readonly unknown[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(promises)
  const failed = settled.find((r) => r.status === 'rejected')
  if (failed) throw (failed as PromiseRejectedResult).reason
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> }
}

/** Verify's probe pulls, run in the nodes' execs of the mirrors phase. */
interface Pulled {
  plan: VerifyPlan
  snapshots: Map<string, NodeSnapshot>
  /** The nodes' addresses, known or read while they pulled. */
  seen: SeenAddresses
}

/**
 * Makes every node route as the config says, from one exec per node that
 * reads what the provider needs, and, given `probeImage` (verify's probe image
 * being placed in every registry), runs verify's probe pulls too once it is.
 * Returns those pulls when this phase changed nothing either, so they stand
 * for verify's.
 */
async function ensureMirrors(run: Runner, config: Config, a: AfterCluster, probeImage: Promise<void> | null): Promise<Pulled | null> {
  const provider = providerOf(config)
  const { cluster, containers, created } = a
  const reroute = !created || !provider.routedAtCreate
  if (!reroute && !probeImage) return null
  const plan = probeImage ? planVerify(config, containers) : null
  const shadows = run.dryRun ? Promise.resolve([]) : findShadows(run, config)
  // Each node's exec reads its hosts.toml files and files at once; its pulls, then containerd and its proxy
  // variables, wait until the probe image is in every registry.
  const placed = probeImage?.then(
    () => true,
    () => false,
  )
  const read = (node: string) => (plan ? probeRead(config, nodeRefs(plan.probes, node), PROBE_SECONDS, placed) : provider.nodeRead)
  // Docker's listing from before still holds when nothing changed: no need to ask it again for the nodes' addresses.
  const probed = plan && { plan, seen: a.addresses ? { network: a.addresses } : { addresses: runningAddresses(run, plan) } }
  const snapshots = new Map((await Promise.all(cluster.nodes.map((n) => observeNode(run, n.name, read(n.name))))).map((s) => [s.node, s]))
  const rerouted = reroute ? await provider.reconcile(run, config, cluster, snapshots) : []
  a.changes.mirrors.push(...rerouted)
  for (const s of await shadows)
    log.warn(
      `the local registry's ${s.repository} shadows ${s.domain}/${s.repository} on every node: alias ${s.alias} puts the local registry first for all of ${s.domain}; push it under ${s.alias}/ instead, or delete it with registry-gc`,
    )
  // Without the probe image, verify's own run says why.
  return probed && !rerouted.length && (await placed) ? { ...probed, snapshots } : null
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
