// kubectl against the cluster of the config, by the context kind and k3d name
// after it: commands, their NotFound answer, and waiting for Ready nodes.
import type { Config } from '../core/config.ts'
import type { Result, Runner } from '../core/exec.ts'
import { kubeContextOf } from '../core/naming.ts'

/** The kubeconfig context kind (kind-NAME) and k3d (k3d-NAME) write for a cluster. */
export const kubeContext = (config: Config) => kubeContextOf(config.cluster.provider, config.cluster.name)

/** A kubectl command against the config's cluster. */
export const kubectl = (config: Config, ...args: string[]) => ['kubectl', '--context', kubeContext(config), ...args]

/** Whether kubectl failed because the object is not there. */
export const objectNotFound = (r: Result) => r.stderr.includes('(NotFound)')

/** Whether `kubectl get nodes -o json` lists nodes, every one with its Ready condition True. */
function allNodesReady(json: string): boolean {
  try {
    const items = (JSON.parse(json) as { items?: { status?: { conditions?: { type: string; status: string }[] } }[] }).items ?? []
    return items.length > 0 && items.every((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
  } catch {
    return false
  }
}

/**
 * Returns once every node is Ready, within cluster.waitTimeout. One read
 * answers for a cluster that is up already; `kubectl wait`, a watch that
 * costs three such reads, is only for nodes that are not Ready yet.
 */
export async function waitReady(run: Runner, config: Config): Promise<void> {
  const nodes = await run.probe(kubectl(config, 'get', 'nodes', '-o', 'json'))
  if (nodes.ok && allNodesReady(nodes.stdout)) return
  await run.change(kubectl(config, 'wait', '--for=condition=Ready', 'nodes', '--all', `--timeout=${config.cluster.waitTimeout}`))
}
