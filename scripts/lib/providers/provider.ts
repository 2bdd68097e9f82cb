// A kind or k3d cluster, observed from Docker's labels (as kind and k3d
// themselves find their nodes) and changed with its own CLI, behind one
// interface: dev-up, dev-down, preflight and verify never ask which it is.
import type { Config, Provider } from '../config.ts'
import type { Container } from '../docker.ts'
import { notFound, type Runner } from '../exec.ts'
import { UserError } from '../log.ts'
import { k3d } from './k3d.ts'
import { kind } from './kind.ts'

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

export interface ClusterProvider {
  readonly name: Provider
  /** Where the nodes' containerd reads hosts.toml directories. */
  readonly certsD: string
  /** This provider's cluster of that name among Docker's containers; null when it has none. */
  find(name: string, containers: Container[]): Cluster | null
  /** The cluster with what Docker's listing leaves out read in (k3d: k3s's arguments). */
  observe(run: Runner, cluster: Cluster): Promise<Cluster>
  /** What only recreating the cluster can change, beyond node count and image. */
  drift(config: Config, cluster: Cluster): string[]
  create(run: Runner, config: Config): Promise<void>
  delete(run: Runner, cluster: Cluster): Promise<void>
  /** The routing every node should have: registry host → its entry, normalised to compare with observedMirrors. */
  desiredMirrors(config: Config): Map<string, string>
  /** A node's routing as desiredMirrors gives it; null when the node has no routing file at all. */
  observedMirrors(run: Runner, node: string): Promise<Map<string, string> | null>
  /** Makes every node's routing equal to desiredMirrors; says what changed. */
  reconcile(run: Runner, config: Config, cluster: Cluster): Promise<string[]>
}

export const PROVIDERS: Record<Provider, ClusterProvider> = { kind, k3d }

/** Every cluster with this name, of either provider (the load balancers and registries are not nodes). */
export function findClusters(name: string, containers: Container[]): Cluster[] {
  return Object.values(PROVIDERS).flatMap((p) => p.find(name, containers) ?? [])
}

/** How an existing cluster differs from the config (provider, node count, node image, k3s flags); empty when it matches. */
export function clusterDrift(config: Config, cluster: Cluster): string[] {
  const want = config.cluster
  if (cluster.provider !== want.provider) return [`it is a ${cluster.provider} cluster, the config says ${want.provider}`]
  const drift: string[] = []
  const workers = cluster.nodes.filter((n) => n.role === 'worker' || n.role === 'agent').length
  const controls = cluster.nodes.length - workers
  if (controls !== 1) drift.push(`it has ${controls} control-plane nodes, the config 1`)
  if (workers !== want.workers) drift.push(`it has ${workers} worker nodes, the config ${want.workers}`)
  if (want.nodeImage) {
    const other = cluster.nodes.find((n) => n.image.split('@')[0] !== want.nodeImage?.split('@')[0])
    if (other) drift.push(`node ${other.name} runs ${other.image}, the config says ${want.nodeImage}`)
  }
  return [...drift, ...PROVIDERS[cluster.provider].drift(config, cluster)]
}

/** Fails with how to install each missing tool. */
export async function requireTools(run: Runner, tools: string[]): Promise<void> {
  const missing = []
  for (const t of tools) if (!(await run.probe(['sh', '-c', 'command -v "$1"', 'sh', t])).ok) missing.push(t)
  if (missing.length) throw new UserError(missing.map(notFound).join('\n'))
}
