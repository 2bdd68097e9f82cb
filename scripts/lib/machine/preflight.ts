// What preflight checks and how it judges: which names (from the one config),
// what was observed on this machine (the host), in a container on the cluster network and in
// each node, and a verdict with a fix for every failure. Selection is pure, as
// are the verdicts and the report (preflight-verdicts.ts); observe() is the
// one part that asks Docker.

import { endpointSliceAddresses } from '../cluster/in-cluster.ts'
import * as nodes from '../cluster/nodes.ts'
import { type ClusterProvider, configuredCluster, type Node, providerOf } from '../cluster/providers/index.ts'
import { registryRoutes } from '../cluster/routes.ts'
import type { Config, Registry } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { UserError } from '../core/log.ts'
import type { Provider } from '../core/naming.ts'
import { template } from '../core/templates.ts'
import { pingV2, type V2Answer } from '../registries/distribution.ts'
import { firstLine, type InContainer, type Lookup, resolveIn, resolveOnHost } from './dns.ts'
import { type HostsEntry, parseHostsFile } from './etc-hosts.ts'
import { type HostRoute, hostEngineRoutes } from './host-engine.ts'

export type Status = 'pass' | 'fail' | 'warn' | 'skip'

export interface Check {
  /** resolve | registry | mirror | containerd | service | docker-mirror | shadow */
  check: string
  /** The name, registry or registry domain checked. */
  subject: string
  /** host, container, a node's name, or nodes (when there is no cluster). */
  place: string
  status: Status
  detail: string
  fix: string | null
}

export interface Selection {
  /** Entries of the config's `hosts`: names pinned to addresses, as /etc/hosts lines are. */
  hosts: Config['hosts']
  registries: Registry[]
  /** Registry domains whose mirror configuration nodes must have. */
  routes: string[]
  /** No names were given: stale mirror files and host-wide checks count too. */
  all: boolean
}

/** A registry domain without its port. */
const bare = (domain: string) => domain.replace(/:\d+$/, '')

/** The configured names to check: all of them, or those named; an unknown name is a usage error. */
export function selectTargets(config: Config, names: string[]): Selection {
  const routes = registryRoutes(config).map((r) => r.domain)
  if (!names.length) return { hosts: [...config.hosts], registries: [...config.registries], routes, all: true }
  const isRegistry = (r: Registry, n: string) => r.name === n || r.upstreamDomain === n
  const unknown = names.filter(
    (n) =>
      !config.hosts.some((h) => h.name === n) &&
      !config.registries.some((r) => isRegistry(r, n)) &&
      !routes.some((r) => r === n || bare(r) === n),
  )
  if (unknown.length) {
    const known = [...new Set([...config.hosts.map((h) => h.name), ...config.registries.map((r) => r.name), ...routes])]
    throw new UserError(
      `${unknown.join(', ')}: not in the config; name one of ${known.join(', ')}, or add it to hosts in config/devreg.local.yaml`,
      2,
    )
  }
  return {
    hosts: config.hosts.filter((h) => names.includes(h.name)),
    registries: config.registries.filter((r) => names.some((n) => isRegistry(r, n))),
    routes: routes.filter((r) => names.includes(r) || names.includes(bare(r))),
    all: false,
  }
}

/** One node as preflight saw it. */
export interface NodeView {
  name: string
  running: boolean
  resolve: InContainer
  /** Registry name → its GET /v2/ answer by in-network name. */
  v2: Map<string, V2Answer>
  /** Registry domain → its mirror configuration, normalised as desiredMirrors() gives it; null when there is none at all (k3d: no registries.yaml). */
  mirrors: Map<string, string> | null
  /** Whether containerd reads certs.d, where the provider's config patch could fail to say so (certsDCheck); else null. */
  readsCertsD: boolean | null
}

export interface Observed {
  hostsFile: { path: string; entries: HostsEntry[] }
  /** hosts[].name → resolution on this machine. */
  onHost: Map<string, Lookup>
  /** Registry name → GET /v2/ on its published port. */
  v2: Map<string, V2Answer>
  /** Registry name → container state; absent when there is no such container. */
  states: Map<string, string>
  /** The daemon's registry-mirrors; null when it could not be asked. */
  daemonMirrors: string[] | null
  /** Whether the host engine pulls each cached domain through its cache (host-mirrors); null when not asked. */
  hostRoutes?: HostRoute[] | null
  network: { name: string; exists: boolean; addresses: Map<string, string> }
  /** From a short-lived container on the network; null when there is no network. */
  inNetwork: InContainer | null
  /** The image that container ran. */
  image: string
  cluster: { provider: Provider; name: string; found: boolean }
  nodes: NodeView[]
  /** Registry name → the addresses its EndpointSlice holds (null: none), or why it could not be read; empty without a cluster. */
  slices?: Map<string, { addresses: string[] | null; error: string | null }>
}

/** The mirror configuration devreg writes into every node, per registry domain, normalised for comparison. */
export const desiredMirrors = (config: Config) => providerOf(config).desiredMirrors(config)

/** Prints the status and headers of GET URL/v2/ for each URL given, curl or nc (templates/ping-v2.sh). */
const V2_SCRIPT = template('ping-v2.sh')

/** GET /v2/ of registries by their names on the network (http://NAME:5000), from inside a container, in one exec. */
export async function pingV2In(run: Runner, container: string, names: string[]): Promise<Map<string, V2Answer>> {
  if (!names.length) return new Map()
  const urls = names.map((n) => `http://${n}:5000`)
  const r = await run.probe(['docker', 'exec', container, 'sh', '-c', V2_SCRIPT, 'ping-v2', ...urls])
  const answers = parseV2Output(urls, r.stdout)
  return new Map(names.map((n, i) => [n, answers.get(urls[i]) as V2Answer]))
}

export function parseV2Output(urls: string[], stdout: string): Map<string, V2Answer> {
  const chunks = new Map(
    stdout
      .split('\x1e')
      .slice(1)
      .map((chunk) => {
        const nl = chunk.indexOf('\n')
        return [chunk.slice(0, nl), chunk.slice(nl + 1)] as const
      }),
  )
  return new Map(
    urls.map((url) => {
      const out = chunks.get(url) ?? ''
      const statuses = [...out.matchAll(/HTTP\/[\d.]+ (\d{3})/g)]
      const status = statuses.length ? Number(statuses[statuses.length - 1][1]) : null
      const apiVersion = /docker-distribution-api-version:\s*(\S+)/i.exec(out)?.[1] ?? null
      const ok = (status === 200 || status === 401) && apiVersion !== null
      return [url, { ok, status, apiVersion, error: status === null ? firstLine(out) || 'no answer' : null }]
    }),
  )
}

/** The Docker daemon's mirror matters to everything, or to the docker.io cache. */
export const checksDaemon = (sel: Selection) => sel.all || sel.registries.some((r) => r.upstreamDomain === 'docker.io')

const mapAsync = async <T, V>(items: readonly T[], key: (t: T) => string, fn: (t: T) => Promise<V>): Promise<Map<string, V>> =>
  new Map(await Promise.all(items.map(async (t) => [key(t), await fn(t)] as const)))

/** Looks at everything the checks judge, all at once. */
export async function observe(run: Runner, config: Config, sel: Selection, hostsFile: { path: string; text: string }): Promise<Observed> {
  const [containers, networkExists] = await Promise.all([docker.listContainers(run), docker.networkExists(run, config.network)])
  const states = new Map(containers.map((c) => [c.name, c.state]))
  const found = configuredCluster(config, containers)
  const inNetworkNames = [...sel.hosts.map((h) => h.name), ...sel.registries.map((r) => r.name)]
  const image = config.preflight.image ?? config.registry.image
  const [onHost, v2, daemonMirrors, addresses, inNetwork, nodes, slices, hostRoutes] = await Promise.all([
    mapAsync(
      sel.hosts,
      (h) => h.name,
      (h) => resolveOnHost(h.name),
    ),
    mapAsync(
      sel.registries,
      (r) => r.name,
      (r) => pingV2(run, r.address.url),
    ),
    checksDaemon(sel) ? docker.daemonMirrors(run) : Promise.resolve(null),
    networkExists ? docker.networkAddresses(run, config.network) : Promise.resolve(new Map<string, string>()),
    // A short-lived container, never pulled: what a pod-like container on the network resolves.
    networkExists
      ? resolveIn(
          run,
          ['docker', 'run', '--rm', '--pull', 'never', '--network', config.network, '--entrypoint', 'sh', image],
          inNetworkNames,
        )
      : Promise.resolve(null),
    found ? Promise.all(found.nodes.map((n) => observeNode(run, providerOf(config), sel, n, inNetworkNames))) : Promise.resolve([]),
    found
      ? mapAsync(
          sel.registries,
          (r) => r.name,
          (r) => endpointSliceAddresses(run, config, r),
        )
      : Promise.resolve(new Map()),
    checksDaemon(sel) || sel.routes.length ? hostEngineRoutes(run, config) : Promise.resolve(null),
  ])
  return {
    hostsFile: { path: hostsFile.path, entries: parseHostsFile(hostsFile.text) },
    onHost,
    v2,
    states: new Map(sel.registries.filter((r) => states.has(r.name)).map((r) => [r.name, states.get(r.name) as string])),
    daemonMirrors,
    network: { name: config.network, exists: networkExists, addresses },
    inNetwork,
    image,
    cluster: { provider: config.cluster.provider, name: config.cluster.name, found: found !== null },
    nodes,
    slices,
    hostRoutes,
  }
}

async function observeNode(run: Runner, provider: ClusterProvider, sel: Selection, node: Node, names: string[]): Promise<NodeView> {
  if (!node.running)
    return { name: node.name, running: false, resolve: { resolved: null, error: null }, v2: new Map(), mirrors: null, readsCertsD: null }
  const [resolve, v2, seen] = await Promise.all([
    resolveIn(run, ['docker', 'exec', node.name, 'sh'], names),
    pingV2In(
      run,
      node.name,
      sel.registries.map((r) => r.name),
    ),
    nodes.observeNode(run, node.name, provider.nodeRead),
  ])
  const readsCertsD = provider.certsDCheck ? provider.certsDCheck.reads(seen) : null
  return { name: node.name, running: true, resolve, v2, mirrors: provider.observedMirrors(seen), readsCertsD }
}
