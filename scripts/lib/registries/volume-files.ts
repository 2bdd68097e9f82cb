// Files in and out of a registry's volume while the registry keeps serving.
// Bulk bytes go through the engine's own archive stream (`docker cp`) to and
// from a helper container that is created with the volume mounted and never
// started: a started container's stdout carried a tar at a tenth of that
// speed. What needs a shell runs in templates/volume-files.sh in a helper
// container of the registry's own image: listing, and writing: files are
// staged whole outside the registry's storage, then linked in, content before
// anything that names it (registry-layout.ts COMMIT_ORDER), never replacing a
// file that is there. A stage, and a helper, belongs to the run that made it:
// its ID names the host and the process, so a later run removes only those
// whose run is provably gone.
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { posix } from 'node:path'
import type { Registry } from '../core/config.ts'
import { ensureVolume, helperCommand, volumeExists } from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { LABEL } from '../core/labels.ts'
import { alive } from '../core/lock.ts'
import { CommandError, UserError } from '../core/log.ts'
import { template } from '../core/templates.ts'
import { COMMIT_ORDER, REGISTRY_DATA, STORAGE_ROOT } from './registry-layout.ts'

/** The file that ends a complete stage: devreg writes it only after every digest checked out. */
export const SENTINEL = '.devreg-complete'
const VOLUME_FILES = template('volume-files.sh')

type Volume = Pick<Registry, 'volume' | 'image'>

/** A volume-files.sh command in a helper with the volume mounted where the registry has it (read-only unless `write`). */
export const volumeFiles = (r: Volume, write: boolean, command: string, ...args: string[]) =>
  helperCommand(
    r.volume,
    r.image,
    { at: REGISTRY_DATA, workdir: REGISTRY_DATA, readOnly: !write, stdin: true },
    'sh',
    '-c',
    VOLUME_FILES,
    'volume-files',
    command,
    ...args,
  )

/** Where a file of stage ID lies in the volume: beside the registry's storage, in the directory volume-files.sh names so. */
export const stagedPath = (id: string, path: string) => `.devreg-import-${id}/${path}`
/** `commit ID`: links what stage ID holds into the storage, in COMMIT_ORDER, then removes the stage. */
export const commitStage = (r: Volume, id: string) => volumeFiles(r, true, 'commit', id, ...COMMIT_ORDER)
/** `clean ID`: removes the stage ID without committing it. */
export const cleanStage = (r: Volume, id: string) => volumeFiles(r, true, 'clean', id)

/** The files a volume holds (none when it does not exist), read through a read-only helper. */
export async function volumeFileSet(run: Runner, registry: Registry): Promise<Set<string>> {
  if (!(await volumeExists(run, registry.volume))) return new Set()
  const r = await run.probe(volumeFiles(registry, false, 'list', STORAGE_ROOT), { input: '' })
  if (!r.ok) throw new UserError(`cannot read volume ${registry.volume} with ${registry.image}: ${r.stderr.trim().split('\n')[0]}`)
  return new Set(r.stdout.split('\n').filter(Boolean))
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

/** The volume, created when missing, without the stages a run that crashed left in it (a new one has none). */
export async function prepareStaging(run: Runner, registry: Registry): Promise<void> {
  if (await ensureVolume(run, registry.volume)) return
  const r = await run.probe(volumeFiles(registry, false, 'stages'), { input: '' })
  for (const id of abandonedStages(r.stdout.split('\n').filter(Boolean), alive)) await run.change(cleanStage(registry, id), { input: '' })
}

/** A helper container's failure in one line: its own message, not the script it ran. */
export function helperFailed(registry: Registry, err: Error, outcome: string): UserError {
  const detail = err instanceof CommandError ? err.detail : err.message
  return new UserError(`${registry.name}: the helper container writing into volume ${registry.volume} failed: ${detail}; ${outcome}`)
}

/**
 * Writes files into each registry's volume, all or nothing: `fill` copies
 * them into stage ID (stagedPath; copyIntoVolume of the helper it is given
 * for each volume), ending each with SENTINEL once everything checked out;
 * when fill fails every stage is removed, else each is linked in.
 */
export async function stageAndCommit(
  run: Runner,
  registries: Registry[],
  fill: (id: string, helpers: Map<string, string>) => Promise<void>,
): Promise<void> {
  const id = stageId()
  for (const r of registries) await prepareStaging(run, r)
  try {
    await withHelpers(run, registries, id, (helpers) => fill(id, helpers))
  } catch (err) {
    for (const r of registries) await run.probe(cleanStage(r, id), { input: '' })
    throw err
  }
  // Blobs first, links last, nothing replaced.
  for (const r of registries) await run.change(commitStage(r, id), { input: '' })
}

/** Runs fn with a writable helper on each registry's volume, by volume. */
function withHelpers(run: Runner, registries: Registry[], id: string, fn: (helpers: Map<string, string>) => Promise<void>): Promise<void> {
  const helpers = new Map<string, string>()
  const next = (i: number): Promise<void> =>
    i === registries.length
      ? fn(helpers)
      : withHelper(run, registries[i], { write: true, id }, (helper) => {
          helpers.set(registries[i].volume, helper)
          return next(i + 1)
        })
  return next(0)
}

/** A helper's name: its volume's, then its run's ID (stageId), so a later run can tell whether that run is gone. */
const helperName = (volume: string, id: string) => `${volume}-files-${id}`

/**
 * Runs fn with a helper container of the registry's image that has the
 * volume mounted where the registry has it (read-only unless `write`) and is
 * created, never started: the engine reads and writes the volume through it
 * (copyStorageOut, copyIntoVolume). Helpers left behind by runs that are gone
 * (killed mid-copy) are removed first: they would keep the volume in use.
 */
export async function withHelper<T>(
  run: Runner,
  r: Volume,
  opts: { write: boolean; id?: string },
  fn: (helper: string) => Promise<T>,
): Promise<T> {
  const name = helperName(r.volume, opts.id ?? stageId())
  const mount = `${r.volume}:${REGISTRY_DATA}${opts.write ? '' : ':ro'}`
  const create = [
    'docker',
    'create',
    '--name',
    name,
    '--label',
    `${LABEL.volumeHelper}=${r.volume}`,
    '--network',
    'none',
    '--volume',
    mount,
    r.image,
  ]
  // Independent (abandoned helpers have other names): at once.
  await Promise.all([removeAbandonedHelpers(run, r.volume), run.change(create)])
  try {
    return await fn(name)
  } finally {
    await run.probe(['docker', 'rm', '--force', name])
  }
}

async function removeAbandonedHelpers(run: Runner, volume: string): Promise<void> {
  const r = await run.probe(['docker', 'ps', '--all', '--filter', `label=${LABEL.volumeHelper}=${volume}`, '--format', '{{.Names}}'])
  const prefix = helperName(volume, '')
  const ids = r.stdout
    .split('\n')
    .filter((n) => n.startsWith(prefix))
    .map((n) => n.slice(prefix.length))
  for (const id of abandonedStages(ids, alive)) await run.probe(['docker', 'rm', '--force', helperName(volume, id)])
}

/** `docker cp` of distribution's whole storage out of a helper: a tar on stdout whose names start with its last directory (v2/). */
export const copyStorageOut = (helper: string) => ['docker', 'cp', `${helper}:${REGISTRY_DATA}/${STORAGE_ROOT}`, '-']
/** A name in copyStorageOut's tar as the path relative to the volume that the layout uses (docker/registry/v2/…). */
export const copiedPath = (name: string) => posix.join(posix.dirname(STORAGE_ROOT), name)

/** `docker cp` of the tar on stdin into a helper's volume: a file named `stagedPath(ID, PATH)` lands in stage ID. */
export const copyIntoVolume = (helper: string) => ['docker', 'cp', '-', `${helper}:${REGISTRY_DATA}`]
