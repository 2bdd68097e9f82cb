// What verify runs and reads in the cluster's nodes: one exec per node
// (nodes.ts observeNode, templates/observe-node.sh) that pulls every probe and
// reads, at the same time, the facts that explain a miss (hosts.toml present,
// containerd's proxy variables, whether it reads certs.d); and the nodes'
// addresses, from Docker.
import type { Config } from '../core/config.ts'
import type * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { type NodeRead, type NodeSnapshot, observeNode } from './nodes.ts'
import { configuredCluster, type Node, providerOf } from './providers/index.ts'
import type { Facts, Probe } from './verify-verdicts.ts'

/** The nodes of the cluster of `config`: control plane (server) first, then workers (agents), as kind and k3d list them. */
export function clusterNodes(config: Config, containers: docker.Container[]): Node[] {
  const cluster = configuredCluster(config, containers)
  const rank = (n: Node) => (n.role === 'control-plane' || n.role === 'server' ? 0 : 1)
  return [...(cluster?.nodes ?? [])].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name))
}

/** The addresses of each node container on every network it is on. */
export async function nodeAddresses(run: Runner, nodes: string[]): Promise<Map<string, string[]>> {
  if (!nodes.length) return new Map()
  const format = '{{.Name}} {{json .NetworkSettings.Networks}}'
  const r = await run.probe(['docker', 'inspect', '--type', 'container', '--format', format, ...nodes])
  const out = new Map<string, string[]>()
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const i = line.indexOf(' ')
    const nets = JSON.parse(line.slice(i + 1)) as Record<string, { IPAddress?: string; GlobalIPv6Address?: string }>
    out.set(
      line.slice(0, i).replace(/^\//, ''),
      Object.values(nets ?? {}).flatMap((n) => [n.IPAddress, n.GlobalIPv6Address].filter((a): a is string => Boolean(a))),
    )
  }
  return out
}

/**
 * What verify asks of a node in its one exec: what the provider reads there
 * (dev-up's mirrors phase needs the same), the hosts.toml files, containerd's
 * proxy variables, and the pulls of `refs` (once `after` settles true, when given).
 */
export function probeRead(config: Config, refs: string[], seconds: number, after?: Promise<boolean>): NodeRead {
  const provider = providerOf(config)
  const pulls = refs.length ? { pulls: { seconds, refs, ...(after ? { after } : {}) } } : {}
  return { ...provider.nodeRead, hostsDir: provider.certsD, env: true, ...pulls }
}

/** The probe references `node` pulls: those whose route starts at a devreg registry. */
export const nodeRefs = (probes: Probe[], node: string) => probes.filter((p) => p.node === node && p.first).map((p) => p.ref)

/** The probe pulls and facts of every running node, one exec each, all at once: node → what it read. */
export async function probeNodes(
  run: Runner,
  config: Config,
  nodes: Node[],
  probes: Probe[],
  seconds: number,
): Promise<Map<string, NodeSnapshot>> {
  const running = nodes.filter((n) => n.running)
  const read = await Promise.all(running.map((n) => observeNode(run, n.name, probeRead(config, nodeRefs(probes, n.name), seconds))))
  return new Map(read.map((s) => [s.node, s]))
}

/** What explains a failing probe, from what the nodes' execs read; the rest from Docker's listing. */
export function factsOf(config: Config, snapshots: Map<string, NodeSnapshot>, containers: docker.Container[]): Facts {
  const { certsD, certsDCheck } = providerOf(config)
  return {
    provider: config.cluster.provider,
    network: config.network,
    containers: new Map(containers.map((c) => [c.name, { state: c.state, networks: c.networks }])),
    nodes: new Map(
      [...snapshots].map(([name, s]) => [
        name,
        {
          hostsToml: new Set([...s.hostsFiles.keys()].map((dir) => dir.slice(certsD.length + 1))),
          env: s.env ?? {},
          readsCertsD: certsDCheck ? certsDCheck.reads(s) : null,
        },
      ]),
    ),
  }
}
