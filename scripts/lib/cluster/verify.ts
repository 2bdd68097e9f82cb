// Proof that each node pulls each registry domain through the route devreg
// wrote: one probe pull per node × domain through the node's CRI image service
// (`crictl pull`, the kubelet's path), of a tiny image by digest that devreg
// puts in every registry's storage itself; it passes when the route's first
// registry logged the manifest request from that node for that domain. A cache
// answers a digest it holds from its own storage (distribution's
// proxyManifestStore and proxyBlobStore look locally first), so a probe never
// reaches an upstream through a cache. Files and `containerd config dump` can look
// right while pulls go elsewhere (containerd#12415, containerd#12636,
// spegel#1272, a node proxy): only the registry's own log says where they went.
// Planning and log matching are pure, as are the verdicts and the matrix
// (verify-verdicts.ts); what runs in the nodes is in verify-nodes.ts.
import { createHash } from 'node:crypto'
import type { Config } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { log, UserError } from '../core/log.ts'
import { blobPath, layerLinkPath, REGISTRY_DATA, revisionLinkPath } from '../registries/registry-layout.ts'
import { logFields } from '../registries/registry-log.ts'
import type { NodeSnapshot } from './nodes.ts'
import { placeFiles } from './probe-placement.ts'
import type { Node } from './providers/index.ts'
import { registryRoutes } from './routes.ts'
import { clusterNodes, factsOf, nodeAddresses, probeNodes } from './verify-nodes.ts'
import { type Hit, judge, type Probe, renderMatrix, type Status, summarize, type Target, type VerifyResult } from './verify-verdicts.ts'

/** The repository every probe names. */
export const PROBE_REPOSITORY = 'devreg-probe/verify'
/**
 * How long one probe pull may run in a node. containerd tries every registry
 * of the chain in turn, the real upstream last; the verdict needs only the first.
 */
export const PROBE_SECONDS = 5

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

const hostnameOf = (url: string) => {
  try {
    return new URL(url).hostname
  } catch {
    return ''
  }
}

/** The routes verify probes: each registry domain devreg routes, with the devreg registry its route tries first. */
export function targets(config: Config): Target[] {
  return registryRoutes(config).map((r) => {
    const firstUrl = r.endpoints[0]?.url ?? r.server
    const first = config.registries.find((x) => x.address.inNetworkUrl === firstUrl)?.name ?? null
    return { domain: r.domain, first, firstUrl, rest: [...r.endpoints.slice(1).map((e) => e.url), r.server] }
  })
}

/** Probes of every node × target: the probe image by digest under each registry domain. */
export function planProbes(ts: Target[], nodes: string[], digest: string): Probe[] {
  return nodes.flatMap((node) =>
    ts.map((t) => ({
      node,
      domain: t.domain,
      ref: `${t.domain}/${PROBE_REPOSITORY}@${digest}`,
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
 * method, Host header, URI, client address and status. containerd adds
 * ?ns=DOMAIN when it asks a registry other than the reference's domain
 * (remotes/docker `addNamespace`), so ns, else the Host header, is the
 * registry domain a probe named.
 */
export function probeHits(container: string, text: string): Hit[] {
  const hits: Hit[] = []
  for (const line of text.split('\n')) {
    if (!line.includes('response completed') || !line.includes(PROBE_REPOSITORY)) continue
    const f = logFields(line)
    const m = MANIFEST_URI.exec(f['http.request.uri'] ?? '')
    if (!m) continue
    const address = (f['http.request.remoteaddr'] ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')
    const domain = new URLSearchParams(m[2]?.slice(1) ?? '').get('ns') ?? f['http.request.host'] ?? ''
    hits.push({
      container,
      domain,
      reference: m[1],
      method: f['http.request.method'] ?? '',
      address,
      status: Number(f['http.response.status'] ?? 0),
    })
  }
  return hits
}

/**
 * Log lines of every container a probe may have reached, logged since
 * `since` (seconds since the epoch, by the nodes' clock, which Docker stamps
 * its log lines with), one `docker logs` each, all at once.
 */
async function readLogs(run: Runner, names: string[], since: string): Promise<Map<string, string>> {
  const all = await Promise.all(
    names.map(async (name) => {
      const r = await run.probe(['docker', 'logs', '--since', since, name])
      return [name, `${r.stdout}\n${r.stderr}`] as const
    }),
  )
  return new Map(all)
}

const hitsIn = (logs: Map<string, string>) => [...logs].flatMap(([name, text]) => probeHits(name, text))

const PROBE_IMAGE = probeImage()

/**
 * Puts the probe image in each running devreg registry that lacks it (the
 * local registry and every cache), through the registry's volume as `import`
 * does: a cache that were asked for it would ask its upstream. The check is
 * one `docker cp` per registry of the index's revision link, which import's
 * commit links last of all: the engine reads it from the volume, with no
 * process started in the registry (half an exec's time). Every probe pull
 * comes after it.
 */
export async function ensureProbeImage(
  run: Runner,
  config: Config,
  containers: docker.Container[],
  found: Map<string, Promise<boolean>> = probeImageFound(run, config),
): Promise<void> {
  const running = config.registries.filter((r) => containers.some((c) => c.name === r.name && c.state === 'running'))
  await Promise.all(
    running.map(async (r) => {
      if (await found.get(r.name)) return
      await placeFiles(run, r, PROBE_IMAGE.files, 'verify (placing its probe image)')
    }),
  )
}

/**
 * Whether each registry of the config holds the probe image (its marker, by
 * `docker cp`), asked at once; a registry that does not run holds none. A
 * caller may ask before it knows which registries run (dev-up: while Docker
 * lists them), and hand the answers to ensureProbeImage.
 */
export function probeImageFound(run: Runner, config: Config): Map<string, Promise<boolean>> {
  const marker = `${REGISTRY_DATA}/${revisionLinkPath(PROBE_REPOSITORY, PROBE_IMAGE.digest)}`
  return new Map(config.registries.map((r) => [r.name, run.probe(['docker', 'cp', `${r.name}:${marker}`, '-']).then((x) => x.ok)]))
}

/** Containers whose logs verify reads: devreg's own registries, and any container a route names after them (a team cache, a test's upstream). */
function readableLogs(config: Config, ts: Target[], containers: docker.Container[]): string[] {
  const names = new Set(containers.map((c) => c.name))
  return [
    ...new Set([...config.registries.map((r) => r.name), ...ts.flatMap((t) => t.rest.map(hostnameOf)).filter((h) => names.has(h))]),
  ].filter((n) => names.has(n))
}

/** Whether the route's first registry logged the probe from the probe's node. */
function tookRoute(p: Probe, hits: Hit[], addresses: Map<string, string[]>): boolean {
  return hits.some((h) => h.domain === p.domain && h.container === p.first && (addresses.get(p.node) ?? []).includes(h.address))
}

/** `containers` sorted in the order the route of `t` tries them. */
function inRouteOrder(t: Target, containers: string[]): string[] {
  const chain = [t.first, ...t.rest.map(hostnameOf)]
  return containers.sort((a, b) => chain.indexOf(a) - chain.indexOf(b))
}

/** What verify probes in the cluster of `config`, from Docker's listing: nodes, probes, and the logs that may show them. */
export interface VerifyPlan {
  start: number
  containers: docker.Container[]
  nodes: Node[]
  targets: Target[]
  probes: Probe[]
  /** Containers whose logs verify reads. */
  readable: string[]
}

export function planVerify(config: Config, containers: docker.Container[], start = Date.now()): VerifyPlan {
  const nodes = clusterNodes(config, containers)
  const ts = targets(config)
  const probes = planProbes(
    ts,
    nodes.map((n) => n.name),
    PROBE_IMAGE.digest,
  )
  return { start, containers, nodes, targets: ts, probes, readable: readableLogs(config, ts, containers) }
}

/** Runs every probe of the cluster of `config` and judges it; from Docker's listing when the caller has it (`containers`). */
export async function verify(
  run: Runner,
  config: Config,
  opts: { seconds?: number; containers?: docker.Container[] } = {},
): Promise<VerifyResult> {
  const start = Date.now()
  const containers = opts.containers ?? (await docker.listContainers(run))
  return verifyWith(run, config, { containers, probeImage: null, start }, opts.seconds)
}

/** What a caller of verifyWith knows already. */
export interface Known {
  /** Docker's listing, as it is now. */
  containers: docker.Container[]
  /** The probe image being put in every registry (ensureProbeImage), or null to do that here. */
  probeImage: Promise<void> | null
  start?: number
}

/** verify, from Docker's listing the caller has, with the probe image placed (or being placed) already when it says so. */
export async function verifyWith(run: Runner, config: Config, known: Known, seconds = PROBE_SECONDS): Promise<VerifyResult> {
  const plan = planVerify(config, known.containers, known.start)
  // 1. The probe image in every registry, then the probe pulls, with what explains a miss read in the same exec.
  await (known.probeImage ?? ensureProbeImage(run, config, known.containers))
  const addresses = runningAddresses(run, plan)
  const snapshots = await probeNodes(run, config, plan.nodes, plan.probes, seconds)
  // 2. What the registries logged since, and the verdicts.
  return judgeProbes(run, config, plan, snapshots, { addresses })
}

/** Each node's address on the cluster network, from its listing. */
const nodeAddressesOn = (nodes: Node[], network: Map<string, string>): Map<string, string[]> =>
  new Map(nodes.flatMap((n): [string, string[]][] => (network.has(n.name) ? [[n.name, [network.get(n.name) as string]]] : [])))

/** The addresses of the plan's running nodes, on every network (docker inspect), read while they pull. */
export const runningAddresses = (run: Runner, plan: VerifyPlan) =>
  nodeAddresses(
    run,
    plan.nodes.filter((n) => n.running).map((n) => n.name),
  )

/** What the caller of judgeProbes has seen of the nodes' addresses already. */
export type SeenAddresses =
  /** Every running node's addresses on every network (docker inspect), read while they pulled. */
  | { addresses: Promise<Map<string, string[]>> }
  /**
   * Every container's address on the cluster network, from a listing that
   * still holds: a probe the first registry logged from there passed, so
   * only a miss needs the rest (every network, every log a route names).
   */
  | { network: Map<string, string> }

/**
 * The verdict on every probe of `plan`, from what the registries logged since
 * the nodes' pulls (`snapshots`: what each node's exec ran and read).
 */
export async function judgeProbes(
  run: Runner,
  config: Config,
  plan: VerifyPlan,
  snapshots: Map<string, NodeSnapshot>,
  seen: SeenAddresses,
): Promise<VerifyResult> {
  const { nodes, probes, readable } = plan
  // The pulls started at each node's `since`; no line logged before the earliest is one of them.
  const since = [...snapshots.values()]
    .map((s) => s.since)
    .filter((t): t is string => t !== null)
    .sort((a, b) => Number(a) - Number(b))[0]
  const read = async (names: string[]) => (since ? hitsIn(await readLogs(run, names, since)) : [])
  const everyAddress = () => ('addresses' in seen ? seen.addresses : runningAddresses(run, plan))
  const onNetwork = 'network' in seen ? nodeAddressesOn(nodes, seen.network) : null
  const own = readable.filter((n) => config.registries.some((r) => r.name === n))
  let [addresses, hits] = await Promise.all([onNetwork ?? everyAddress(), read(onNetwork ? own : readable)])
  const missing = () => probes.some((p) => snapshots.get(p.node)?.pulls.has(p.ref) && !tookRoute(p, hits, addresses))
  // The log driver copies lines a moment after the registry writes them.
  if (since && missing()) {
    await run.clock.sleep(300)
    ;[addresses, hits] = await Promise.all([onNetwork ? everyAddress() : addresses, read(readable)])
  }

  // Verdicts; the facts that explain a miss came with the pulls.
  const facts = factsOf(config, snapshots, plan.containers)
  const byDomain = new Map(plan.targets.map((t) => [t.domain, t]))
  for (const p of probes) {
    const t = byDomain.get(p.domain) as Target
    const node = nodes.find((n) => n.name === p.node) as Node
    const nodeAddrs = addresses.get(p.node) ?? []
    const verdict = node.running
      ? judge(p, t, hits, nodeAddrs, snapshots.get(p.node)?.pulls.get(p.ref) ?? null, facts)
      : { status: 'fail' as const, detail: `node ${p.node} is not running`, fix: `\`docker start ${p.node}\`, or \`just dev-up\`` }
    const answered = [...new Set(hits.filter((h) => h.domain === p.domain && nodeAddrs.includes(h.address)).map((h) => h.container))]
    Object.assign(p, verdict, { answeredBy: inRouteOrder(t, answered) })
  }
  const summary = summarize(probes)
  return {
    ok: summary.fail === 0,
    cluster: config.cluster.name,
    image: PROBE_IMAGE.digest,
    elapsedMs: Date.now() - plan.start,
    summary,
    probes,
  }
}

/**
 * dev-up's last phase, once its probes are judged: the tally, and the
 * failures shown; a failed probe fails dev-up.
 */
export function verifyPhase(result: VerifyResult): Record<Status, number> {
  const s = result.summary
  log.info(`   ${s.pass} of ${result.probes.length} probes took their route (${(result.elapsedMs / 1000).toFixed(1)}s)`)
  if (result.ok) return s
  log.info(renderMatrix(result, true))
  throw new UserError(
    `verify: ${s.fail} of ${result.probes.length} probes did not reach their first registry (fixes above); \`just verify\` checks again`,
  )
}
