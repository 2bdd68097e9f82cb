// kubectl against the cluster of the config, by the context kind and k3d name
// after it: the KEP-1755 ConfigMap and waiting for Ready nodes.
import type { Config } from './config.ts'
import type { Runner } from './exec.ts'
import { registryHostingConfigMap } from './render.ts'

/** The kubeconfig context kind (kind-NAME) and k3d (k3d-NAME) write for a cluster. */
export const kubeContext = (config: Config) => `${config.cluster.provider}-${config.cluster.name}`

/** A kubectl command against the config's cluster. */
export const kubectl = (config: Config, ...args: string[]) => ['kubectl', '--context', kubeContext(config), ...args]

/** Publishes where the local registry is (KEP-1755), for Tilt and other tools. */
export async function applyRegistryHosting(run: Runner, config: Config): Promise<string> {
  return run.change(kubectl(config, 'apply', '-f', '-'), { input: registryHostingConfigMap(config) })
}

export async function waitReady(run: Runner, config: Config): Promise<void> {
  await run.change(kubectl(config, 'wait', '--for=condition=Ready', 'nodes', '--all', `--timeout=${config.cluster.waitTimeout}`))
}
