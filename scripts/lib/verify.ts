// Proof that each node pulls each registry host through the route devreg
// wrote: one probe pull per node × host through the node's CRI image service
// (`crictl pull`, the kubelet's path), of a tiny image by digest that devreg
// puts in every registry's storage itself; it passes when the route's first
// registry logged the manifest request from that node for that host. A cache
// answers a digest it holds from its own storage (distribution's
// proxyManifestStore and proxyBlobStore look locally first), so a probe never
// reaches an upstream through a cache. Files and `containerd config dump` can look
// right while pulls go elsewhere (containerd#12415, containerd#12636,
// spegel#1272, a node proxy): only the registry's own log says where they went.
// Planning, log matching, verdicts and the matrix are pure; observe() asks Docker.
import { createHash } from 'node:crypto'
import type { Config, Provider } from './config.ts'
import * as docker from './docker.ts'
import type { Runner } from './exec.ts'
import { log, table, UserError } from './log.ts'
import { placeFiles } from './probe-placement.ts'
import { CERTS_D, readsCertsD } from './providers/kind.ts'
import { findClusters, type Node, PROVIDERS } from './providers/provider.ts'
import { blobPath, layerLinkPath, REGISTRY_DATA, revisionLinkPath } from './registry-layout.ts'
import { logFields } from './registry-log.ts'
import { registryRoutes } from './routes.ts'
import { template } from './templates.ts'

/** The repository every probe names. */
export const PROBE_REPOSITORY = 'devreg-probe/verify'
/**
 * How long one probe pull may run in a node. containerd tries every host of
 * the chain in turn, the real upstream last; the verdict needs only the first.
 */
export const PROBE_SECONDS = 5

const PROBE_SCRIPT = template('verify-probe.sh')

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
/** The platforms the probe image has a manifest for: containerd's unpacker refuses a config of another one. */
export const PROBE_PLATFORMS = [
  { architecture: 'amd64', os: 'linux' },
  { architecture: 'arm64', os: 'linux' },
]

/** A file of distribution's storage, relative to the volume's root. */
export interface StorageBlob {
  path: string
  body: Buffer
}

export interface ProbeImage {
  /** The index's digest: what every probe pulls. */
  digest: string
  /** Blobs, then their links in PROBE_REPOSITORY, as distribution stores them (no tag). */
  files: StorageBlob[]
}

/**
 * The probe image (pure, so its digest is a constant): an OCI index of one
 * manifest per platform, each with its config and one layer, an empty tar
 * (1 KiB of zeros; containerd unpacks it in no time).
 */
export function probeImage(): ProbeImage {
  const blob = (mediaType: string, body: Buffer) => ({
    mediaType,
    body,
    digest: `sha256:${createHash('sha256').update(body).digest('hex')}`,
    size: body.length,
  })
  const json = (mediaType: string, doc: unknown) => blob(mediaType, Buffer.from(JSON.stringify(doc)))
  const ref = (b: ReturnType<typeof blob>) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })
  const layer = blob('application/vnd.oci.image.layer.v1.tar', Buffer.alloc(1024))
  const images = PROBE_PLATFORMS.map((platform) => {
    const config = json('application/vnd.oci.image.config.v1+json', {
      ...platform,
      config: {},
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
    })
    const manifest = json(OCI_MANIFEST, { schemaVersion: 2, mediaType: OCI_MANIFEST, config: ref(config), layers: [ref(layer)] })
    return { platform, config, manifest }
  })
  const index = json(OCI_INDEX, {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: images.map((i) => ({ ...ref(i.manifest), platform: i.platform })),
  })
  const manifests = [index, ...images.map((i) => i.manifest)]
  const layers = [layer, ...images.map((i) => i.config)]
  const link = (d: string) => Buffer.from(d)
  return {
    digest: index.digest,
    files: [
      ...[...manifests, ...layers].map((b) => ({ path: blobPath(b.digest), body: b.body })),
      ...layers.map((b) => ({ path: layerLinkPath(PROBE_REPOSITORY, b.digest), body: link(b.digest) })),
      ...manifests.map((b) => ({ path: revisionLinkPath(PROBE_REPOSITORY, b.digest), body: link(b.digest) })),
    ],
  }
}

export type Status = 'pass' | 'fail' | 'skip'

/** One registry host as verify probes it. */
export interface Target {
  host: string
  /** The devreg registry the route's first endpoint is (its in-network URL), or null for a remote. */
  first: string | null
  firstUrl: string
  /** Every host of the chain after the first, in the order containerd tries them (endpoints, then server). */
  rest: string[]
}

/** One probe: a node and a registry host. */
export interface Probe {
  node: string
  host: string
  ref: string
  first: string | null
  status: Status
  detail: string
  fix: string | null
  /** Containers that logged this probe from the node, in the order containerd asked them. */
  answeredBy: string[]
}

/** A manifest request under PROBE_REPOSITORY, as a registry logged it. */
export interface Hit {
  container: string
  /** The registry host the request was for: containerd's ?ns= on a mirror, else the Host header. */
  host: string
  reference: string
  method: string
  address: string
  status: number
}

const hostOf = (url: string) => {
  try {
    return new URL(url).hostname
  } catch {
    return ''
  }
}

/** The routes verify probes: each host devreg routes, with the devreg registry its route tries first. */
export function targets(config: Config): Target[] {
  return registryRoutes(config).map((r) => {
    const firstUrl = r.endpoints[0]?.url ?? r.server
    const first = config.registries.find((x) => x.address.inNetworkUrl === firstUrl)?.name ?? null
    return { host: r.host, first, firstUrl, rest: [...r.endpoints.slice(1).map((e) => e.url), r.server] }
  })
}

/** Probes of every node × target: the probe image by digest under each host. */
export function planProbes(ts: Target[], nodes: string[], digest: string): Probe[] {
  return nodes.flatMap((node) =>
    ts.map((t) => ({
      node,
      host: t.host,
      ref: `${t.host}/${PROBE_REPOSITORY}@${digest}`,
      first: t.first,
      status: 'skip' as Status,
      detail: '',
      fix: null,
      answeredBy: [],
    })),
  )
}

const MANIFEST_URI = new RegExp(`^/v2/${PROBE_REPOSITORY}/manifests/([A-Za-z0-9_.:-]+)(\\?.*)?$`)

/**
 * Manifest requests under PROBE_REPOSITORY in a distribution log: its
 * `response completed` lines (logrus text or JSON; 2.8 and 3 alike) carry the
 * method, host, URI, client address and status. containerd adds ?ns=HOST when
 * it asks a host other than the reference's (remotes/docker `addNamespace`),
 * so ns, else the Host header, is the host a probe named.
 */
export function probeHits(container: string, text: string): Hit[] {
  const hits: Hit[] = []
  for (const line of text.split('\n')) {
    if (!line.includes('response completed') || !line.includes(PROBE_REPOSITORY)) continue
    const f = logFields(line)
    const m = MANIFEST_URI.exec(f['http.request.uri'] ?? '')
    if (!m) continue
    const address = (f['http.request.remoteaddr'] ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')
    const host = new URLSearchParams(m[2]?.slice(1) ?? '').get('ns') ?? f['http.request.host'] ?? ''
    hits.push({
      container,
      host,
      reference: m[1],
      method: f['http.request.method'] ?? '',
      address,
      status: Number(f['http.response.status'] ?? 0),
    })
  }
  return hits
}

/**
 * The proxy a Go program (containerd) uses for an http:// URL of `host`, from
 * its environment as Go's httpproxy reads it (upper case first): null when
 * none applies, NO_PROXY covers the host, or the host is loopback.
 */
export function proxyFor(env: Record<string, string>, host: string): string | null {
  const proxy = env.HTTP_PROXY || env.http_proxy
  if (!proxy) return null
  const name = host.replace(/:\d+$/, '')
  if (name === 'localhost' || /^127\./.test(name) || name === '::1') return null
  const noProxy = (env.NO_PROXY ?? env.no_proxy ?? '').split(',').map((s) => s.trim().toLowerCase())
  for (const entry of noProxy.filter(Boolean)) {
    if (entry === '*') return null
    const [e, port] = entry.split(/:(?=\d+$)/)
    if (port && !host.endsWith(`:${port}`)) continue
    const bare = e.replace(/^\*?\./, '')
    if (name === bare || name.endsWith(`.${bare}`)) return null
  }
  return proxy
}

/** What verify looked at besides the logs, gathered only for probes that failed. */
export interface Facts {
  provider: Provider
  network: string
  /** Container name → state and networks; absent when there is no such container. */
  containers: Map<string, { state: string; networks: string[] }>
  /** Node → the registry hosts it has a hosts.toml for, containerd's proxy variables, whether it reads certs.d (kind). */
  nodes: Map<string, { hostsToml: Set<string>; env: Record<string, string>; readsCertsD: boolean | null }>
}

type Verdict = Pick<Probe, 'status' | 'detail' | 'fix'>
const fail = (detail: string, fix: string): Verdict => ({ status: 'fail', detail, fix })

/** The verdict on one probe, from the registries' logs and, for a miss, the facts that explain it. */
export function judge(
  p: Probe,
  t: Target,
  hits: Hit[],
  nodeAddresses: string[],
  pull: { rc: number; out: string } | null,
  facts: Facts,
): Verdict {
  if (!t.first)
    return {
      status: 'skip',
      detail: `the route starts at ${t.firstUrl}, not at a devreg registry whose log verify can read`,
      fix: null,
    }
  const mine = hits.filter((h) => h.host === p.host)
  const answer = mine.find((h) => h.container === t.first && nodeAddresses.includes(h.address))
  if (answer) return { status: 'pass', detail: `${t.first} answered (${answer.method} ${answer.status})`, fix: null }
  return pullFault(p.node, pull) ?? explainMiss(p, t, t.first, mine, nodeAddresses, pull, facts)
}

/** A probe pull that never got as far as containerd's resolver, so no registry could have logged it. */
function pullFault(node: string, pull: { rc: number; out: string } | null): Verdict | null {
  if (!pull) return null
  if (pull.rc === 127 || /crictl: (not found|No such file)|executable file not found/.test(pull.out))
    return fail(
      `${node} has no crictl, so no probe pull ran`,
      'kind and k3s nodes ship crictl; use a node image that has it (kindest/node, rancher/k3s)',
    )
  if (/connect: no such file|ENOENT|Unavailable desc = .*(connection|socket)/i.test(pull.out))
    return fail(
      `crictl in ${node} cannot reach containerd: ${pull.out.slice(0, 200)}`,
      `\`docker exec ${node} crictl info\` and containerd's log in the node say why`,
    )
  return null
}

/**
 * Why `first` (the route's first registry) did not log the probe from its
 * node, checked in the order the fixes go: the registry, the node's
 * containerd, then something between them.
 */
function explainMiss(
  p: Probe,
  t: Target,
  first: string,
  mine: Hit[],
  nodeAddresses: string[],
  pull: { rc: number; out: string } | null,
  facts: Facts,
): Verdict {
  const fromNode = mine.filter((h) => nodeAddresses.includes(h.address))
  const others = [...new Set(fromNode.map((h) => h.container).filter((c) => c !== first))]
  const instead = others.length
    ? `${others.join(', ')} answered instead`
    : `nothing on the cluster network logged it (the node went past every devreg registry, to ${t.rest[t.rest.length - 1]} or nowhere)`
  const upstreamNote = others.length || t.rest.length ? ': the upstream answered, so pulls of this host cost its rate limit' : ''
  const registry = facts.containers.get(first)
  if (registry?.state !== 'running')
    return fail(
      `${first} is ${registry ? registry.state : 'missing'}; ${instead}${upstreamNote}`,
      `\`just dev-registry\` ${registry ? 'starts it' : 'creates it'} (containerd falls through to the next host meanwhile)`,
    )
  if (!registry.networks.includes(facts.network))
    return fail(
      `${first} is not on ${facts.network}, so ${p.node} cannot reach it; ${instead}`,
      `\`just dev-registry\` attaches it again (or \`docker network connect ${facts.network} ${first}\`)`,
    )
  const nodeFault = containerdFault(p, t, first, facts, instead)
  if (nodeFault) return nodeFault
  const elsewhere = mine.filter((h) => h.container === first && !nodeAddresses.includes(h.address))
  if (elsewhere.length)
    return fail(
      `${first} logged it from ${elsewhere[0].address}, not from ${p.node} (${nodeAddresses.join(', ')}): something forwards the node's pulls`,
      'check the node for a proxy or NAT between it and the registries',
    )
  return fail(
    `${first} did not log it; ${instead}${pull?.out ? ` (crictl: ${pull.out.slice(0, 160)})` : ''}`,
    `\`just preflight\` checks names and mirror files; \`docker logs ${first}\` shows what the registry saw`,
  )
}

/** A miss the node's containerd explains: no hosts.toml for the host, certs.d not read, or a proxy in the way. */
function containerdFault(p: Probe, t: Target, first: string, facts: Facts, instead: string): Verdict | null {
  const node = facts.nodes.get(p.node)
  if (!node) return null
  const kind = facts.provider === 'kind'
  const dir = PROVIDERS[facts.provider].certsD
  if (!node.hostsToml.has(p.host))
    return fail(
      `${p.node} has no ${dir}/${p.host}/hosts.toml, so containerd pulls ${p.host} directly; ${instead}`,
      kind ? '`just dev-up` writes it' : '`just dev-up` rewrites registries.yaml and restarts the nodes (k3s renders hosts.toml at start)',
    )
  if (node.readsCertsD === false)
    return fail(
      `containerd in ${p.node} does not read ${CERTS_D} (no config_path in \`containerd config dump\` names it), so it ignores every hosts.toml; ${instead}`,
      'the node did not take the kind config patch: `just dev-up --recreate`',
    )
  const proxy = proxyFor(node.env, first)
  if (proxy)
    return fail(
      `containerd in ${p.node} sends ${t.firstUrl} to the proxy ${proxy} (${first} is not in its NO_PROXY); ${instead}`,
      `add ${first} to NO_PROXY in the node: \`dev-up --recreate\` from a shell with the proxy set puts every registry there, or take the proxy out of containerd's environment`,
    )
  return null
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

/** The facts script's output: hosts with a hosts.toml, and containerd's proxy variables. */
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

export interface VerifyResult {
  ok: boolean
  cluster: string
  /** The probe image's digest. */
  image: string
  elapsedMs: number
  summary: Record<Status, number>
  probes: Probe[]
}

export function summarize(probes: Probe[]): Record<Status, number> {
  const count = (s: Status) => probes.filter((p) => p.status === s).length
  return { pass: count('pass'), fail: count('fail'), skip: count('skip') }
}

const CELL: Record<Status, string> = { pass: 'ok', fail: 'FAIL', skip: 'skip' }

/** The matrix (a row per registry host, a column per node), then each failure and skip once with its fix. */
export function renderMatrix(r: Pick<VerifyResult, 'probes' | 'elapsedMs'>, onlyFailures = false): string {
  const nodes = [...new Set(r.probes.map((p) => p.node))]
  const hosts = [...new Set(r.probes.map((p) => p.host))]
  const at = (host: string, node: string) => r.probes.find((p) => p.host === host && p.node === node)
  const grid = table(
    ['HOST', 'FIRST REGISTRY', ...nodes.map((n) => n.toUpperCase())],
    hosts.map((h) => [h, at(h, nodes[0])?.first ?? '-', ...nodes.map((n) => CELL[at(h, n)?.status ?? 'skip'])]),
  )
  const groups = new Map<string, { p: Probe; nodes: string[] }>()
  for (const p of r.probes.filter((x) => x.status !== 'pass' && (!onlyFailures || x.status === 'fail'))) {
    // The same cause on several nodes reads once; details name the node, so group on the fix and host.
    const key = `${p.status}\0${p.host}\0${p.fix}\0${p.detail.replaceAll(p.node, '<node>')}`
    const g = groups.get(key) ?? { p, nodes: [] }
    g.nodes.push(p.node)
    groups.set(key, g)
  }
  const notes = [...groups.values()]
    .sort((a, b) => (a.p.status === b.p.status ? 0 : a.p.status === 'fail' ? -1 : 1))
    .map(({ p, nodes }) => {
      const head = `${p.status === 'fail' ? '✗' : '-'} ${p.host} (${nodes.join(', ')}): ${p.detail}`
      return p.fix ? `${head}\n    fix: ${p.fix}` : head
    })
  const s = summarize(r.probes)
  const tally = `${s.pass} passed, ${s.fail} failed, ${s.skip} skipped in ${(r.elapsedMs / 1000).toFixed(1)}s`
  return [grid, ...(notes.length ? ['', ...notes] : []), '', tally].join('\n')
}

/** The addresses of each node container on every network it is on. */
async function nodeAddresses(run: Runner, nodes: string[]): Promise<Map<string, string[]>> {
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

async function gatherFacts(run: Runner, config: Config, failing: Probe[], nodes: Node[], containers: docker.Container[]): Promise<Facts> {
  const dir = PROVIDERS[config.cluster.provider].certsD
  const byNode = new Map<string, string[]>()
  for (const p of failing) byNode.set(p.node, [...new Set([...(byNode.get(p.node) ?? []), p.host])])
  const entries = await Promise.all(
    nodes
      .filter((n) => n.running && byNode.has(n.name))
      .map(async (n) => {
        const [r, certsD] = await Promise.all([
          run.probe(['docker', 'exec', n.name, 'sh', '-c', PROBE_SCRIPT, 'verify-probe', 'facts', dir, ...(byNode.get(n.name) ?? [])]),
          config.cluster.provider === 'kind' ? readsCertsD(run, n.name) : Promise.resolve(null),
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

/** Log lines of every container a probe may have reached, since `since` (ms), read at once: container → lines. */
async function readLogs(run: Runner, names: string[], since: number): Promise<Map<string, string[]>> {
  const all = await Promise.all(
    names.map(async (name) => {
      const r = await run.probe(['docker', 'logs', '--since', (since / 1000).toFixed(3), name])
      return [name, `${r.stdout}\n${r.stderr}`.split('\n')] as const
    }),
  )
  return new Map(all)
}

/** Probe requests in the logs that are not in `before` (the same containers' lines read before the pulls). */
function newHits(logs: Map<string, string[]>, before: Map<string, string[]>): Hit[] {
  return [...logs].flatMap(([name, lines]) => {
    const old = new Set(before.get(name))
    return probeHits(name, lines.filter((l) => !old.has(l)).join('\n'))
  })
}

const PROBE_IMAGE = probeImage()

/**
 * Puts the probe image in each running devreg registry that lacks it (the
 * local registry and every cache), through the registry's volume as `import`
 * does: a cache that were asked for it would ask its upstream. The check is
 * one `docker exec` per registry, for the index's revision link, which
 * import's commit links last of all.
 */
async function ensureProbeImage(run: Runner, config: Config, containers: docker.Container[]): Promise<void> {
  const marker = `${REGISTRY_DATA}/${revisionLinkPath(PROBE_REPOSITORY, PROBE_IMAGE.digest)}`
  const running = config.registries.filter((r) => containers.some((c) => c.name === r.name && c.state === 'running'))
  await Promise.all(
    running.map(async (r) => {
      if ((await run.probe(['docker', 'exec', r.name, 'test', '-f', marker])).ok) return
      await placeFiles(run, r, PROBE_IMAGE.files, 'verify (placing its probe image)')
    }),
  )
}

/** The nodes of the cluster of `config`: control plane (server) first, then workers (agents), as kind and k3d list them. */
function clusterNodes(config: Config, containers: docker.Container[]): Node[] {
  const cluster = findClusters(config.cluster.name, containers).find((c) => c.provider === config.cluster.provider)
  const rank = (n: Node) => (n.role === 'control-plane' || n.role === 'server' ? 0 : 1)
  return [...(cluster?.nodes ?? [])].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name))
}

/** Containers whose logs verify reads: devreg's own registries, and any container a route names after them (a team cache, a test's upstream). */
function readableLogs(config: Config, ts: Target[], containers: docker.Container[]): string[] {
  const names = new Set(containers.map((c) => c.name))
  return [
    ...new Set([...config.registries.map((r) => r.name), ...ts.flatMap((t) => t.rest.map(hostOf)).filter((h) => names.has(h))]),
  ].filter((n) => names.has(n))
}

/** The probe pulls: one exec per running node, every host at once in it. Returns ref → crictl's result. */
async function pullProbes(run: Runner, nodes: Node[], probes: Probe[], seconds: number): Promise<Map<string, { rc: number; out: string }>> {
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

/** Whether the route's first registry logged the probe from the probe's node. */
function tookRoute(p: Probe, hits: Hit[], addresses: Map<string, string[]>): boolean {
  return hits.some((h) => h.host === p.host && h.container === p.first && (addresses.get(p.node) ?? []).includes(h.address))
}

/** Probe requests the registries logged since the pulls (lines in `before` left out). */
async function readProbeHits(
  run: Runner,
  readable: string[],
  since: number,
  before: Map<string, string[]>,
  probes: Probe[],
  addresses: Map<string, string[]>,
): Promise<Hit[]> {
  const hits = newHits(await readLogs(run, readable, since), before)
  if (!probes.some((p) => p.first && !tookRoute(p, hits, addresses))) return hits
  // The log driver copies lines a moment after the registry writes them.
  await new Promise((r) => setTimeout(r, 300))
  return newHits(await readLogs(run, readable, since), before)
}

/** `containers` sorted in the order the route of `t` tries them. */
function inRouteOrder(t: Target, containers: string[]): string[] {
  const chain = [t.first, ...t.rest.map(hostOf)]
  return containers.sort((a, b) => chain.indexOf(a) - chain.indexOf(b))
}

/** Runs every probe of the cluster of `config` and judges it. */
export async function verify(run: Runner, config: Config, opts: { seconds?: number } = {}): Promise<VerifyResult> {
  const start = Date.now()
  const containers = await docker.listContainers(run)
  const nodes = clusterNodes(config, containers)
  const ts = targets(config)
  const probes = planProbes(
    ts,
    nodes.map((n) => n.name),
    PROBE_IMAGE.digest,
  )
  const readable = readableLogs(config, ts, containers)
  const since = start - 2000

  // 1. The probe image in every registry, then the probe pulls.
  // Every run probes the same references: lines logged before the pulls (a run a moment ago) are read first and left out.
  const [addresses, before] = await Promise.all([
    nodeAddresses(
      run,
      nodes.filter((n) => n.running).map((n) => n.name),
    ),
    readLogs(run, readable, since),
    ensureProbeImage(run, config, containers),
  ])
  const pulls = await pullProbes(run, nodes, probes, opts.seconds ?? PROBE_SECONDS)

  // 2. What the registries logged since.
  const hits = await readProbeHits(run, readable, since, before, probes, addresses)

  // 3. Verdicts; what explains a miss is looked at only when there is one.
  const misses = probes.filter((p) => p.first && !tookRoute(p, hits, addresses))
  const facts = misses.length
    ? await gatherFacts(run, config, misses, nodes, containers)
    : { provider: config.cluster.provider, network: config.network, containers: new Map(), nodes: new Map() }
  const byHost = new Map(ts.map((t) => [t.host, t]))
  for (const p of probes) {
    const t = byHost.get(p.host) as Target
    const node = nodes.find((n) => n.name === p.node) as Node
    const nodeAddrs = addresses.get(p.node) ?? []
    const verdict = node.running
      ? judge(p, t, hits, nodeAddrs, pulls.get(p.ref) ?? null, facts)
      : { status: 'fail' as const, detail: `node ${p.node} is not running`, fix: `\`docker start ${p.node}\`, or \`just dev-up\`` }
    const answered = [...new Set(hits.filter((h) => h.host === p.host && nodeAddrs.includes(h.address)).map((h) => h.container))]
    Object.assign(p, verdict, { answeredBy: inRouteOrder(t, answered) })
  }
  const summary = summarize(probes)
  return { ok: summary.fail === 0, cluster: config.cluster.name, image: PROBE_IMAGE.digest, elapsedMs: Date.now() - start, summary, probes }
}

/**
 * dev-up's last phase: verify, with the failures shown; a failed probe fails
 * dev-up. Returns the tally for dev-up's summary.
 */
export async function verifyPhase(run: Runner, config: Config): Promise<Record<Status, number>> {
  const result = await verify(run, config)
  const s = result.summary
  log.info(`   ${s.pass} of ${result.probes.length} probes took their route (${(result.elapsedMs / 1000).toFixed(1)}s)`)
  if (result.ok) return s
  log.info(renderMatrix(result, true))
  throw new UserError(
    `verify: ${s.fail} of ${result.probes.length} probes did not reach their first registry (fixes above); \`just verify\` checks again`,
  )
}
