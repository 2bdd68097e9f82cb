// A kind or k3d cluster, observed from Docker's labels (as kind and k3d
// themselves find their nodes) and changed with its own CLI, behind one
// interface: dev-up, dev-down, preflight and verify never ask which it is.
// The concrete providers implement it (kind.ts, k3d.ts); index.ts maps the
// config's provider names to them.
import type { Config } from '../../core/config.ts'
import type { Container } from '../../core/docker.ts'
import { notFound, type Runner } from '../../core/exec.ts'
import { UserError } from '../../core/log.ts'
import type { Provider } from '../../core/naming.ts'
import type { NodeRead, NodeSnapshot } from '../nodes.ts'
import type { LocalRegistryHosting } from '../render.ts'

export interface Node {
  name: string
  role: 'control-plane' | 'worker' | 'server' | 'agent'
  image: string
  running: boolean
  /** k3d: the node container's command, where k3d keeps k3s's arguments (see k3d.observe); unset when not read. */
  args?: string[]
}

export interface Cluster {
  provider: Provider
  name: string
  nodes: Node[]
}

/** How preflight and verify name a node's routing, and the fixes dev-up brings for it. */
export interface RoutingTerms {
  /** The file, or the entry in a file, that routes registry domain `domain` in a node. */
  entry(domain: string): string
  /** What a node without a route for `domain` lacks. */
  missing(domain: string): string
  /** What a node lacks when observedMirrors finds no routing file at all. */
  absent: string
  /** Whether a routing entry found in a node is devreg's, so dev-up replaces or removes it. */
  ownEntry(content: string): boolean
  fix: {
    /** A route missing for a registry domain. */
    write: string
    /** A route that differs from devreg's. */
    rewrite: string
    /** A route devreg wrote for a registry domain no longer in the config. */
    remove: string
    /** No routing file at all. */
    absent: string
    /** verify: containerd found no hosts.toml for a registry domain. */
    hostsToml: string
  }
}

/**
 * Where containerd reads certsD only because the provider's config patch says
 * so, which a node image can silently ignore (containerd ignores keys it does
 * not know): whether a node's containerd reads it, and the fix when not.
 */
export interface CertsDCheck {
  reads(node: NodeSnapshot): boolean
  fix: string
}

/** What create did besides creating the cluster. */
export interface Created {
  /** What it changed in the nodes (files written while they booted). */
  changes: string[]
  /** The nodes it routed as the config says already. */
  routed: string[]
}

/** What the node image brings, known before a cluster is created from it. */
export interface NodeImageFacts {
  /** Whether its containerd reads the provider's certsD without a config patch (containerd 2.3's default). */
  readsCertsD: boolean
}

export interface ClusterProvider {
  readonly name: Provider
  /** The program that creates and deletes its clusters. */
  readonly cli: string
  /** Where the nodes' containerd reads hosts.toml directories. */
  readonly certsD: string
  /** Whether the network, and every registry on it, must exist before the cluster is created. */
  readonly networkFirst: boolean
  /** Whether a cluster just created already routes as the config says, so dev-up need not reconcile it. */
  readonly routedAtCreate: boolean
  readonly routing: RoutingTerms
  /** Absent when the provider writes containerd's config itself. */
  readonly certsDCheck?: CertsDCheck
  /** What observedMirrors and certsDCheck need from each node, read in its one exec (nodes.ts observeNode). */
  readonly nodeRead: NodeRead
  /** Whether reconcile restarts the cluster to change its routing (k3s reads registries.yaml only at start). */
  readonly reroutingRestarts: boolean
  /** Whether this provider made the cluster. */
  owns(cluster: Cluster): boolean
  /** This provider's cluster of that name among Docker's containers; null when it has none. */
  find(name: string, containers: Container[]): Cluster | null
  /** The cluster with what Docker's listing leaves out read in (k3d: k3s's arguments). */
  observe(run: Runner, cluster: Cluster): Promise<Cluster>
  /** What only recreating the cluster can change, beyond node count and image. */
  drift(config: Config, cluster: Cluster): string[]
  /** The node image's facts create uses; null when they cannot be had cheaply (create then assumes nothing). */
  nodeImageFacts(run: Runner, config: Config): Promise<NodeImageFacts | null>
  /** Creates the cluster; says what it changed besides (files written into nodes while they boot). */
  create(run: Runner, config: Config, image: NodeImageFacts | null): Promise<Created>
  delete(run: Runner, cluster: Cluster): Promise<void>
  /** The routing every node should have: registry domain → its entry, normalised to compare with observedMirrors. */
  desiredMirrors(config: Config): Map<string, string>
  /** A node's routing as desiredMirrors gives it, from what nodeRead read; null when the node has no routing file at all. */
  observedMirrors(node: NodeSnapshot): Map<string, string> | null
  /** Makes every node's routing equal to desiredMirrors, from what nodeRead read of each (by node name); says what changed. */
  reconcile(run: Runner, config: Config, cluster: Cluster, observed: Map<string, NodeSnapshot>): Promise<string[]>
  /** The KEP-1755 fields the provider's own guide (or CLI) publishes for the local registry. */
  localRegistryHosting(config: Config): LocalRegistryHosting
  /** Makes the hostname aliases resolve in pods where the cluster's DNS has a hook for it; says what changed. */
  ensurePodAliases(run: Runner, config: Config): Promise<string[]>
  /** Takes out of the cluster what ensurePodAliases put there (dev-down --purge); says what it removed. */
  removePodAliases(run: Runner, config: Config): Promise<string[]>
}

/** Fails with how to install each missing tool. */
export async function requireTools(run: Runner, tools: string[]): Promise<void> {
  const found = await Promise.all(tools.map(async (t) => (await run.probe(['sh', '-c', 'command -v "$1"', 'sh', t])).ok))
  const missing = tools.filter((_, i) => !found[i])
  if (missing.length) throw new UserError(missing.map(notFound).join('\n'))
}
