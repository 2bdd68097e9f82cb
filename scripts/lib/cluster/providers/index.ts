// The providers by the names the config gives them: the one module that knows
// every concrete provider. Everything else asks for the config's provider, or
// a cluster's, and calls the ClusterProvider it gets.
import type { Config } from '../../core/config.ts'
import type { Container } from '../../core/docker.ts'
import type { Provider } from '../../core/naming.ts'
import { k3d } from './k3d.ts'
import { kind } from './kind.ts'
import type { Cluster, ClusterProvider } from './provider.ts'

export type { Cluster, ClusterProvider, Node } from './provider.ts'
export { requireTools } from './provider.ts'

export const PROVIDERS: Record<Provider, ClusterProvider> = { kind, k3d }

/** The provider the config names. */
export const providerOf = (config: Config): ClusterProvider => PROVIDERS[config.cluster.provider]

/** The config's cluster among Docker's containers; null when there is none. */
export const configuredCluster = (config: Config, containers: Container[]): Cluster | null =>
  providerOf(config).find(config.cluster.name, containers)

/** Every cluster with this name, of any provider (the load balancers and registries are not nodes). */
export function findClusters(name: string, containers: Container[]): Cluster[] {
  return Object.values(PROVIDERS).flatMap((p) => p.find(name, containers) ?? [])
}

/** How an existing cluster differs from the config (provider, node count, node image, k3s flags); empty when it matches. */
export function clusterDrift(config: Config, cluster: Cluster): string[] {
  const want = config.cluster
  if (!providerOf(config).owns(cluster)) return [`it is a ${cluster.provider} cluster, the config says ${want.provider}`]
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
