// preflight's judgement, pure: a verdict with a fix for everything observe()
// saw (names on this machine, in a container and in each node; the
// registries; every node's routing; the EndpointSlices; this machine's Docker
// and /etc/hosts), and the report.

import { providerOf } from '../cluster/providers/index.ts'
import { IN_CLUSTER_NAMESPACE, serviceName } from '../cluster/render.ts'
import type { Config, Registry } from '../core/config.ts'
import { table } from '../core/log.ts'
import type { V2Answer } from '../registries/distribution.ts'
import type { Lookup } from './dns.ts'
import { shadowedRegistries } from './etc-hosts.ts'
import { pullsThroughCache } from './host-engine.ts'
import { isLoopback } from './local-addresses.ts'
import { type Check, checksDaemon, desiredMirrors, type NodeView, type Observed, type Selection, type Status } from './preflight.ts'

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
  const cache = config.registries.find((r) => r.upstreamDomain === 'docker.io')
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
    add('resolve', h.name, 'host', onHost(h, obs.onHost.get(h.name) as Lookup, obs.hostsFile))
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
  const { routing, certsD, certsDCheck } = providerOf(config)
  const mirrorVerdict = (n: NodeView, domain: string): Verdict => {
    if (!n.mirrors) return fail(routing.absent, routing.fix.absent)
    const has = n.mirrors.get(domain)
    if (has === undefined) return fail(routing.missing(domain), routing.fix.write)
    return has === desired.get(domain)
      ? pass(`as devreg writes it`)
      : fail(`${routing.entry(domain)} differs from what devreg writes`, routing.fix.rewrite)
  }
  for (const domain of sel.routes) inNetwork('mirror', domain, null, (n) => mirrorVerdict(n, domain))
  if (!sel.all) return
  const stale = new Set(
    obs.nodes.flatMap((n) =>
      [...(n.mirrors ?? new Map<string, string>())].filter(([d, c]) => !desired.has(d) && routing.ownEntry(c)).map(([d]) => d),
    ),
  )
  for (const domain of stale)
    inNetwork('mirror', domain, null, (n) =>
      n.mirrors?.has(domain)
        ? fail(`${routing.entry(domain)} is devreg's but no longer in the config`, routing.fix.remove)
        : pass('not there'),
    )
  if (certsDCheck && sel.routes.length)
    inNetwork('containerd', 'config_path', null, (n) =>
      n.readsCertsD
        ? pass(`reads ${certsD}`)
        : fail(`containerd in ${n.name} does not read ${certsD}, so it ignores every hosts.toml`, certsDCheck.fix),
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
  // The other cached domains: hosts.toml in the engine's certs.d, where it reads them.
  for (const h of obs.hostRoutes ?? [])
    if (h.domain !== 'docker.io' && (sel.all || sel.routes.includes(h.domain)))
      add('docker-mirror', h.domain, 'host', { status: h.status, detail: h.detail, fix: h.fix })
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
