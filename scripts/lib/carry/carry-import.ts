// `dev-registry import`: an archive (archive.ts) merged into the volumes of
// this machine's registries. The archive is read twice: first everything is
// checked with nothing touched (archive-check.ts); then the files a volume
// lacks are staged outside the registry's storage, through the engine's
// archive stream into a helper container, and only once every volume is
// staged linked in, blobs before links, never replacing a file that is there
// (volume-files.ts).
import { statSync } from 'node:fs'
import type { Config, Registry } from '../core/config.ts'
import type { Runner, Streamed } from '../core/exec.ts'
import { withRegistryLocks } from '../core/lock.ts'
import { EXIT, formatBytes, log, plural, UserError } from '../core/log.ts'
import { byteProgress } from '../core/progress.ts'
import { readTar, TarWriter } from '../core/tar.ts'
import { classifyPath } from '../registries/registry-layout.ts'
import { selectRegistries } from '../registries/registry-names.ts'
import { copyIntoVolume, helperFailed, SENTINEL, stageAndCommit, stagedPath, volumeFileSet } from '../registries/volume-files.ts'
import { type ArchiveManifest, openArchive, parseEntryPath, registryKey, sha256, tap } from './archive.ts'
import { type ArchiveFile, type VerifiedArchive, verifyArchive } from './archive-check.ts'

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
  const only = names.length ? new Set(selectRegistries(config, names, { none: 'caches' }).map(registryKey)) : null
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

/** Check the whole archive, then merge what each volume lacks. */
export async function importArchive(run: Runner, config: Config, file: string, names: readonly string[]): Promise<ImportSummary> {
  // 1. Check everything before anything is touched.
  const progress = byteProgress('checking')
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

  // 3. Stage what is missing in each volume, outside the registry's storage, holding each registry's lock;
  // 4. once every volume is staged, link it in.
  const staging = plans.filter((p) => p.add.length)
  const stagedBytes = staging.reduce((a, p) => a + p.bytes, 0)
  const registries = staging.map((p) => p.registry)
  await withRegistryLocks(run, registries, 'dev-registry import', () =>
    stageAndCommit(run, registries, (id, helpers) =>
      stageAll(run, file, staging, { id, helpers }, (n) => progress.update('staging', n, stagedBytes)),
    ),
  )
  return summary
}

/**
 * The second read: each volume's missing files go through the engine into
 * stage ID of the volume (its helper's, by volume); a blob that no longer matches
 * aborts every stage, and so does a copy that fails, at once and with its own
 * message.
 */
async function stageAll(
  run: Runner,
  file: string,
  plans: ImportTarget[],
  { id, helpers }: { id: string; helpers: Map<string, string> },
  onBytes: (n: number) => void,
): Promise<void> {
  const byKey = new Map(plans.map((p) => [p.key, { plan: p, wanted: new Set(p.add.map((f) => f.path)) }]))
  const stages = new Map<string, { copy: Streamed; tar: TarWriter; exited: Promise<void> }>()
  const start = (registry: Registry) => {
    const copy = run.stream(copyIntoVolume(helpers.get(registry.volume) as string), { stdin: true })
    const exited = copy.done.catch((err: Error) => {
      const died = helperFailed(registry, err, 'nothing was imported')
      // Whatever is being written, to this stage or another, fails with why it died.
      for (const other of stages.values()) other.tar.abort(died)
      throw died
    })
    exited.catch(() => {})
    // A write that fails because the copy is gone fails with why it went.
    const sink = (chunk: Buffer) =>
      copy.write(chunk).catch(async (err) => {
        await exited
        throw err
      })
    return { copy, tar: new TarWriter(sink), exited }
  }
  let bytes = 0
  try {
    for await (const entry of readTar(await openArchive(file))) {
      const at = parseEntryPath(entry.path)
      const target = at && byKey.get(at.key)
      if (!at || !target?.wanted.has(at.path)) continue
      const stage = stages.get(at.key) ?? start(target.plan.registry)
      stages.set(at.key, stage)
      const hash = sha256()
      await stage.tar.add(
        { path: stagedPath(id, at.path), size: entry.size, mtime: entry.mtime, mode: 0o644 },
        tap(entry.body, (chunk) => {
          hash.update(chunk)
          bytes += chunk.length
          onBytes(bytes)
        }),
      )
      const f = classifyPath(at.path)
      if (f?.kind === 'blob' && `sha256:${hash.digest('hex')}` !== f.digest)
        throw new UserError(`${file} changed while it was imported (blob ${f.digest}): nothing was imported`)
    }
    // Every digest checked out: only now does each stage get its completion mark.
    for (const { copy, tar } of stages.values()) {
      await tar.add({ path: stagedPath(id, SENTINEL), size: 0, mtime: 0, mode: 0o644 }, Buffer.alloc(0))
      await tar.finish()
      copy.end()
    }
    for (const { exited } of stages.values()) await exited
  } catch (err) {
    // Cut off: what a copy wrote lacks the completion mark, so it is never committed, and importArchive removes it.
    for (const { copy, tar } of stages.values()) {
      tar.abort(err as Error)
      copy.kill()
    }
    for (const { copy } of stages.values()) await copy.done.catch(() => {})
    throw err
  }
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
