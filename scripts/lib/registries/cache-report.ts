// What a pull-through cache did: requests, blobs served from its storage or
// fetched from the upstream, bytes served and fetched. Derived from what the
// registry itself records, because distribution 2.8's /debug/vars proxy
// counters are wrong (BlobPush counts every request as a hit) and 3's
// registry_proxy_* metrics count since the process started, whatever window
// is asked for:
//   - every request logs `response completed` (or `... with error`) with its
//     URI, status, bytes written and duration (both 2.8 and 3);
//   - a blob fetched from the upstream is stored and linked into its
//     repository when the fetch completes. 2.8 logs it (`Adding new scheduler
//     entry for REPO@DIGEST`, registry/proxy/scheduler); 3 with proxy.ttl 0
//     logs nothing, but the link file's mtime in the volume says when. A blob
//     request that started before its blob was stored was answered by the
//     upstream: 2.8 downloads such a blob twice, once to answer and once to
//     store (registry/proxy/proxyblobstore.go); 3 once per request.
// Container logs rotate (json-file, 10 MiB x 3), so the log covers a window.
import type { Config, Registry } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import { parseDuration } from '../core/duration.ts'
import type { Runner } from '../core/exec.ts'
import { formatBytes, table, UserError } from '../core/log.ts'
import { distributionVersion, isDistribution2 } from './distribution-version.ts'
import { logFields } from './registry-log.ts'
import { selectRegistries } from './registry-names.ts'
import { readStorage } from './storage.ts'

export interface LoggedRequest {
  /** When the response completed (ms since the epoch). */
  end: number
  start: number
  method: string
  uri: string
  status: number
  written: number
}

/** What one registry log says, in order. */
export interface RegistryLog {
  requests: LoggedRequest[]
  /** REPO@DIGEST → when it was first stored from the upstream (2.8 scheduler lines). */
  stored: Map<string, number>
  /** When the registry process last started listening. */
  listeningSince: number | null
  /** Time of the oldest line kept. */
  firstLine: number | null
}

// containerd adds ?ns=<registry domain> when it pulls through a mirror (hosts.toml).
const BLOB_URI = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})(\?.*)?$/
const SCHEDULER = /^Adding new scheduler entry for (\S+@sha256:[0-9a-f]{64})/

/** Reads distribution's logrus lines (text or JSON formatter); other lines are skipped. */
export function parseRegistryLog(text: string): RegistryLog {
  const log: RegistryLog = { requests: [], stored: new Map(), listeningSince: null, firstLine: null }
  for (const line of text.split('\n')) {
    if (!line.includes('msg')) continue
    const f = logFields(line)
    const time = Date.parse(f.time ?? '')
    if (!f.msg || Number.isNaN(time)) continue
    log.firstLine ??= time
    if (f.msg.startsWith('response completed')) {
      const end = time
      log.requests.push({
        end,
        start: end - (parseDuration(f['http.response.duration'] ?? '') ?? 0),
        method: f['http.request.method'] ?? '',
        uri: f['http.request.uri'] ?? '',
        status: Number(f['http.response.status'] ?? (f.msg.endsWith('with error') ? 500 : 200)),
        written: Number(f['http.response.written'] ?? 0),
      })
    } else if (f.msg.startsWith('listening on')) log.listeningSince = time
    else {
      const key = SCHEDULER.exec(f.msg)?.[1]
      if (key && !log.stored.has(key)) log.stored.set(key, time)
    }
  }
  return log
}

export interface CacheStats {
  /** Every request answered in the window, errors included. */
  requests: number
  errors: number
  /** Successful blob GETs, and how many of them storage (hits) or the upstream (misses) answered. */
  blobRequests: number
  hits: number | null
  misses: number | null
  /** Bytes of blobs sent to clients. */
  servedBytes: number
  /** Blobs the cache fetched and stored, and their bytes. */
  fetched: number | null
  fetchedBytes: number | null
  /** Blob bytes the upstream sent: on 2.8 the stored copies plus every missed request. */
  upstreamBytes: number | null
  /** servedBytes - upstreamBytes: what the upstream did not have to send (negative on a cold 2.8 pull). */
  savedBytes: number | null
}

const isBlobGet = (r: LoggedRequest) => r.method === 'GET' && r.status >= 200 && r.status < 300 && BLOB_URI.test(r.uri)
const digestOf = (key: string) => key.slice(key.lastIndexOf('@') + 1)
const blobKey = (uri: string) => {
  const m = BLOB_URI.exec(uri)
  return m ? `${m[1]}@${m[2]}` : null
}

/** When the cache stored each blob it fetched, and how many downloads a missed request cost the upstream. */
export interface Stores {
  /** REPO@DIGEST → when it was stored from the upstream (ms since the epoch). */
  at: Map<string, number>
  /** Blob sizes by digest from storage; without them, the largest response the log shows for the blob. */
  sizes?: Map<string, number>
  /** distribution 2.8 fetches a missed blob once to answer and once more to store it. */
  fetchesTwice: boolean
}

/**
 * Counts for requests that completed at or after `since`: requests and bytes
 * served from the log alone; hits, misses and fetches where it is known when
 * each blob was stored (null otherwise).
 */
export function statsFromLog(log: RegistryLog, since: number, stores: Stores | null): CacheStats {
  const inWindow = log.requests.filter((r) => r.end >= since)
  const blobGets = inWindow.filter(isBlobGet)
  const servedBytes = blobGets.reduce((n, r) => n + r.written, 0)
  const base = {
    requests: inWindow.length,
    errors: inWindow.filter((r) => r.status >= 400).length,
    blobRequests: blobGets.length,
    servedBytes,
  }
  if (!stores) return { ...base, hits: null, misses: null, fetched: null, fetchedBytes: null, upstreamBytes: null, savedBytes: null }
  const sizes = new Map<string, number>(stores.sizes ?? [])
  if (!stores.sizes)
    for (const r of log.requests.filter(isBlobGet)) {
      const digest = digestOf(blobKey(r.uri) as string)
      sizes.set(digest, Math.max(sizes.get(digest) ?? 0, r.written))
    }
  const missed = blobGets.filter((r) => {
    const storedAt = stores.at.get(blobKey(r.uri) as string)
    return storedAt !== undefined && r.start < storedAt
  })
  // A blob is stored once per repository: the proxy serves from storage only what is linked there.
  const fetches = [...stores.at].filter(([key, at]) => at >= since && sizes.has(digestOf(key)))
  const fetchedBytes = fetches.reduce((n, [key]) => n + (sizes.get(digestOf(key)) ?? 0), 0)
  const missedBytes = missed.reduce((n, r) => n + r.written, 0)
  const upstreamBytes = stores.fetchesTwice ? fetchedBytes + missedBytes : missedBytes
  return {
    ...base,
    hits: blobGets.length - missed.length,
    misses: missed.length,
    fetched: fetches.length,
    fetchedBytes,
    upstreamBytes,
    savedBytes: servedBytes - upstreamBytes,
  }
}

/** distribution 2.x logs a scheduler line per stored fetch; 3 does not when proxy.ttl is 0 (devreg's setting). */
export const schedulerLogs = (version: string | null) => version === null || isDistribution2(version)

export interface CacheReport {
  name: string
  /** The registry domain the cache mirrors (docker.io). */
  upstreamDomain: string
  state: string
  /** What `registry --version` says (distribution-version.ts). */
  version: string | null
  /** The window asked for, and the part of it the kept log covers. */
  since: string
  logFrom: string | null
  /** Where the log does not reach back to `since` (rotated away). */
  truncated: boolean
  stats: CacheStats | null
  /** Which source each number comes from. */
  sources: string[]
}

export type Since = { kind: 'start' } | { kind: 'all' } | { kind: 'time'; at: number }

/** --since: start (the container's last start, default), all (every kept line), a duration back (90m, 2h, 1d) or a date. */
export function parseSince(text: string | undefined, now = Date.now()): Since {
  if (text === undefined || text === 'start') return { kind: 'start' }
  if (text === 'all') return { kind: 'all' }
  const back = parseDuration(text)
  if (back !== null) return { kind: 'time', at: now - back }
  const at = Date.parse(text)
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && !Number.isNaN(at)) return { kind: 'time', at }
  throw new UserError(
    `--since ${JSON.stringify(text)} is not a time: use start (default), all, a duration back such as 90m, 2h or 1d, or a date such as 2025-01-31T08:00:00Z`,
    2,
  )
}

/** One cache's report; its container's log is read whole (it is at most 30 MiB). */
export async function cacheReport(run: Runner, cache: Registry, since: Since): Promise<CacheReport> {
  const info = await docker.inspect<{ State: { Status: string; StartedAt: string } }>(run, cache.name)
  const base = { name: cache.name, upstreamDomain: cache.upstreamDomain as string }
  if (!info) return { ...base, state: 'missing', version: null, since: '', logFrom: null, truncated: false, stats: null, sources: [] }
  const [logs, version] = await Promise.all([
    run.probe(['docker', 'logs', cache.name]),
    distributionVersion(run, cache, info.State.Status === 'running' ? 'container' : 'image'),
  ])
  const log = parseRegistryLog(`${logs.stderr}\n${logs.stdout}`)
  const from = since.kind === 'time' ? since.at : since.kind === 'start' ? Date.parse(info.State.StartedAt) : (log.firstLine ?? 0)
  const sources = ['requests and bytes served: the registry log (`response completed`)']
  let stores: Stores | null = null
  if (schedulerLogs(version)) {
    stores = { at: log.stored, fetchesTwice: true }
    sources.push(
      'hits, misses, fetched: the registry log (`Adding new scheduler entry` marks each blob stored from the upstream; a request that started earlier was answered by the upstream)',
    )
  } else {
    try {
      const storage = await readStorage(run, cache.volume, cache.image)
      stores = { at: storage.layerLinkedAt, sizes: storage.blobs, fetchesTwice: false }
      sources.push(
        "hits, misses, fetched: the cache's volume (a layer link's mtime is when the blob was stored from the upstream; a request that started earlier was answered by the upstream, once)",
      )
    } catch (err) {
      sources.push(`hits, misses, fetched: unknown: ${(err as Error).message}`)
    }
  }
  const stats = statsFromLog(log, from, stores)
  return {
    ...base,
    state: info.State.Status,
    version,
    since: new Date(from).toISOString(),
    logFrom: log.firstLine === null ? null : new Date(log.firstLine).toISOString(),
    // A registry logs within seconds of starting; a first line much later than that means rotation.
    truncated: log.firstLine !== null && log.firstLine > from + 30_000,
    stats,
    sources,
  }
}

/** `dev-registry report [REGISTRY...]`: the caches named (registry-names.ts), every cache when none is. */
export const reportCaches = (run: Runner, config: Config, since: Since, names: readonly string[] = []) =>
  Promise.all(selectRegistries(config, names, { none: 'caches', cachesOnly: 'report' }).map((r) => cacheReport(run, r, since)))

const percent = (n: number | null, of: number | null) => (n === null || !of ? '-' : `${Math.round((100 * n) / of)}%`)
const bytes = (n: number | null) => (n === null ? '-' : n < 0 ? `-${formatBytes(-n)}` : formatBytes(n))
const when = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
const count = (n: number | null) => (n === null ? '-' : String(n))

/** The human form: one row per cache, then where the numbers come from. */
export function renderReport(reports: CacheReport[]): string {
  const rows = reports.map((r) => {
    const s = r.stats
    return [
      r.name,
      r.state,
      r.since ? when(r.since) : '-',
      count(s?.requests ?? null),
      count(s?.blobRequests ?? null),
      count(s?.hits ?? null),
      count(s?.misses ?? null),
      percent(s?.hits ?? null, s?.blobRequests ?? null),
      bytes(s?.servedBytes ?? null),
      bytes(s?.upstreamBytes ?? null),
      bytes(s?.savedBytes ?? null),
    ]
  })
  const lines = [
    table(
      ['CACHE', 'STATE', 'SINCE', 'REQUESTS', 'BLOB GETS', 'FROM CACHE', 'FROM UPSTREAM', 'HIT RATIO', 'SERVED', 'FETCHED', 'SAVED'],
      rows,
    ),
    '',
  ]
  for (const r of reports.filter((x) => x.stats)) {
    lines.push(
      `${r.name}: distribution ${r.version ?? 'version unknown'}; log kept from ${r.logFrom ? when(r.logFrom) : '-'} (rotated at 10 MiB x 3)`,
    )
    for (const s of r.sources) lines.push(`  ${s}`)
    if (r.truncated)
      lines.push(`  the log does not reach back to ${when(r.since)}: requests before ${when(r.logFrom as string)} are not counted`)
    if (r.stats?.upstreamBytes && schedulerLogs(r.version))
      lines.push(`  FETCHED counts both downloads of each missed blob (distribution 2.8 fetches once to answer, once to store)`)
  }
  return lines.join('\n').trimEnd()
}
