// What each provider names after a cluster, known from the config alone: the
// provider names the config accepts, the Docker network a cluster is on when
// the config names none, and the kubeconfig context its CLI writes. It imports
// nothing, so the config and kubectl can ask it without an import circle.

export const PROVIDER_NAMES = ['kind', 'k3d'] as const
export type Provider = (typeof PROVIDER_NAMES)[number]

interface Naming {
  network(cluster: string): string
  kubeContext(cluster: string): string
}

const NAMING: Record<Provider, Naming> = {
  // kind puts every cluster on its one network; KIND_EXPERIMENTAL_DOCKER_NETWORK picks another.
  kind: { network: () => 'kind', kubeContext: (cluster) => `kind-${cluster}` },
  // k3d gives each cluster a network of its own.
  k3d: { network: (cluster) => `k3d-${cluster}`, kubeContext: (cluster) => `k3d-${cluster}` },
}

/** The Docker network a cluster of this provider is on when the config names none. */
export const defaultNetwork = (provider: Provider, cluster: string) => NAMING[provider].network(cluster)

/** The kubeconfig context the provider's CLI writes for a cluster. */
export const kubeContextOf = (provider: Provider, cluster: string) => NAMING[provider].kubeContext(cluster)
