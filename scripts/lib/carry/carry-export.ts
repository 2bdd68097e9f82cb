// `dev-registry export`: the chosen registries' content into one archive
// (archive.ts). Each volume is read read-only through the engine's archive
// stream of a helper container (volume-files.ts) while the registry keeps
// serving: blobs are content-addressed and written whole (distribution moves
// a finished upload into place), and a tag that moves meanwhile is exported
// as it was listed.
import { statSync } from 'node:fs'
import type { Config, Registry } from '../core/config.ts'
import { volumeExists } from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { formatBytes, log, plural, UserError } from '../core/log.ts'
import { byteProgress } from '../core/progress.ts'
import { readTar, TarError } from '../core/tar.ts'
import { distributionVersion } from '../registries/distribution-version.ts'
import { selectRegistries } from '../registries/registry-names.ts'
import { readStorage } from '../registries/storage.ts'
import { copiedPath, copyStorageOut, withHelper } from '../registries/volume-files.ts'
import { type ArchiveManifest, ArchiveWriter, entryPath, FORMAT, MANIFEST, registryKey, sha256, TRAILER, tap } from './archive.ts'
import { devregVersion } from './devreg-version.ts'
import { type ExportPlan, planExport } from './export-plan.ts'

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

/** The chosen registries' content into one archive. */
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
    // Two helper containers, each mostly the engine's start-up: at once.
    const [storage, distribution] = await Promise.all([
      readStorage(run, registry.volume, registry.image),
      distributionVersion(run, registry, 'image'),
    ])
    const plan = planExport(storage)
    for (const t of plan.skipped) log.warn(`${registry.name}: ${t} left out: its manifest is not stored`)
    present.push({ registry, plan, distribution })
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
      upstreamDomain: r.upstreamDomain,
      host: r.upstreamDomain, // upstreamDomain's old name, until the next release (old-keys.ts)
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
  const progress = byteProgress('exporting')
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

/**
 * One volume's planned files into the archive: the engine streams the whole
 * storage and the plan picks from it. Blobs go in as they come; links after
 * them, in the plan's order, with the plan's content (a tag moved meanwhile
 * is exported as listed) and their own mtime.
 */
async function exportVolume(
  run: Runner,
  registry: Registry,
  plan: ExportPlan,
  writer: ArchiveWriter,
  onBytes: (n: number) => void,
): Promise<number> {
  if (!plan.files.length) return 0
  const key = registryKey(registry)
  const mtimes = await withHelper(run, registry, { write: false }, (helper) => copyBlobs(run, helper, registry, plan, writer, onBytes))
  const gone = plan.files.filter((f) => !mtimes.has(f.path))
  if (gone.length)
    throw new UserError(
      `${registry.name}: ${gone.length} files went away while exporting (e.g. ${gone[0].path}): was it garbage-collected meanwhile? Run the export again`,
    )
  for (const f of plan.files) {
    if (f.kind === 'blob') continue
    const link = Buffer.from(f.content ?? '')
    await writer.entry(entryPath(key, f.path), mtimes.get(f.path) as number, link.length, link)
  }
  return plan.files.length
}

/**
 * Reads the storage's tar from the helper: each planned blob goes into the
 * archive, checked as it passes; the mtime of every planned file it held, by path.
 */
async function copyBlobs(
  run: Runner,
  helper: string,
  registry: Registry,
  plan: ExportPlan,
  writer: ArchiveWriter,
  onBytes: (n: number) => void,
): Promise<Map<string, number>> {
  const key = registryKey(registry)
  const wanted = new Map(plan.files.map((f) => [f.path, f]))
  const mtimes = new Map<string, number>()
  const copy = run.stream(copyStorageOut(helper))
  let bytes = 0
  try {
    for await (const entry of readTar(copy.stdout as AsyncIterable<Buffer>)) {
      const f = wanted.get(copiedPath(entry.path))
      if (entry.type !== 'file' || !f) continue
      if (f.kind !== 'blob') {
        mtimes.set(f.path, entry.mtime)
        continue
      }
      if (entry.size !== f.size)
        throw new UserError(`${registry.name}: blob ${f.digest} has ${entry.size} bytes on disk, ${f.size} when listed`)
      const hash = sha256()
      await writer.entry(
        entryPath(key, f.path),
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
      mtimes.set(f.path, entry.mtime)
    }
    await copy.done
  } catch (err) {
    copy.kill()
    if (err instanceof TarError) throw new UserError(`${registry.name}: reading volume ${registry.volume}: ${err.message}`)
    throw err
  }
  return mtimes
}

/** `dev-registry export FILE [REGISTRY...]`, its output included. */
export async function exportCommand(
  run: Runner,
  config: Config,
  file: string,
  names: readonly string[],
  opts: { gzip: boolean; json: boolean },
): Promise<number> {
  const chosen = selectRegistries(config, names, { none: 'caches' })
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
