// What verify runs and reads in the cluster's nodes, through
// templates/verify-probe.sh: the probe pulls, the nodes' addresses, and the
// facts that explain a miss (hosts.toml present, containerd's proxy
// variables, whether it reads certs.d).
import type { Config } from '../core/config.ts'
import type * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { template } from '../core/templates.ts'
import { configuredCluster, type Node, providerOf } from './providers/index.ts'
import type { Facts, Probe } from './verify-verdicts.ts'

const PROBE_SCRIPT = template('verify-probe.sh')

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

/** The probe pulls: one exec per running node, every registry domain at once in it. Returns ref → crictl's result. */
export async function pullProbes(
  run: Runner,
  nodes: Node[],
  probes: Probe[],
  seconds: number,
): Promise<Map<string, { rc: number; out: string }>> {
  const runs = await Promise.all(
    nodes.map(async (n) => {
      const refs = probes.filter((p) => p.node === n.name && p.first).map((p) => p.ref)
      if (!n.running || !refs.length) return new Map<string, { rc: number; out: string }>()
      const r = await run.probe(['docker', 'exec', n.name, 'sh', '-c', PROBE_SCRIPT, 'verify-probe', 'pull', String(seconds), ...refs])
      return parseProbeOutput(r.stdout)
    }),
  )
  return new Map(runs.flatMap((m) => [...m]))
}

/** The output of the probe script: ref → exit code and one line of crictl's output. */
export function parseProbeOutput(stdout: string): Map<string, { rc: number; out: string }> {
  const out = new Map<string, { rc: number; out: string }>()
  for (const chunk of stdout.split('\x1e').slice(1)) {
    const m = /^(\d+) (\S+) ?(.*)$/s.exec(chunk.trim())
    if (m) out.set(m[2], { rc: Number(m[1]), out: m[3].trim() })
  }
  return out
}

/** The facts script's output: registry domains with a hosts.toml, and containerd's proxy variables. */
export function parseFacts(stdout: string): { hostsToml: Set<string>; env: Record<string, string> } {
  const hostsToml = new Set<string>()
  const env: Record<string, string> = {}
  for (const line of stdout.split('\n')) {
    if (line.startsWith('hosts.toml ')) hostsToml.add(line.slice(11).trim())
    else if (line.startsWith('env ')) {
      const [k, ...v] = line.slice(4).split('=')
      env[k] = v.join('=')
    }
  }
  return { hostsToml, env }
}

/** What explains the failing probes, read from their nodes only; the rest from Docker's listing. */
export async function gatherFacts(
  run: Runner,
  config: Config,
  failing: Probe[],
  nodes: Node[],
  containers: docker.Container[],
): Promise<Facts> {
  const { certsD: dir, certsDCheck } = providerOf(config)
  const byNode = new Map<string, string[]>()
  for (const p of failing) byNode.set(p.node, [...new Set([...(byNode.get(p.node) ?? []), p.domain])])
  const entries = await Promise.all(
    nodes
      .filter((n) => n.running && byNode.has(n.name))
      .map(async (n) => {
        const [r, certsD] = await Promise.all([
          run.probe(['docker', 'exec', n.name, 'sh', '-c', PROBE_SCRIPT, 'verify-probe', 'facts', dir, ...(byNode.get(n.name) ?? [])]),
          certsDCheck ? certsDCheck.reads(run, n.name) : Promise.resolve(null),
        ])
        return [n.name, { ...parseFacts(r.stdout), readsCertsD: certsD }] as const
      }),
  )
  return {
    provider: config.cluster.provider,
    network: config.network,
    containers: new Map(containers.map((c) => [c.name, { state: c.state, networks: c.networks }])),
    nodes: new Map(entries),
  }
}
