// Carrying caches between machines: `export` writes the content registries
// hold into one tar, `import` merges such a tar into the volumes of this
// machine's registries.
//
// The archive is a plain tar (gzip when asked): devreg-export.json first (what
// it holds: repositories, tags, digests, sizes, versions), then for each
// registry the files of distribution's storage under registries/<key>/
// (<key> is `local` or the mirror's host, so an archive made with one config
// lands in the registries of another), blobs before links, and
// devreg-export.end.json last (the manifest's own digest and the file count,
// so a cut between two entries is told from an end). Only what a tag reaches is
// exported: its manifest, an index's platform manifests, configs and layers,
// and the link files distribution resolves them by.
//
// Export reads each volume read-only through a helper container while the
// registry keeps serving: blobs are content-addressed and written whole
// (distribution moves a finished upload into place), and a tag that moves
// meanwhile is exported as it was listed. Import reads the archive twice:
// first it checks everything (every blob's sha256, every path against
// distribution's layout, every link against the manifest) with nothing
// touched; then it stages the files a volume lacks outside the registry's
// storage, and only once every volume is staged links them in, blobs before
// links (templates/volume-files.sh), never replacing a file that is there.
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { hostname } from 'node:os'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { createGunzip, createGzip } from 'node:zlib'
import { type Config, type Registry, ROOT } from './config.ts'
import { ensureVolume, helperCommand, volumeExists } from './docker.ts'
import type { Runner, Streamed } from './exec.ts'
import { alive, withRegistryLocks } from './lock.ts'
import { CommandError, chalk, EXIT, formatBytes, log, UserError } from './log.ts'
import type { Files } from './machine.ts'
import { REPOSITORY, TAG } from './reference.ts'
import { REGISTRY_DATA } from './registry-containers.ts'
import { manifestClosure, readStorage, type Storage, type StoredRepository } from './storage.ts'
import { readTar, type TarEntry, TarError, TarWriter, tarOf } from './tar.ts'
import { template } from './templates.ts'

export const FORMAT = 'devreg-export/1'
const MANIFEST = 'devreg-export.json'
const TRAILER = 'devreg-export.end.json'
const SENTINEL = '.devreg-complete'
const V2 = 'docker/registry/v2'
const VOLUME_FILES = template('volume-files.sh')

const volumeFiles = (r: Pick<Registry, 'volume' | 'image'>, write: boolean, command: string, ...args: string[]) =>
  helperCommand(
    r.volume,
    r.image,
    { at: REGISTRY_DATA, readOnly: !write, stdin: true },
    'sh',
    '-c',
    VOLUME_FILES,
    'volume-files',
    command,
    ...args,
  )

const HEX = '[0-9a-f]{64}'
/** distribution's storage layout; repository and tag names by the reference grammar (reference.ts). */
const PATHS = {
  blob: new RegExp(`^${V2}/blobs/sha256/([0-9a-f]{2})/(${HEX})/data$`),
  layer: new RegExp(`^${V2}/repositories/(${REPOSITORY})/_layers/sha256/(${HEX})/link$`),
  revision: new RegExp(`^${V2}/repositories/(${REPOSITORY})/_manifests/revisions/sha256/(${HEX})/link$`),
  tagIndex: new RegExp(`^${V2}/repositories/(${REPOSITORY})/_manifests/tags/(${TAG})/index/sha256/(${HEX})/link$`),
  tag: new RegExp(`^${V2}/repositories/(${REPOSITORY})/_manifests/tags/(${TAG})/current/link$`),
}
export type FileKind = keyof typeof PATHS
/** The order files are written and linked in: content before anything that names it. */
const KIND_ORDER: FileKind[] = ['blob', 'layer', 'revision', 'tagIndex', 'tag']

export interface StorageFile {
  /** Relative to the volume's root: docker/registry/v2/... */
  path: string
  kind: FileKind
  repository: string | null
  tag: string | null
  /** The blob a data file holds, or the digest a link names (a tag's: from its content). */
  digest: string | null
}

/** What a path in distribution's storage is; null for anything an archive must not carry. */
export function classifyPath(path: string): StorageFile | null {
  for (const kind of KIND_ORDER) {
    const m = PATHS[kind].exec(path)
    if (!m) continue
    switch (kind) {
      case 'blob':
        return m[2].startsWith(m[1]) ? { path, kind, repository: null, tag: null, digest: `sha256:${m[2]}` } : null
      case 'layer':
      case 'revision':
        return { path, kind, repository: m[1], tag: null, digest: `sha256:${m[2]}` }
      case 'tagIndex':
        return { path, kind, repository: m[1], tag: m[2], digest: `sha256:${m[3]}` }
      case 'tag':
        return { path, kind, repository: m[1], tag: m[2], digest: null }
    }
  }
  return null
}

const blobPath = (digest: string) => {
  const hex = digest.slice('sha256:'.length)
  return `${V2}/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`
}
const repoPath = (repo: string) => `${V2}/repositories/${repo}`

export interface ArchiveRepository {
  name: string
  /** tag → manifest digest */
  tags: Record<string, string>
  /** Manifests (indexes and images) the tags reach. */
  manifests: string[]
  /** Configs and layers linked into the repository. */
  layers: string[]
}

export interface ArchiveRegistry {
  /** `local`, or the mirror's host: where import puts it. */
  key: string
  role: 'local' | 'cache'
  name: string
  host: string | null
  upstream: string | null
  volume: string
  image: string
  /** What `registry --version` says in the image, e.g. 2.8.2+ds1 or v3.0.0. */
  distribution: string | null
  repositories: ArchiveRepository[]
  /** Every blob exported (manifests, configs, layers): digest → bytes. */
  blobs: Record<string, number>
  files: number
  bytes: number
}

export interface ArchiveManifest {
  format: string
  devreg: string
  created: string
  registries: ArchiveRegistry[]
}

export interface PlannedFile extends StorageFile {
  /** Bytes of a blob; a link's length. */
  size: number
  /** A link's content, as distribution writes it. */
  content: string | null
}

export interface ExportPlan {
  repositories: ArchiveRepository[]
  blobs: Record<string, number>
  files: PlannedFile[]
  /** Tags whose manifest the volume does not hold (a cache that never finished storing it). */
  skipped: string[]
}

type AddFile = (f: Omit<PlannedFile, 'size'> & { size?: number }) => void

/** What to export from a volume's storage: what its tags reach and it holds (pure). */
export function planExport(storage: Storage): ExportPlan {
  const files = new Map<string, PlannedFile>()
  const add: AddFile = (f) => files.set(f.path, { ...f, size: f.size ?? Buffer.byteLength(f.content ?? '') })
  const blobs: Record<string, number> = {}
  const repositories: ArchiveRepository[] = []
  const skipped: string[] = []
  for (const repo of [...storage.repositories.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const out = planRepository(storage, repo, add, blobs, skipped)
    if (out) repositories.push(out)
  }
  const ordered = [...files.values()].sort(
    (a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.path.localeCompare(b.path),
  )
  return { repositories, blobs, files: ordered, skipped }
}

/** One repository's part of the plan, null when none of its tags can go; tags left out go to `skipped`. */
function planRepository(
  storage: Storage,
  repo: StoredRepository,
  add: AddFile,
  blobs: Record<string, number>,
  skipped: string[],
): ArchiveRepository | null {
  const out: ArchiveRepository = { name: repo.name, tags: {}, manifests: [], layers: [] }
  const manifests = new Set<string>()
  const layers = new Set<string>()
  for (const [tag, { digest }] of [...repo.tags].sort(([a], [b]) => a.localeCompare(b))) {
    if (
      !storage.blobs.has(digest) ||
      !repo.revisions.has(digest) ||
      !classifyPath(`${repoPath(repo.name)}/_manifests/tags/${tag}/current/link`)
    ) {
      skipped.push(`${repo.name}:${tag}`)
      continue
    }
    out.tags[tag] = digest
    addTagLinks(add, repo.name, tag, digest)
    for (const d of manifestClosure(storage, digest)) {
      if (!storage.blobs.has(d)) continue
      if (repo.revisions.has(d) && storage.manifests.has(d)) manifests.add(d)
      else if (repo.layers.has(d)) layers.add(d)
    }
  }
  if (!Object.keys(out.tags).length) return null
  for (const [set, kind, dir] of [
    [manifests, 'revision', '_manifests/revisions'],
    [layers, 'layer', '_layers'],
  ] as const)
    for (const d of [...set].sort()) {
      blobs[d] = storage.blobs.get(d) as number
      add({ path: blobPath(d), kind: 'blob', repository: null, tag: null, digest: d, content: null, size: blobs[d] })
      add({
        path: `${repoPath(repo.name)}/${dir}/sha256/${d.slice(7)}/link`,
        kind,
        repository: repo.name,
        tag: null,
        digest: d,
        content: d,
      })
    }
  out.manifests = [...manifests].sort()
  out.layers = [...layers].sort()
  return out
}

/** The two links a tag is: its current manifest and its entry in the tag's index. */
function addTagLinks(add: AddFile, repository: string, tag: string, digest: string): void {
  const hex = digest.slice('sha256:'.length)
  add({
    path: `${repoPath(repository)}/_manifests/tags/${tag}/current/link`,
    kind: 'tag',
    repository,
    tag,
    digest,
    content: digest,
  })
  add({
    path: `${repoPath(repository)}/_manifests/tags/${tag}/index/sha256/${hex}/link`,
    kind: 'tagIndex',
    repository,
    tag,
    digest,
    content: digest,
  })
}

/** Registries chosen by name, mirror host or `local`; none named: every cache. */
export function chooseRegistries(config: Config, names: readonly string[]): Registry[] {
  if (!names.length) return config.registries.filter((r) => r.role === 'cache')
  return names.map((n) => {
    const r = config.registries.find((x) => x.name === n || x.upstreamHost === n || (n === 'local' && x.role === 'local'))
    if (!r)
      throw new UserError(
        `no registry ${n} in the config: name one of ${config.registries.map((x) => x.name).join(', ')} (or a mirror host, or local)`,
        2,
      )
    return r
  })
}

export const registryKey = (r: Pick<Registry, 'role' | 'upstreamHost'>) => (r.role === 'local' ? 'local' : (r.upstreamHost as string))

async function distributionVersion(run: Runner, image: string): Promise<string | null> {
  const r = await run.probe(['docker', 'run', '--rm', '--network', 'none', '--entrypoint', 'registry', image, '--version'])
  return r.ok ? (r.stdout.trim().split(/\s+/).at(-1) ?? null) : null
}

function devregVersion(): string {
  return (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version
}

const sha256 = () => createHash('sha256')
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

/** Writes an archive beside its final name and moves it there only when complete. */
class ArchiveWriter {
  private readonly tmp: string
  private readonly out: Writable
  private readonly head: Writable
  private readonly tar: TarWriter

  constructor(
    private readonly files: Files,
    private readonly file: string,
    gzip: boolean,
  ) {
    this.tmp = `${file}.partial-${process.pid}`
    this.out = files.writeStream(this.tmp)
    this.head = gzip ? createGzip() : this.out
    if (gzip) this.head.pipe(this.out)
    this.tar = new TarWriter((chunk) => writeTo(this.head, chunk))
  }

  /** One file of the archive; a body of many chunks streams through. */
  entry(path: string, mtime: number, size: number, body: Buffer | AsyncIterable<Buffer>): Promise<void> {
    return this.tar.add({ path, size, mtime, mode: 0o644 }, body)
  }

  async close(): Promise<void> {
    await this.tar.finish()
    this.head.end()
    await finished(this.out)
    await this.files.rename(this.tmp, this.file)
  }

  async abort(): Promise<void> {
    this.tar.abort(new Error('export aborted'))
    this.head.destroy()
    this.out.destroy()
    await this.files.rm(this.tmp)
  }
}

/** Writes to a file stream, waiting while it is full; its error (a full disk) fails the write. */
async function writeTo(w: Writable, chunk: Buffer): Promise<void> {
  if (w.write(chunk)) return
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      w.off('drain', onDrain)
      w.off('error', done)
      if (err) reject(err)
      else resolve()
    }
    const onDrain = () => done()
    w.once('drain', onDrain)
    w.once('error', done)
  })
}

/** Progress of bytes against a total: redrawn in place on a terminal, a line per step otherwise. */
function byteProgress(verb: string, tty: boolean) {
  let last = 0
  return {
    update(what: string, done: number, total: number) {
      if (!tty || performance.now() - last < 100) return
      last = performance.now()
      const pct = total ? Math.floor((done / total) * 100) : 100
      process.stderr.write(`\r\x1b[2K${chalk.bold(verb)} ${what}: ${formatBytes(done)} / ${formatBytes(total)} (${pct}%)`)
    },
    line(text: string) {
      if (tty) process.stderr.write('\r\x1b[2K')
      log.ok(text)
    },
  }
}

export interface ExportOptions {
  file: string
  gzip: boolean
}

export interface ExportSummary {
  file: string
  registries: { name: string; key: string; repositories: number; tags: number; blobs: number; bytes: number; skipped: string[] }[]
  bytes: number
}

/** A registry whose volume exists, with what export takes from it. */
interface ExportSource {
  registry: Registry
  plan: ExportPlan
  distribution: string | null
}

/** `dev-registry export`: the chosen registries' content into one archive. */
export async function exportRegistries(run: Runner, chosen: Registry[], opts: ExportOptions): Promise<ExportSummary> {
  // 1. What each volume holds, read from storage (the API of a cache would fetch).
  const present = await readExportSources(run, chosen)
  const manifest = archiveManifest(present)
  const summary = exportSummary(opts.file, manifest, present)
  if (run.dryRun) {
    printExportPlan(manifest, summary)
    return summary
  }
  if (!present.length) throw new UserError('nothing to export: none of the chosen registries has a volume yet')

  // 2. The manifest first, then each volume's files as its helper streams them.
  await writeArchive(run, opts, manifest, present, summary)
  summary.bytes = statSync(opts.file).size
  return summary
}

async function readExportSources(run: Runner, chosen: Registry[]): Promise<ExportSource[]> {
  const present: ExportSource[] = []
  for (const registry of chosen) {
    if (!(await volumeExists(run, registry.volume))) {
      log.info(`${registry.name}: volume ${registry.volume} does not exist: nothing to export`)
      continue
    }
    const plan = planExport(await readStorage(run, registry.volume, registry.image))
    for (const t of plan.skipped) log.warn(`${registry.name}: ${t} left out: its manifest is not stored`)
    present.push({ registry, plan, distribution: await distributionVersion(run, registry.image) })
  }
  return present
}

function archiveManifest(present: ExportSource[]): ArchiveManifest {
  return {
    format: FORMAT,
    devreg: devregVersion(),
    created: new Date().toISOString(),
    registries: present.map(({ registry: r, plan, distribution }) => ({
      key: registryKey(r),
      role: r.role,
      name: r.name,
      host: r.upstreamHost,
      upstream: r.upstream,
      volume: r.volume,
      image: r.image,
      distribution,
      repositories: plan.repositories,
      blobs: plan.blobs,
      files: plan.files.length,
      bytes: Object.values(plan.blobs).reduce((a, b) => a + b, 0),
    })),
  }
}

/** The summary before writing: its `bytes` (the archive's size) is filled in once the file is there. */
function exportSummary(file: string, manifest: ArchiveManifest, present: ExportSource[]): ExportSummary {
  return {
    file,
    bytes: 0,
    registries: manifest.registries.map((r, i) => ({
      name: r.name,
      key: r.key,
      repositories: r.repositories.length,
      tags: r.repositories.reduce((n, x) => n + Object.keys(x.tags).length, 0),
      blobs: Object.keys(r.blobs).length,
      bytes: r.bytes,
      skipped: present[i].plan.skipped,
    })),
  }
}

function printExportPlan(manifest: ArchiveManifest, summary: ExportSummary): void {
  for (const [i, r] of manifest.registries.entries()) {
    for (const repo of r.repositories) for (const tag of Object.keys(repo.tags)) log.out(`would export ${r.name}: ${repo.name}:${tag}`)
    log.out(`would export ${r.name}: ${summary.registries[i].tags} tags, ${summary.registries[i].blobs} blobs, ${formatBytes(r.bytes)}`)
  }
}

/** Manifest, every volume's files, trailer; the archive appears under its name only when all of it is written. */
async function writeArchive(
  run: Runner,
  opts: ExportOptions,
  manifest: ArchiveManifest,
  present: ExportSource[],
  summary: ExportSummary,
): Promise<void> {
  const writer = new ArchiveWriter(run.files, opts.file, opts.gzip)
  const progress = byteProgress('exporting', run.tty.stderr)
  try {
    const mtime = Math.floor(Date.now() / 1000)
    const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`)
    await writer.entry(MANIFEST, mtime, manifestBytes.length, manifestBytes)
    let files = 0
    for (const [i, { registry, plan }] of present.entries()) {
      files += await exportVolume(run, registry, plan, writer, (done) => progress.update(registry.name, done, manifest.registries[i].bytes))
      const s = summary.registries[i]
      progress.line(`${registry.name}: ${plural(s.tags, 'tag')}, ${plural(s.blobs, 'blob')}, ${formatBytes(s.bytes)}`)
    }
    const trailer = { manifestSha256: `sha256:${sha256().update(manifestBytes).digest('hex')}`, files }
    const trailerBytes = Buffer.from(`${JSON.stringify(trailer)}\n`)
    await writer.entry(TRAILER, mtime, trailerBytes.length, trailerBytes)
    await writer.close()
  } catch (err) {
    await writer.abort()
    throw err
  }
}

/** Streams one volume's planned files into the archive; link contents are the plan's (a tag moved meanwhile is exported as listed). */
async function exportVolume(
  run: Runner,
  registry: Registry,
  plan: ExportPlan,
  writer: ArchiveWriter,
  onBytes: (n: number) => void,
): Promise<number> {
  const key = registryKey(registry)
  const wanted = new Map(plan.files.map((f) => [f.path, f]))
  const seen = new Set<string>()
  const helper = run.stream(volumeFiles(registry, false, 'export'), { stdin: true })
  helper.end(`${plan.files.map((f) => f.path).join('\n')}\n`)
  let bytes = 0
  try {
    for await (const entry of readTar(helper.stdout as AsyncIterable<Buffer>)) {
      const f = wanted.get(entry.path.replace(/^\.\//, ''))
      if (entry.type !== 'file' || !f || seen.has(f.path)) continue
      const path = `registries/${key}/${f.path}`
      if (f.kind !== 'blob') {
        const link = Buffer.from(f.content ?? '')
        await writer.entry(path, entry.mtime, link.length, link)
      } else {
        if (entry.size !== f.size)
          throw new UserError(`${registry.name}: blob ${f.digest} has ${entry.size} bytes on disk, ${f.size} when listed`)
        const hash = sha256()
        await writer.entry(
          path,
          entry.mtime,
          entry.size,
          tap(entry.body, (chunk) => {
            hash.update(chunk)
            bytes += chunk.length
            onBytes(bytes)
          }),
        )
        if (`sha256:${hash.digest('hex')}` !== f.digest)
          throw new UserError(
            `${registry.name}: blob ${f.digest} in volume ${registry.volume} does not match its digest: the volume is damaged`,
          )
      }
      seen.add(f.path)
    }
    await helper.done
  } catch (err) {
    helper.kill()
    if (err instanceof TarError) throw new UserError(`${registry.name}: reading volume ${registry.volume}: ${err.message}`)
    throw err
  }
  const gone = plan.files.filter((f) => !seen.has(f.path))
  if (gone.length)
    throw new UserError(
      `${registry.name}: ${gone.length} files went away while exporting (e.g. ${gone[0].path}): was it garbage-collected meanwhile? Run the export again`,
    )
  return seen.size
}

/** The archive's bytes, unzipped when it is gzip (told by its magic number, not its name). */
async function openArchive(file: string): Promise<Readable> {
  const fd = await open(file, 'r')
  const magic = Buffer.alloc(2)
  try {
    await fd.read(magic, 0, 2, 0)
  } finally {
    await fd.close()
  }
  const raw = createReadStream(file, { highWaterMark: 1 << 20 })
  if (magic[0] !== 0x1f || magic[1] !== 0x8b) return raw
  const gunzip = createGunzip()
  raw.on('error', (err) => gunzip.destroy(err))
  return raw.pipe(gunzip)
}

export interface ArchiveFile extends StorageFile {
  key: string
  size: number
}

export interface VerifiedArchive {
  manifest: ArchiveManifest
  files: ArchiveFile[]
}

class Corrupt extends Error {}

function checkManifest(value: unknown): ArchiveManifest {
  const m = value as ArchiveManifest
  if (!m || typeof m !== 'object' || m.format !== FORMAT)
    throw new Corrupt(`it is not a devreg export (format ${JSON.stringify((m as { format?: unknown })?.format)}, expected ${FORMAT})`)
  if (!Array.isArray(m.registries)) throw new Corrupt('its manifest lists no registries')
  const keys = new Set<string>()
  for (const r of m.registries) {
    const ok =
      r &&
      typeof r.key === 'string' &&
      (r.key === 'local' || /^[a-z0-9.-]+(:[0-9]{1,5})?$/.test(r.key)) &&
      Array.isArray(r.repositories) &&
      r.blobs &&
      typeof r.blobs === 'object' &&
      Object.entries(r.blobs).every(([d, n]) => new RegExp(`^sha256:${HEX}$`).test(d) && Number.isSafeInteger(n) && n >= 0) &&
      r.repositories.every(
        (x) =>
          typeof x.name === 'string' &&
          x.tags &&
          typeof x.tags === 'object' &&
          Object.values(x.tags).every((d) => typeof d === 'string' && d in r.blobs),
      )
    if (!ok || keys.has(r.key)) throw new Corrupt(`its manifest's entry for ${JSON.stringify(r?.key)} is malformed`)
    keys.add(r.key)
  }
  return m
}

/**
 * Reads the whole archive and checks it, touching nothing: its manifest,
 * every path (distribution's layout only), every blob's sha256 and size,
 * every link's content, the trailer and the end. Any problem is a UserError
 * saying what is wrong.
 */
export async function verifyArchive(file: string, onBytes: (n: number) => void = () => {}): Promise<VerifiedArchive> {
  if (!existsSync(file)) throw new UserError(`${file}: no such file`, EXIT.usage)
  const read = await readArchive(file, onBytes)
  const manifest = checkComplete(file, read)
  return { manifest, files: read.files }
}

/** What one pass over an archive found, before the checks that need all of it. */
interface ArchiveRead {
  manifest: ArchiveManifest | null
  manifestDigest: string
  trailer: { manifestSha256?: string; files?: number } | null
  files: ArchiveFile[]
  /** `<key>/<path>` of every file read. */
  seen: Set<string>
  /** Blobs whose digest checked out, by registry key. */
  blobsSeen: Map<string, Set<string>>
}

/** Reads every entry, checking each on its own; a damaged archive is a UserError. */
async function readArchive(file: string, onBytes: (n: number) => void): Promise<ArchiveRead> {
  const read: ArchiveRead = { manifest: null, manifestDigest: '', trailer: null, files: [], seen: new Set(), blobsSeen: new Map() }
  let bytes = 0
  const addBytes = (n: number) => {
    bytes += n
    onBytes(bytes)
  }
  try {
    for await (const entry of readTar(await openArchive(file))) {
      if (read.trailer) throw new Corrupt(`${entry.path} follows the end record`)
      if (!read.manifest) {
        if (entry.path !== MANIFEST || entry.size > 64 << 20) throw new Corrupt(`it does not start with ${MANIFEST}`)
        const body = await collect(entry.body)
        read.manifestDigest = `sha256:${sha256().update(body).digest('hex')}`
        read.manifest = parseManifestEntry(body)
        continue
      }
      if (entry.path === TRAILER) {
        read.trailer = await readTrailerEntry(entry)
        continue
      }
      if (entry.type === 'directory') continue
      read.files.push(await checkStorageEntry(entry, read.manifest, read, addBytes))
    }
  } catch (err) {
    if (err instanceof Corrupt || err instanceof TarError) throw new UserError(`${file} is damaged: ${err.message}; nothing was imported`)
    if (String((err as NodeJS.ErrnoException).code).startsWith('Z_'))
      throw new UserError(`${file} is damaged: gzip: ${(err as Error).message}; nothing was imported`)
    throw err
  }
  return read
}

function parseManifestEntry(body: Buffer): ArchiveManifest {
  try {
    return checkManifest(JSON.parse(body.toString('utf8')))
  } catch (err) {
    throw err instanceof Corrupt ? err : new Corrupt(`its ${MANIFEST} is not JSON`)
  }
}

async function readTrailerEntry(entry: TarEntry): Promise<ArchiveRead['trailer']> {
  try {
    return JSON.parse((await collect(entry.body)).toString('utf8'))
  } catch {
    throw new Corrupt(`its ${TRAILER} is not JSON`)
  }
}

/** One file of a registry: where it goes, and that its content is what the manifest says. */
async function checkStorageEntry(
  entry: TarEntry,
  manifest: ArchiveManifest,
  read: Pick<ArchiveRead, 'seen' | 'blobsSeen'>,
  addBytes: (n: number) => void,
): Promise<ArchiveFile> {
  const m = /^registries\/([^/]+)\/(.+)$/.exec(entry.path)
  const record = m ? manifest.registries.find((r) => r.key === m[1]) : undefined
  const f = m ? classifyPath(m[2]) : null
  if (!m || !record || !f || entry.type !== 'file') throw new Corrupt(`it holds ${entry.path}, which is no file of a registry it lists`)
  const id = `${record.key}/${f.path}`
  if (read.seen.has(id)) throw new Corrupt(`it holds ${entry.path} twice`)
  read.seen.add(id)
  if (f.kind === 'blob') {
    await checkBlobEntry(entry, record, f.digest as string, addBytes)
    const set = read.blobsSeen.get(record.key) ?? new Set()
    set.add(f.digest as string)
    read.blobsSeen.set(record.key, set)
  } else {
    if (entry.size > 100) throw new Corrupt(`link ${entry.path} is ${entry.size} bytes long`)
    const content = (await collect(entry.body)).toString('utf8')
    const repo = record.repositories.find((r) => r.name === f.repository)
    const want = f.kind === 'tag' ? repo?.tags[f.tag as string] : f.digest
    if (!want || content !== want)
      throw new Corrupt(`link ${entry.path} says ${JSON.stringify(content)}, its manifest ${want ?? 'nothing'}`)
    f.digest = content
  }
  return { ...f, key: record.key, size: entry.size }
}

async function checkBlobEntry(entry: TarEntry, record: ArchiveRegistry, digest: string, addBytes: (n: number) => void): Promise<void> {
  const expected = record.blobs[digest]
  if (expected === undefined) throw new Corrupt(`blob ${digest} of ${record.key} is not in its manifest`)
  if (entry.size !== expected) throw new Corrupt(`blob ${digest} of ${record.key} has ${entry.size} bytes, its manifest says ${expected}`)
  const hash = sha256()
  for await (const chunk of entry.body) {
    hash.update(chunk)
    addBytes(chunk.length)
  }
  const actual = `sha256:${hash.digest('hex')}`
  if (actual !== digest) throw new Corrupt(`blob ${digest} of ${record.key} does not match its digest (it hashes to ${actual})`)
}

/** The checks that need the whole archive: its end record, and every blob and tag its manifest lists. */
function checkComplete(file: string, read: ArchiveRead): ArchiveManifest {
  const { manifest, trailer, files } = read
  const fail = (what: string) => new UserError(`${file} is damaged: ${what}; nothing was imported`)
  if (!manifest) throw fail('it is empty')
  if (!trailer) throw fail(`it is cut short: ${TRAILER} is missing`)
  if (trailer.manifestSha256 !== read.manifestDigest) throw fail(`its ${MANIFEST} does not match the digest its end record gives`)
  if (trailer.files !== files.length) throw fail(`it holds ${files.length} files, its end record says ${trailer.files}`)
  for (const r of manifest.registries) {
    const have = read.blobsSeen.get(r.key) ?? new Set()
    const missing = Object.keys(r.blobs).filter((d) => !have.has(d))
    if (missing.length) throw fail(`${missing.length} blobs of ${r.key} are missing (e.g. ${missing[0]})`)
    for (const repo of r.repositories)
      for (const tag of Object.keys(repo.tags))
        if (!read.seen.has(`${r.key}/${repoPath(repo.name)}/_manifests/tags/${tag}/current/link`))
          throw fail(`the tag ${repo.name}:${tag} of ${r.key} is missing`)
  }
  return manifest
}

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const b of body) parts.push(b)
  return Buffer.concat(parts)
}

export interface ImportTarget {
  key: string
  registry: Registry
  /** Files the volume lacks, in archive order. */
  add: ArchiveFile[]
  /** Files it holds already (left alone). */
  present: number
  /** repo:tag that become visible. */
  tags: string[]
  blobs: number
  bytes: number
}

/** Which registry of this config each archived registry goes to; one the config lacks is a usage error. */
export function importTargets(config: Config, manifest: ArchiveManifest, names: readonly string[]): Map<string, Registry> {
  const only = names.length ? new Set(chooseRegistries(config, names).map(registryKey)) : null
  const out = new Map<string, Registry>()
  const problems: string[] = []
  for (const r of manifest.registries) {
    if (only && !only.has(r.key)) continue
    const target = config.registries.find((x) => registryKey(x) === r.key)
    if (target) out.set(r.key, target)
    else
      problems.push(
        `the archive holds a cache of ${r.key}, which the config has no mirror for: add a mirror with host ${r.key}, or name the registries to import`,
      )
  }
  if (only)
    for (const key of only) if (!manifest.registries.some((r) => r.key === key)) problems.push(`the archive holds nothing for ${key}`)
  if (problems.length) throw new UserError(problems.join('\n'), EXIT.usage)
  return out
}

/** The files a volume holds (none when it does not exist), read through a read-only helper. */
async function volumeFileSet(run: Runner, registry: Registry): Promise<Set<string>> {
  if (!(await volumeExists(run, registry.volume))) return new Set()
  const r = await run.probe(volumeFiles(registry, false, 'list'), { input: '' })
  if (!r.ok) throw new UserError(`cannot read volume ${registry.volume} with ${registry.image}: ${r.stderr.trim().split('\n')[0]}`)
  return new Set(r.stdout.split('\n').filter(Boolean))
}

/** What importing would add to each target volume. */
export function planImport(archive: VerifiedArchive, key: string, registry: Registry, existing: Set<string>): ImportTarget {
  const mine = archive.files.filter((f) => f.key === key)
  const add = mine.filter((f) => !existing.has(f.path))
  const blobs = add.filter((f) => f.kind === 'blob')
  return {
    key,
    registry,
    add,
    present: mine.length - add.length,
    tags: add.filter((f) => f.kind === 'tag').map((f) => `${f.repository}:${f.tag}`),
    blobs: blobs.length,
    bytes: blobs.reduce((n, f) => n + f.size, 0),
  }
}

export interface ImportSummary {
  file: string
  registries: { name: string; volume: string; key: string; tags: string[]; blobs: number; bytes: number; files: number; present: number }[]
  added: number
}

/** `dev-registry import`: check the whole archive, then merge what each volume lacks. */
export async function importArchive(run: Runner, config: Config, file: string, names: readonly string[]): Promise<ImportSummary> {
  // 1. Check everything before anything is touched.
  const progress = byteProgress('checking', run.tty.stderr)
  const total = statSync(file, { throwIfNoEntry: false })?.size ?? 0
  const archive = await verifyArchive(file, (n) => progress.update(file, n, total))
  const targets = importTargets(config, archive.manifest, names)
  // 2. What each volume lacks.
  const plans: ImportTarget[] = []
  for (const [key, registry] of targets) plans.push(planImport(archive, key, registry, await volumeFileSet(run, registry)))
  const summary: ImportSummary = {
    file,
    added: plans.reduce((n, p) => n + p.add.length, 0),
    registries: plans.map((p) => ({
      name: p.registry.name,
      volume: p.registry.volume,
      key: p.key,
      tags: p.tags,
      blobs: p.blobs,
      bytes: p.bytes,
      files: p.add.length,
      present: p.present,
    })),
  }
  progress.line(`${file}: every blob matches its digest`)
  if (run.dryRun || !summary.added) return summary

  // 3. Stage what is missing in each volume, outside the registry's storage, holding each registry's lock.
  const staging = plans.filter((p) => p.add.length)
  const stagedBytes = staging.reduce((a, p) => a + p.bytes, 0)
  await withRegistryLocks(
    run,
    staging.map((p) => p.registry),
    'dev-registry import',
    async () => {
      const id = stageId()
      for (const p of staging) await prepareStaging(run, p.registry)
      try {
        await stageAll(run, file, staging, id, (n) => progress.update('staging', n, stagedBytes))
      } catch (err) {
        for (const p of staging) await run.probe(volumeFiles(p.registry, true, 'clean', id), { input: '' })
        throw err
      }
      // 4. Link it in: blobs first, links last, nothing replaced.
      for (const p of staging) await run.change(volumeFiles(p.registry, true, 'commit', id), { input: '' })
    },
  )
  return summary
}

/** A host as stage IDs name it: what the helper script accepts in an ID. */
const hostTag = (host: string) => host.toLowerCase().replace(/[^a-z0-9.-]/g, '-') || 'host'

/** A stage's ID names its run, `<host>-<pid>-<random>`, so a later run can tell whether that run is gone. */
export function stageId(host = hostname(), pid = process.pid): string {
  return `${hostTag(host)}-${pid}-${randomBytes(6).toString('hex')}`
}

/**
 * The stages among `ids` whose run is provably gone: made on this host by a
 * process that no longer runs. Another host's stage, or one whose ID says
 * nothing of its run, is left alone.
 */
export function abandonedStages(ids: string[], alive: (pid: number) => boolean, host = hostname()): string[] {
  return ids.filter((id) => {
    const m = /^(.+)-(\d+)-[0-9a-f]{12}$/.exec(id)
    return m !== null && m[1] === hostTag(host) && !alive(Number(m[2]))
  })
}

/** The volume, created when missing, without the stages a run that crashed left in it. */
async function prepareStaging(run: Runner, registry: Registry): Promise<void> {
  await ensureVolume(run, registry.volume)
  const r = await run.probe(volumeFiles(registry, false, 'stages'), { input: '' })
  for (const id of abandonedStages(r.stdout.split('\n').filter(Boolean), alive))
    await run.change(volumeFiles(registry, true, 'clean', id), { input: '' })
}

/**
 * Puts a few files of distribution's layout into a registry's volume the way
 * import does (staged whole, then linked blobs first, nothing replaced, under
 * the registry's lock), for content devreg makes itself rather than reads
 * from an archive: verify's probe image. Works with the registry up.
 */
export async function placeFiles(run: Runner, registry: Registry, files: { path: string; body: Buffer }[], what: string): Promise<void> {
  const bad = files.find((f) => !classifyPath(f.path))
  if (bad) throw new Error(`${bad.path} is no file of distribution's storage`)
  await withRegistryLocks(run, [registry], what, () => stageAndCommit(run, registry, files))
}

async function stageAndCommit(run: Runner, registry: Registry, files: { path: string; body: Buffer }[]): Promise<void> {
  const id = stageId()
  const tar = await tarOf([...files, { path: SENTINEL, body: Buffer.alloc(0) }])
  await prepareStaging(run, registry)
  const helper = run.stream(volumeFiles(registry, true, 'stage', id), { stdin: true })
  try {
    await helper.write(tar)
    helper.end()
    await helper.done
  } catch (err) {
    throw helperFailed(registry, err as Error, 'nothing was placed')
  }
  await run.change(volumeFiles(registry, true, 'commit', id), { input: '' })
}

/**
 * The second read: each volume's missing files go to a helper that stages
 * them; a blob that no longer matches aborts every stage, and so does a
 * helper that dies, at once and with its own message.
 */
async function stageAll(run: Runner, file: string, plans: ImportTarget[], id: string, onBytes: (n: number) => void): Promise<void> {
  const byKey = new Map(plans.map((p) => [p.key, { plan: p, wanted: new Set(p.add.map((f) => f.path)) }]))
  const stages = new Map<string, { helper: Streamed; tar: TarWriter; exited: Promise<void> }>()
  const start = (registry: Registry) => {
    const helper = run.stream(volumeFiles(registry, true, 'stage', id), { stdin: true })
    const exited = helper.done.catch((err: Error) => {
      const died = helperFailed(registry, err, 'nothing was imported')
      // Whatever is being written, to this stage or another, fails with why it died.
      for (const other of stages.values()) other.tar.abort(died)
      throw died
    })
    exited.catch(() => {})
    // A write that fails because the helper is gone fails with why it went.
    const sink = (chunk: Buffer) =>
      helper.write(chunk).catch(async (err) => {
        await exited
        throw err
      })
    return { helper, tar: new TarWriter(sink), exited }
  }
  let bytes = 0
  try {
    for await (const entry of readTar(await openArchive(file))) {
      const m = /^registries\/([^/]+)\/(.+)$/.exec(entry.path)
      const target = m && byKey.get(m[1])
      if (!m || !target?.wanted.has(m[2])) continue
      const stage = stages.get(m[1]) ?? start(target.plan.registry)
      stages.set(m[1], stage)
      const hash = sha256()
      await stage.tar.add(
        { path: m[2], size: entry.size, mtime: entry.mtime, mode: 0o644 },
        tap(entry.body, (chunk) => {
          hash.update(chunk)
          bytes += chunk.length
          onBytes(bytes)
        }),
      )
      const f = classifyPath(m[2])
      if (f?.kind === 'blob' && `sha256:${hash.digest('hex')}` !== f.digest)
        throw new UserError(`${file} changed while it was imported (blob ${f.digest}): nothing was imported`)
    }
    // Every digest checked out: only now does each stage get its completion mark.
    for (const { helper, tar } of stages.values()) {
      await tar.add({ path: SENTINEL, size: 0, mtime: 0, mode: 0o644 }, Buffer.alloc(0))
      await tar.finish()
      helper.end()
    }
    for (const { exited } of stages.values()) await exited
  } catch (err) {
    // A stage that ends without its completion mark is removed by its helper, which then exits.
    for (const { helper, tar } of stages.values()) {
      tar.abort(err as Error)
      helper.end()
    }
    for (const { helper } of stages.values()) await helper.done.catch(() => {})
    throw err
  }
}

/** A helper container's failure in one line: its own message, not the script it ran. */
function helperFailed(registry: Registry, err: Error, outcome: string): UserError {
  const detail = err instanceof CommandError ? err.detail : err.message
  return new UserError(`${registry.name}: the helper container writing into volume ${registry.volume} failed: ${detail}; ${outcome}`)
}

/** Chunks as they pass, each shown to `see` first. */
async function* tap(body: AsyncIterable<Buffer>, see: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    see(chunk)
    yield chunk
  }
}

/** `dev-registry export FILE [REGISTRY...]`, its output included. */
export async function exportCommand(
  run: Runner,
  config: Config,
  file: string,
  names: readonly string[],
  opts: { gzip: boolean; json: boolean },
): Promise<number> {
  const chosen = chooseRegistries(config, names)
  const summary = await exportRegistries(run, chosen, { file, gzip: opts.gzip || /\.t?gz$/.test(file) })
  if (opts.json) log.out(JSON.stringify(summary, null, 2))
  if (run.dryRun) return 0
  const tags = summary.registries.reduce((n, r) => n + r.tags, 0)
  const blobs = summary.registries.reduce((n, r) => n + r.blobs, 0)
  log.ok(
    `wrote ${file} (${formatBytes(summary.bytes)}): ${plural(tags, 'tag')}, ${plural(blobs, 'blob')} from ${plural(summary.registries.length, 'registry', 'registries')}`,
  )
  return 0
}

/** `dev-registry import FILE [REGISTRY...]`, its output included. */
export async function importCommand(
  run: Runner,
  config: Config,
  file: string,
  names: readonly string[],
  opts: { json: boolean },
): Promise<number> {
  const summary = await importArchive(run, config, file, names)
  if (opts.json) log.out(JSON.stringify(summary, null, 2))
  const what = (r: ImportSummary['registries'][number]) =>
    `${plural(r.tags.length, 'tag')}, ${plural(r.blobs, 'blob')} (${formatBytes(r.bytes)}), ${plural(r.files, 'file')}; ${r.present} already there`
  if (!summary.added) {
    log.ok(`nothing to add: the volumes already hold everything in ${file}`)
    return 0
  }
  for (const r of summary.registries) {
    if (run.dryRun) {
      if (!opts.json) {
        for (const tag of r.tags) log.out(`would add ${r.key === 'local' ? '' : `${r.key}/`}${tag} to ${r.volume}`)
        log.out(`would add to ${r.volume} (${r.name}): ${what(r)}`)
      }
    } else if (r.files) log.ok(`${r.volume} (${r.name}): added ${what(r)}`)
    else log.ok(`${r.volume} (${r.name}): nothing to add`)
  }
  return 0
}
