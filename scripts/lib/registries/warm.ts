// Warming: pull images through the caches so that a later cluster finds every
// blob stored. Each image goes to the cache of its registry domain, only the
// platforms asked for are fetched, and what was already cached is told from
// what was fetched by reading the cache's storage before (a blob counts as
// cached when it is linked in that repository: the proxy serves nothing else
// from storage). A warm ends when the caches have stored every blob:
// distribution 2.8 stores in the background with a second download.
import type { Config, Registry } from '../core/config.ts'
import { configSchema } from '../core/config-schema.ts'
import { readFileIn, volumeExists } from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { EXIT, plural, UserError } from '../core/log.ts'
import { mapLimit } from '../core/pool.ts'
import { type ImageReference, parseReference } from '../core/reference.ts'
import {
  type Descriptor,
  getManifest,
  isIndex,
  type ManifestDocument,
  pingV2,
  platformOf,
  RegistryError,
  readBlob,
} from './distribution.ts'
import { distributionVersion, isDistribution2 } from './distribution-version.ts'
import { readStorage, type Storage } from './storage.ts'

export interface WarmTarget {
  /** As given, e.g. redis:7-alpine. */
  image: string
  ref: ImageReference
  /** As nodes pull it: docker.io/library/redis:7-alpine. */
  name: string
  cache: Registry
}

/** The config's own rule for image references, so arguments and the images list agree. */
const imageRef = configSchema.shape.images.unwrap().element

const canonicalName = (r: ImageReference) => `${r.domain}/${r.repository}${r.reference.startsWith('sha256:') ? '@' : ':'}${r.reference}`

/** Each image with the cache of its registry domain; an image no cache serves is a usage error (exit 2), before anything is fetched. */
export function routeImages(config: Config, images: readonly string[]): WarmTarget[] {
  const problems: string[] = []
  const targets: WarmTarget[] = []
  for (const image of new Set(images)) {
    const valid = imageRef.safeParse(image)
    if (!valid.success) {
      problems.push(valid.error.issues[0].message)
      continue
    }
    const ref = parseReference(image)
    const cache = config.registries.find((r) => r.role === 'cache' && r.upstreamDomain === ref.domain)
    if (!cache) {
      const cached = config.registries.flatMap((r) => (r.upstreamDomain ? [r.upstreamDomain] : []))
      problems.push(
        `${image}: no cache for ${ref.domain} (caches: ${cached.join(', ') || 'none'}): add a mirror with host ${ref.domain} to the config, or leave the image out`,
      )
      continue
    }
    targets.push({ image, ref, name: canonicalName(ref), cache })
  }
  if (problems.length) throw new UserError(problems.join('\n'), EXIT.usage)
  return targets
}

const ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm/v7',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
}

/** The platform nodes on this machine run: always linux (kind and k3d nodes are), with the host's CPU. */
export const hostPlatform = (arch: string = process.arch) => `linux/${ARCH[arch] ?? arch}`

/** containerd's normalization: arm64/v8 is arm64, arm alone is arm/v7, amd64/v1 is amd64. */
function normalizePlatform(p: string): string {
  const [os, arch, variant = ''] = p.split('/')
  const v =
    (arch === 'arm64' && variant === 'v8') || (arch === 'amd64' && variant === 'v1') ? '' : arch === 'arm' && !variant ? 'v7' : variant
  return [os, arch, v].filter(Boolean).join('/')
}

export const samePlatform = (a: string, b: string) => normalizePlatform(a) === normalizePlatform(b)

/** The index's manifests for the wanted platforms; `missing` lists the platforms it lacks. */
export function selectPlatforms(index: ManifestDocument, wanted: readonly string[]): { chosen: Descriptor[]; missing: string[] } {
  const children = index.manifests ?? []
  const chosen: Descriptor[] = []
  const missing: string[] = []
  for (const want of wanted) {
    const match = children.find((d) => {
      const p = platformOf(d)
      return p !== null && samePlatform(p, want)
    })
    if (match) chosen.includes(match) || chosen.push(match)
    else missing.push(want)
  }
  return { chosen, missing }
}

/** What went wrong, in one line a user can act on. */
export function failureReason(err: unknown, cache: Registry, offline: boolean): string {
  if (!(err instanceof RegistryError)) return (err as Error).message
  const detail = /"message":"([^"]+)"/.exec(err.message)?.[1]
  const suffix = offline ? `; ${cache.name} is offline (its upstream ${cache.upstream} does not answer) and serves only what it holds` : ''
  if (err.status === 404) return `not found (HTTP 404${detail ? ` ${detail}` : ''})${suffix}`
  if (err.status === 401 || err.status === 403)
    // Docker Hub answers 401 for a repository that does not exist as well.
    return `access denied by the upstream (HTTP ${err.status}): it does not exist, or it is private and needs credentials on the ${cache.upstreamDomain} mirror`
  if (err.status === null) return `${cache.name} did not answer (${err.message.split(': ').pop()}): is it running? \`dev-registry status\``
  return `${err.message.split('\n')[0]}${suffix}`
}

export interface ImageResult {
  image: string
  name: string
  cache: string
  platforms: string[]
  blobs: number
  fetchedBytes: number
  cachedBytes: number
  seconds: number
  error: string | null
}

export interface WarmSummary {
  images: ImageResult[]
  warmed: number
  failed: number
  fetchedBytes: number
  cachedBytes: number
  platforms: string[]
  /** Caches running distribution 2.x: the upstream sent their fetched blobs twice. */
  doubleFetch: string[]
}

/** Receives progress; `plainProgress` and `ttyProgress` (warm-output.ts) print it. */
export interface Progress {
  /** The image's manifests are read: `toFetch` bytes of blobs are not cached yet. */
  resolved(image: string, toFetch: number): void
  bytes(image: string, n: number): void
  done(result: ImageResult): void
  note(message: string): void
  finish(): void
}

interface Blob {
  digest: string
  size: number
  cached: boolean
}

interface Work {
  target: WarmTarget
  started: number
  seconds: number
  platforms: string[]
  blobs: Blob[]
  fetchedBytes: number
  error: string | null
}

interface Download {
  work: Work
  blob: Blob
  /** Every image that needs this blob of this repository. */
  users: Work[]
  error: string | null
}

const result = (w: Work): ImageResult => ({
  image: w.target.image,
  name: w.target.name,
  cache: w.target.cache.name,
  platforms: w.platforms,
  blobs: w.blobs.length,
  fetchedBytes: w.fetchedBytes,
  cachedBytes: w.blobs.filter((b) => b.cached).reduce((n, b) => n + b.size, 0),
  seconds: w.seconds,
  error: w.error,
})

/** What every phase of a warm shares. */
interface Warming {
  run: Runner
  concurrency: number
  progress: Progress
  /** What the cache an image goes to held when the warm began. */
  of: (w: Work) => CacheState
  /** Reports an image as finished, with the time it took. */
  done: (w: Work) => void
}

/** Warms every target with at most `concurrency` registry requests in flight. */
export async function warmImages(
  run: Runner,
  targets: WarmTarget[],
  opts: { platforms: string[]; concurrency: number; progress: Progress; storageStallMs?: number },
): Promise<WarmSummary> {
  const { platforms, concurrency, progress } = opts
  const caches = [...new Map(targets.map((t) => [t.cache.name, t.cache])).values()]

  // 1. Every cache must answer; what each stores now is what counts as already cached.
  const state = new Map(await Promise.all(caches.map(async (c) => [c.name, await observeCache(run, c)] as const)))
  const works: Work[] = targets.map((target) => ({
    target,
    started: performance.now(),
    seconds: 0,
    platforms: [],
    blobs: [],
    fetchedBytes: 0,
    error: null,
  }))
  const warming: Warming = {
    run,
    concurrency,
    progress,
    of: (w) => state.get(w.target.cache.name) as CacheState,
    done: (w) => {
      w.seconds = (performance.now() - w.started) / 1000
      progress.done(result(w))
    },
  }

  // 2. Manifests: the tag through the cache, then each wanted platform's manifest by digest.
  const downloads = await resolveManifests(warming, works, platforms)
  // 3. Blobs not cached yet; an image is done when its last blob is.
  await fetchBlobs(warming, works, downloads)
  // 4. Warm means stored: wait until every fetched blob is linked in its repository.
  await awaitStored(run, warming, downloads, opts.storageStallMs ?? 120_000)
  progress.finish()

  const images = works.map(result)
  const ok = images.filter((r) => !r.error)
  return {
    images,
    warmed: ok.length,
    failed: images.length - ok.length,
    fetchedBytes: images.reduce((n, r) => n + r.fetchedBytes, 0),
    cachedBytes: ok.reduce((n, r) => n + r.cachedBytes, 0),
    platforms,
    doubleFetch: caches.filter((c) => isDistribution2(state.get(c.name)?.version ?? null)).map((c) => c.name),
  }
}

/** Each image's blobs, from its manifests; returns the downloads of blobs not cached yet, one per cache, repository and blob. */
async function resolveManifests(warming: Warming, works: Work[], platforms: string[]): Promise<Download[]> {
  const { of, progress, done } = warming
  const downloads = new Map<string, Download>()
  await mapLimit(works, warming.concurrency, async (w) => {
    try {
      w.blobs = await resolveBlobs(warming.run, w, of(w), platforms)
    } catch (err) {
      w.error = failureReason(err, w.target.cache, of(w).offline)
      return done(w)
    }
    progress.resolved(
      w.target.image,
      w.blobs.filter((b) => !b.cached).reduce((n, b) => n + b.size, 0),
    )
    // A blob is fetched once per cache and repository, for every image that needs it.
    for (const blob of w.blobs.filter((b) => !b.cached)) {
      const key = `${w.target.cache.name}/${w.target.ref.repository}@${blob.digest}`
      const d = downloads.get(key)
      if (d) d.users.push(w)
      else downloads.set(key, { work: w, blob, users: [w], error: null })
    }
  })
  return [...downloads.values()]
}

/** Fetches each download through its cache; an image is done when its last blob is (at once when it needs none). */
async function fetchBlobs(warming: Warming, works: Work[], downloads: Download[]): Promise<void> {
  const { of, progress, done } = warming
  const waiting = new Map(works.map((w) => [w, downloads.filter((d) => d.users.includes(w)).length]))
  for (const w of works) if (!w.error && !waiting.get(w)) done(w)
  await mapLimit(downloads, warming.concurrency, async (d) => {
    const { work, blob } = d
    try {
      // Read first: `x += await` would add to the value x had before the await.
      const { repository } = work.target.ref
      const bytes = await readBlob(warming.run, of(work).base, repository, blob.digest, (n) => progress.bytes(work.target.image, n))
      work.fetchedBytes += bytes
    } catch (err) {
      d.error = failureReason(err, work.target.cache, of(work).offline)
    }
    for (const w of d.users) {
      if (d.error) w.error ??= `${blob.digest.slice(0, 19)}: ${d.error}`
      waiting.set(w, (waiting.get(w) ?? 0) - 1)
      if (waiting.get(w) === 0) done(w)
    }
  })
}

/** Waits until the caches have stored every fetched blob; an image with a blob still missing after `stallMs` fails. */
async function awaitStored(run: Runner, { progress }: Warming, downloads: Download[], stallMs: number): Promise<void> {
  const fetched = downloads.filter((d) => !d.error)
  if (!fetched.length) return
  progress.note(`waiting for the caches to store ${plural(fetched.length, 'blob')}`)
  for (const d of await unstored(run, fetched, stallMs))
    for (const w of d.users.filter((x) => !x.error)) {
      w.error = `${w.target.cache.name} did not store ${d.blob.digest.slice(0, 19)} in time: see \`docker logs ${w.target.cache.name}\``
      progress.done(result(w))
    }
}

interface CacheState {
  base: string
  offline: boolean
  storage: Storage
  version: string | null
}

async function observeCache(run: Runner, cache: Registry): Promise<CacheState> {
  const base = cache.address.url
  const answer = await pingV2(run, base, 5000)
  if (!answer.ok)
    throw new UserError(
      `${cache.name} does not answer on ${base} (${answer.error ?? `HTTP ${answer.status}`}): run \`dev-registry up\` first`,
    )
  // Reading a volume that does not exist would create it.
  if (!(await volumeExists(run, cache.volume)))
    throw new UserError(`${cache.name} answers but its volume ${cache.volume} does not exist: run \`dev-registry up\` to recreate it`)
  const [storage, mode, version] = await Promise.all([
    readStorage(run, cache.volume, cache.image),
    readFileIn(run, cache.name, '/tmp/devreg-mode'),
    distributionVersion(run, cache, 'container'),
  ])
  return { base, offline: mode?.trim() === 'offline', storage, version }
}

/** The config and layers of the image, or of each wanted platform of an index. */
async function resolveBlobs(run: Runner, w: Work, cache: CacheState, platforms: string[]): Promise<Blob[]> {
  const { repository, reference } = w.target.ref
  const top = await getManifest(run, cache.base, repository, reference)
  let images = [top.document]
  if (isIndex(top.document, top.mediaType)) {
    const { chosen, missing } = selectPlatforms(top.document, platforms)
    if (missing.length) {
      const offered = (top.document.manifests ?? []).map(platformOf).filter((p) => p && !p.startsWith('unknown'))
      throw new Error(`no ${missing.join(', ')} in its index (it has ${offered.join(', ') || 'no platforms'})`)
    }
    w.platforms = chosen.map((d) => platformOf(d) as string)
    images = await Promise.all(chosen.map(async (d) => (await getManifest(run, cache.base, repository, d.digest)).document))
  }
  const linked = cache.storage.repositories.get(repository)?.layers ?? new Set<string>()
  const blobs = new Map<string, Blob>()
  for (const m of images)
    for (const d of [...(m.config ? [m.config] : []), ...(m.layers ?? [])])
      blobs.set(d.digest, { digest: d.digest, size: d.size, cached: linked.has(d.digest) && cache.storage.blobs.has(d.digest) })
  return [...blobs.values()]
}

/**
 * Polls the caches' storage until each download is stored and linked; returns
 * those still missing once `stallMs` passed without any of them arriving.
 */
async function unstored(run: Runner, pending: Download[], stallMs: number): Promise<Download[]> {
  let deadline = run.clock.now() + stallMs
  let left = pending
  for (;;) {
    const caches = [...new Map(left.map((d) => [d.work.target.cache.name, d.work.target.cache])).values()]
    const stored = new Map(await Promise.all(caches.map(async (c) => [c.name, await readStorage(run, c.volume, c.image)] as const)))
    const still = left.filter((d) => {
      const s = stored.get(d.work.target.cache.name) as Storage
      return !(s.blobs.has(d.blob.digest) && s.repositories.get(d.work.target.ref.repository)?.layers.has(d.blob.digest))
    })
    if (still.length < left.length) deadline = run.clock.now() + stallMs
    left = still
    if (!left.length || run.clock.now() > deadline) return left
    await run.clock.sleep(500)
  }
}
