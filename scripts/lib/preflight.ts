// What preflight checks and how it judges: which names (from the one config),
// what was observed on the host, in a container on the cluster network and in
// each node, and a verdict with a fix for every failure. Selection, verdicts
// and the report are pure; observe() is the one part that asks Docker.
import type { Config, Provider, Registry } from './config.ts'
import { pingV2, type V2Answer } from './distribution.ts'
import { firstLine, type InContainer, type Lookup, resolveIn, resolveOnHost } from './dns.ts'
import * as docker from './docker.ts'
import { type HostsEntry, parseHostsFile, shadowedRegistries } from './etc-hosts.ts'
import type { Runner } from './exec.ts'
import { type HostRoute, hostEngineRoutes, pullsThroughCache } from './host-engine.ts'
import { endpointSliceAddresses } from './in-cluster.ts'
import { isLoopback } from './local-addresses.ts'
import { table, UserError } from './log.ts'
import { K3S_REGISTRIES } from './providers/k3d.ts'
import { CERTS_D, readsCertsD } from './providers/kind.ts'
import { findClusters, type Node, PROVIDERS } from './providers/provider.ts'
import { IN_CLUSTER_NAMESPACE, isDevregHostsToml, serviceName } from './render.ts'
import { registryRoutes } from './routes.ts'
import { template } from './templates.ts'

export type Status = 'pass' | 'fail' | 'warn' | 'skip'

export interface Check {
  /** resolve | registry | mirror | containerd | service | docker-mirror | shadow */
  check: string
  /** The name, registry or registry host checked. */
  subject: string
  /** host, container, a node's name, or nodes (when there is no cluster). */
  place: string
  status: Status
  detail: string
  fix: string | null
}

export interface Selection {
  hosts: Config['hosts']
  registries: Registry[]
  /** Registry hosts whose mirror configuration nodes must have. */
  routes: string[]
  /** No names were given: stale mirror files and host-wide checks count too. */
  all: boolean
}

const bare = (host: string) => host.replace(/:\d+$/, '')

/** The configured names to check: all of them, or those named; an unknown name is a usage error. */
export function selectTargets(config: Config, names: string[]): Selection {
  const routes = registryRoutes(config).map((r) => r.host)
  if (!names.length) return { hosts: [...config.hosts], registries: [...config.registries], routes, all: true }
  const isRegistry = (r: Registry, n: string) => r.name === n || r.upstreamHost === n
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
  /** Registry host → its mirror configuration, normalised as desiredMirrors() gives it; null when there is none at all (k3d: no registries.yaml). */
  mirrors: Map<string, string> | null
  /** kind: whether containerd reads certs.d; null for k3d. */
  readsCertsD: boolean | null
}

export interface Observed {
  hostsFile: { path: string; entries: HostsEntry[] }
  /** hosts[].name → resolution on this machine. */
  host: Map<string, Lookup>
  /** Registry name → GET /v2/ on its published port. */
  v2: Map<string, V2Answer>
  /** Registry name → container state; absent when there is no such container. */
  states: Map<string, string>
  /** The daemon's registry-mirrors; null when it could not be asked. */
  daemonMirrors: string[] | null
  /** Whether the host engine pulls each cached host through its cache (host-mirrors); null when not asked. */
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

/** The mirror configuration devreg writes into every node, per registry host, normalised for comparison. */
export const desiredMirrors = (config: Config) => PROVIDERS[config.cluster.provider].desiredMirrors(config)

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
const checksDaemon = (sel: Selection) => sel.all || sel.registries.some((r) => r.upstreamHost === 'docker.io')

const mapAsync = async <T, V>(items: readonly T[], key: (t: T) => string, fn: (t: T) => Promise<V>): Promise<Map<string, V>> =>
  new Map(await Promise.all(items.map(async (t) => [key(t), await fn(t)] as const)))

/** Looks at everything the checks judge, all at once. */
export async function observe(run: Runner, config: Config, sel: Selection, hostsFile: { path: string; text: string }): Promise<Observed> {
  const [containers, networkExists] = await Promise.all([docker.listContainers(run), docker.networkExists(run, config.network)])
  const states = new Map(containers.map((c) => [c.name, c.state]))
  const found = findClusters(config.cluster.name, containers).find((c) => c.provider === config.cluster.provider) ?? null
  const inNetworkNames = [...sel.hosts.map((h) => h.name), ...sel.registries.map((r) => r.name)]
  const image = config.preflight.image ?? config.registry.image
  const [host, v2, daemonMirrors, addresses, inNetwork, nodes, slices, hostRoutes] = await Promise.all([
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
    found ? Promise.all(found.nodes.map((n) => observeNode(run, config.cluster.provider, sel, n, inNetworkNames))) : Promise.resolve([]),
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
    host,
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

async function observeNode(run: Runner, provider: Provider, sel: Selection, node: Node, names: string[]): Promise<NodeView> {
  if (!node.running)
    return { name: node.name, running: false, resolve: { resolved: null, error: null }, v2: new Map(), mirrors: null, readsCertsD: null }
  const [resolve, v2, mirrors, certsD] = await Promise.all([
    resolveIn(run, ['docker', 'exec', node.name, 'sh'], names),
    pingV2In(
      run,
      node.name,
      sel.registries.map((r) => r.name),
    ),
    PROVIDERS[provider].observedMirrors(run, node.name),
    provider === 'kind' ? readsCertsD(run, node.name) : Promise.resolve(null),
  ])
  return { name: node.name, running: true, resolve, v2, mirrors, readsCertsD: certsD }
}

type Verdict = Pick<Check, 'status' | 'detail' | 'fix'>
const pass = (detail: string): Verdict => ({ status: 'pass', detail, fix: null })
const fail = (detail: string, fix: string): Verdict => ({ status: 'fail', detail, fix })

const addressList = (a: string[]) => a.join(', ')
/** How to give a container another name on a network; one already attached must be reattached. */
const alias = (name: string, network: string, container: string | null) =>
  container
    ? `\`docker network disconnect ${network} ${container} && docker network connect --alias ${name} ${network} ${container}\``
    : `\`docker network connect --alias ${name} ${network} CONTAINER\` (disconnect it first if it is on ${network} already)`

/** A `hosts` entry on this machine: it must resolve to its address. */
function onHost(h: Config['hosts'][number], look: Lookup, file: Observed['hostsFile']): Verdict {
  if (look.addresses.includes(h.address)) return pass(addressList(look.addresses))
  if (!look.addresses.length)
    return fail(
      `does not resolve (${look.error ?? 'no address'})`,
      `\`just preflight --fix-hosts\` adds "${h.address} ${h.name}" to ${file.path}; or add ${h.name} to your DNS`,
    )
  const line = file.entries.find((e) => e.names.includes(h.name))
  return fail(
    `resolves to ${addressList(look.addresses)}, expected ${h.address}`,
    line
      ? `${file.path} line ${line.line} maps ${h.name} to ${line.address}: change it to ${h.address} (devreg leaves lines it did not write alone)`
      : `${h.name} comes from DNS: point it at ${h.address} there, or pin it with \`just preflight --fix-hosts\``,
  )
}

/**
 * A `hosts` entry inside a container or node: Docker's DNS and the container's
 * own /etc/hosts answer there, never the host's /etc/hosts. A loopback address
 * would be the container itself, so then any other address will do.
 */
function inContainer(h: Config['hosts'][number], look: Lookup, place: string, config: Config): Verdict {
  const network = config.network
  // A hostname alias of the local registry is best answered by the registry itself.
  const server = config.aliases.includes(h.name) ? config.registry.name : null
  const fixIt = `make ${h.name} resolve on ${network}: ${alias(h.name, network, server)} for the container serving it, or add it to your DNS (containers and nodes do not read this machine's /etc/hosts)`
  if (!look.addresses.length) return fail(`does not resolve on network ${network}`, fixIt)
  if (isLoopback(h.address)) {
    const outside = look.addresses.filter((a) => !isLoopback(a))
    if (outside.length) return pass(addressList(outside))
    return fail(`resolves to ${addressList(look.addresses)}, which in a container is the container itself`, fixIt)
  }
  if (look.addresses.includes(h.address)) return pass(addressList(look.addresses))
  return fail(
    `resolves to ${addressList(look.addresses)}, expected ${h.address}`,
    place === 'container'
      ? `another container on ${network} answers to ${h.name} (\`docker network inspect ${network}\`), or your DNS has it wrong`
      : `check ${h.name} in the node's /etc/hosts (\`docker exec ${place} cat /etc/hosts\`) and on network ${network}`,
  )
}

/** A registry's container name inside the network: it must be the registry's own address there. */
function registryName(r: Registry, look: Lookup, obs: Observed): Verdict {
  const own = obs.network.addresses.get(r.name)
  const state = obs.states.get(r.name)
  const bringUp = `\`just dev-registry\` ${state ? '' : 'creates it and '}attaches every registry to ${obs.network.name}`
  if (state && state !== 'running') return fail(`does not resolve: ${r.name} is ${state}`, '`just dev-registry` starts it')
  if (!own)
    return look.addresses.length
      ? fail(`resolves to ${addressList(look.addresses)}, but ${r.name} is not on ${obs.network.name}`, bringUp)
      : fail(`does not resolve: ${r.name} ${state ? 'is not on' : 'does not exist, so not on'} ${obs.network.name}`, bringUp)
  if (look.addresses.includes(own)) return pass(own)
  if (!look.addresses.length) return fail(`does not resolve on ${obs.network.name}`, bringUp)
  return fail(
    `resolves to ${addressList(look.addresses)}, but ${r.name} is ${own} on ${obs.network.name}`,
    `another container on ${obs.network.name} answers to ${r.name}: \`docker network inspect ${obs.network.name}\``,
  )
}

/** GET /v2/ must answer with the distribution header; `network` is where it was asked from inside, if it was. */
function v2Verdict(r: Registry, answer: V2Answer, where: string, state: string | undefined, network: Observed['network'] | null): Verdict {
  if (answer.ok) return pass(`HTTP ${answer.status}, ${answer.apiVersion}`)
  if (answer.status !== null)
    return fail(
      `${where} answered HTTP ${answer.status} without the Docker-Distribution-Api-Version header`,
      `something other than ${r.name} answers there: stop it, or give ${r.name} another port (${r.path}.port)`,
    )
  if (!state) return fail(`no answer from ${where}: there is no container ${r.name}`, '`just dev-registry` creates it')
  if (state !== 'running') return fail(`no answer from ${where}: ${r.name} is ${state}`, '`just dev-registry` starts it')
  if (network && !network.addresses.has(r.name))
    return fail(
      `no answer from ${where}: ${r.name} is not on ${network.name}`,
      `\`just dev-registry\` attaches every registry to ${network.name}`,
    )
  return fail(
    `no answer from ${where} (${answer.error})`,
    `\`docker logs ${r.name}\` says why; \`just dev-registry\` recreates it if it drifted`,
  )
}

function dockerMirror(config: Config, mirrors: string[] | null): Verdict | null {
  const cache = config.registries.find((r) => r.upstreamHost === 'docker.io')
  if (!cache || mirrors === null) return null
  const url = cache.address.url
  if (pullsThroughCache(mirrors, cache)) return pass(`registry-mirrors has ${url}`)
  const snippet = {
    'registry-mirrors': [url],
    ...(isLoopback(cache.bind) ? {} : { 'insecure-registries': [`${cache.bind}:${cache.port}`] }),
  }
  return {
    status: 'warn',
    detail: `the Docker daemon does not pull docker.io through ${cache.name}: \`docker build\` FROM lines and node-image pulls bypass the cache`,
    fix: `\`just host-mirrors\` adds it (showing the diff first, keeping a backup); or add to /etc/docker/daemon.json yourself, merged with what is there, then \`sudo systemctl reload docker\`: ${JSON.stringify(snippet)}`,
  }
}

/** An EndpointSlice must hold the address the registry has on the cluster network now. */
function sliceVerdict(
  r: Registry,
  where: string,
  slice: { addresses: string[] | null; error: string | null },
  network: Observed['network'],
): Verdict {
  if (slice.error === 'kubectl not found') return { status: 'skip', detail: 'kubectl not found', fix: null }
  if (slice.error) return fail(`cannot read EndpointSlice ${where}: ${slice.error}`, '`just dev-up` (the cluster must be running)')
  if (!slice.addresses) return fail(`no EndpointSlice ${where}: pods cannot reach ${r.name} by its Service`, '`just dev-up` creates it')
  const current = network.addresses.get(r.name)
  if (!current) return fail(`${r.name} has no address on ${network.name}`, '`just dev-up` attaches it and updates the EndpointSlice')
  if (slice.addresses.length === 1 && slice.addresses[0] === current)
    return pass(`EndpointSlice ${where} holds ${current}, its address on ${network.name}`)
  return fail(
    `EndpointSlice ${where} holds ${addressList(slice.addresses)}, but ${r.name} is at ${current} on ${network.name} (recreated since): pods reach the wrong address`,
    '`just dev-up` updates it',
  )
}

/** What every family of checks shares: where verdicts go, and the same check run in the container and in each node. */
interface Judging {
  config: Config
  sel: Selection
  obs: Observed
  add: (check: string, subject: string, place: string, v: Verdict) => void
  /** The check in the container (when `container`) and in each node. */
  inNetwork: (check: string, subject: string, container: ((look: Lookup) => Verdict) | null, node: (n: NodeView) => Verdict) => void
}

/** Every check's verdict, in a stable order: names, registries, mirrors, then the host's Docker and /etc/hosts. */
export function evaluate(config: Config, sel: Selection, obs: Observed): Check[] {
  const checks: Check[] = []
  const add = (check: string, subject: string, place: string, v: Verdict) => checks.push({ check, subject, place, ...v })
  const j: Judging = { config, sel, obs, add, inNetwork: inNetworkChecks(obs, add) }
  hostChecks(j)
  registryChecks(j)
  mirrorChecks(j)
  serviceChecks(j)
  thisMachineChecks(j)
  return checks
}

/** Runs a check in the short-lived container and in every node, or says why it cannot. */
function inNetworkChecks(obs: Observed, add: Judging['add']): Judging['inNetwork'] {
  const net = obs.network.name
  const noCluster: Verdict = {
    status: 'skip',
    detail: `no ${obs.cluster.provider} cluster ${obs.cluster.name}: node checks skipped (\`just dev-up\` creates it)`,
    fix: null,
  }
  return (check, subject, container, node) => {
    if (container) {
      if (!obs.inNetwork) add(check, subject, 'container', { status: 'skip', detail: `network ${net} does not exist yet`, fix: null })
      else if (!obs.inNetwork.resolved)
        add(
          check,
          subject,
          'container',
          fail(
            `could not run ${obs.image} on ${net}: ${obs.inNetwork.error}`,
            /No such image/i.test(obs.inNetwork.error ?? '')
              ? `\`just dev-registry\` pulls ${obs.image}; or set preflight.image to an image this machine has (it needs sh, and getent or nslookup)`
              : 'set preflight.image to an image with sh, and getent or nslookup',
          ),
        )
      else add(check, subject, 'container', container(obs.inNetwork.resolved.get(subject) as Lookup))
    }
    if (!obs.cluster.found) add(check, subject, 'nodes', noCluster)
    for (const n of obs.nodes) {
      if (!n.running) add(check, subject, n.name, fail(`node ${n.name} is not running`, `\`docker start ${n.name}\`, or \`just dev-up\``))
      else add(check, subject, n.name, node(n))
    }
  }
}

/** A name as a node resolved it, judged; or why the node could not resolve names at all. */
const resolvedIn = (n: NodeView, name: string, judge: (look: Lookup) => Verdict): Verdict =>
  n.resolve.resolved
    ? judge(n.resolve.resolved.get(name) as Lookup)
    : fail(`could not resolve names in ${n.name}: ${n.resolve.error}`, `\`docker exec ${n.name} sh\` must work: \`just dev-up\``)

/** 1. Configured hosts: on this machine, in a container on the network, in every node. */
function hostChecks({ config, sel, obs, add, inNetwork }: Judging): void {
  for (const h of sel.hosts) {
    add('resolve', h.name, 'host', onHost(h, obs.host.get(h.name) as Lookup, obs.hostsFile))
    const judge = (place: string) => (look: Lookup) => inContainer(h, look, place, config)
    inNetwork('resolve', h.name, judge('container'), (n) => resolvedIn(n, h.name, judge(n.name)))
  }
}

/** 2. Registries by their names on the network, and GET /v2/ from here and from each node. */
function registryChecks({ sel, obs, add, inNetwork }: Judging): void {
  for (const r of sel.registries) {
    const judge = (look: Lookup) => registryName(r, look, obs)
    inNetwork('resolve', r.name, judge, (n) => resolvedIn(n, r.name, judge))
  }
  for (const r of sel.registries) {
    const state = obs.states.get(r.name)
    add('registry', r.name, 'host', v2Verdict(r, obs.v2.get(r.name) as V2Answer, `${r.bind}:${r.port}`, state, null))
    inNetwork('registry', r.name, null, (n) => {
      const answer = n.v2.get(r.name) as V2Answer
      if (answer.error?.startsWith('no curl or nc')) return { status: 'skip', detail: answer.error, fix: null }
      return v2Verdict(r, answer, `http://${r.name}:5000`, state, obs.network)
    })
  }
}

/** 3. Every node's mirror configuration: exactly what dev-up writes. */
function mirrorChecks({ config, sel, obs, inNetwork }: Judging): void {
  const desired = desiredMirrors(config)
  const kind = config.cluster.provider === 'kind'
  const file = (host: string) => (kind ? `${CERTS_D}/${host}/hosts.toml` : `the ${host} mirror in ${K3S_REGISTRIES}`)
  const missing = (host: string) => (kind ? `no ${file(host)}` : `${K3S_REGISTRIES} has no mirror for ${host}`)
  const rewrite = kind ? '`just dev-up` rewrites it' : '`just dev-up` rewrites it and restarts the nodes (k3s reads it only at start)'
  const mirrorVerdict = (n: NodeView, host: string): Verdict => {
    if (!n.mirrors) return fail(`no ${K3S_REGISTRIES}`, '`just dev-up` writes it and restarts the nodes')
    const has = n.mirrors.get(host)
    if (has === undefined) return fail(missing(host), kind ? '`just dev-up` writes it' : rewrite)
    return has === desired.get(host) ? pass(`as devreg writes it`) : fail(`${file(host)} differs from what devreg writes`, rewrite)
  }
  for (const host of sel.routes) inNetwork('mirror', host, null, (n) => mirrorVerdict(n, host))
  if (!sel.all) return
  const stale = new Set(
    obs.nodes.flatMap((n) =>
      [...(n.mirrors ?? new Map<string, string>())].filter(([h, c]) => !desired.has(h) && (!kind || isDevregHostsToml(c))).map(([h]) => h),
    ),
  )
  for (const host of stale)
    inNetwork('mirror', host, null, (n) =>
      n.mirrors?.has(host)
        ? fail(`${file(host)} is devreg's but no longer in the config`, kind ? '`just dev-up` removes it' : rewrite)
        : pass('not there'),
    )
  if (kind && sel.routes.length)
    inNetwork('containerd', 'config_path', null, (n) =>
      n.readsCertsD
        ? pass(`reads ${CERTS_D}`)
        : fail(
            `containerd in ${n.name} does not read ${CERTS_D}, so it ignores every hosts.toml`,
            'the node did not take the kind config patch: `just dev-up --recreate`',
          ),
    )
}

/** 4. Each registry's EndpointSlice, which pods reach it through: its current address. */
function serviceChecks({ sel, obs, add }: Judging): void {
  for (const r of sel.registries) {
    const where = `${IN_CLUSTER_NAMESPACE}/${serviceName(r)}`
    const slice = obs.slices?.get(r.name)
    // Without a cluster the node checks already say so.
    if (obs.cluster.found && slice) add('service', r.name, 'cluster', sliceVerdict(r, where, slice, obs.network))
  }
}

/** 5. This machine's Docker daemon and /etc/hosts. */
function thisMachineChecks({ config, sel, obs, add }: Judging): void {
  const daemon = checksDaemon(sel) ? dockerMirror(config, obs.daemonMirrors) : null
  if (daemon) add('docker-mirror', 'docker.io', 'host', daemon)
  // The other cached hosts: hosts.toml in the engine's certs.d, where it reads them.
  for (const h of obs.hostRoutes ?? [])
    if (h.host !== 'docker.io' && (sel.all || sel.routes.includes(h.host)))
      add('docker-mirror', h.host, 'host', { status: h.status, detail: h.detail, fix: h.fix })
  const shadows = shadowedRegistries(obs.hostsFile.entries)
  for (const s of shadows)
    add('shadow', s.name, 'host', {
      status: 'warn',
      detail: `${obs.hostsFile.path} line ${s.line} maps ${s.name} to ${s.address}: pulls from ${s.name} on this machine go there and fail`,
      fix: `remove ${s.name} from line ${s.line} of ${obs.hostsFile.path}: nodes reach the caches through their mirror configuration, not through that name`,
    })
  if (sel.all && !shadows.length) add('shadow', 'public registries', 'host', pass(`${obs.hostsFile.path} maps none to this machine`))
}

/** Position in `order`, or after it (a stable sort keeps the rest in their order). */
const rank = (order: string[], x: string) => (order.includes(x) ? order.indexOf(x) : order.length)

const CELL: Record<Status, string> = { pass: 'ok', fail: 'FAIL', warn: 'warn', skip: 'skip' }
const MARK: Record<Status, string> = { pass: '✓', fail: '✗', warn: '!', skip: '-' }

export function summarize(checks: Check[]): Record<Status, number> {
  const count = (s: Status) => checks.filter((c) => c.status === s).length
  return { pass: count('pass'), fail: count('fail'), warn: count('warn'), skip: count('skip') }
}

/**
 * The human report: a table of check × place, then every failure, warning
 * and skip once with its fix (the same cause in several places is one entry).
 */
export function renderReport(checks: Check[]): string {
  const first = ['host', 'container']
  const places = [...new Set(checks.map((c) => c.place))].sort((a, b) => rank(first, a) - rank(first, b))
  const rows = [...new Map(checks.map((c) => [`${c.check} ${c.subject}`, c])).values()]
  const cell = (row: Check, place: string) =>
    checks.find((c) => c.check === row.check && c.subject === row.subject && c.place === place)?.status
  const grid = table(
    ['CHECK', 'NAME', ...places.map((p) => p.toUpperCase())],
    rows.map((r) => [r.check, r.subject, ...places.map((p) => CELL[cell(r, p) as Status] ?? '-')]),
  )
  const groups = new Map<string, { status: Status; detail: string; fix: string | null; what: Set<string>; places: Set<string> }>()
  for (const c of checks.filter((x) => x.status !== 'pass')) {
    const key = `${c.status}\0${c.detail}\0${c.fix}`
    const g = groups.get(key) ?? { status: c.status, detail: c.detail, fix: c.fix, what: new Set(), places: new Set() }
    g.what.add(`${c.check} ${c.subject}`)
    g.places.add(c.place)
    groups.set(key, g)
  }
  const order: Status[] = ['fail', 'warn', 'skip']
  const notes = [...groups.values()]
    .sort((a, b) => order.indexOf(a.status) - order.indexOf(b.status))
    .map((g) => {
      const what = g.status === 'skip' ? `${g.what.size} check${g.what.size === 1 ? '' : 's'}` : [...g.what].join(', ')
      const head = `${MARK[g.status]} ${what} (${[...g.places].join(', ')}): ${g.detail}`
      return g.fix ? `${head}\n    fix: ${g.fix}` : head
    })
  const s = summarize(checks)
  const tally = `${s.pass} passed, ${s.fail} failed, ${s.warn} warning${s.warn === 1 ? '' : 's'}, ${s.skip} skipped`
  return [grid, ...(notes.length ? ['', ...notes] : []), '', tally].join('\n')
}
