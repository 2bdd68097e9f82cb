// kubectl against the cluster of the config, by the context kind and k3d name
// after it: commands, their NotFound answer, and waiting for Ready nodes.
import type { Config } from '../core/config.ts'
import type { Result, Runner } from '../core/exec.ts'
import { kubeContextOf } from './providers/naming.ts'

/** The kubeconfig context kind (kind-NAME) and k3d (k3d-NAME) write for a cluster. */
export const kubeContext = (config: Config) => kubeContextOf(config.cluster.provider, config.cluster.name)

/** A kubectl command against the config's cluster. */
export const kubectl = (config: Config, ...args: string[]) => ['kubectl', '--context', kubeContext(config), ...args]

/** Whether kubectl failed because the object is not there. */
export const objectNotFound = (r: Result) => r.stderr.includes('(NotFound)')

export async function waitReady(run: Runner, config: Config): Promise<void> {
  await run.change(kubectl(config, 'wait', '--for=condition=Ready', 'nodes', '--all', `--timeout=${config.cluster.waitTimeout}`))
}
