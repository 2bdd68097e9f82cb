// verify's probe image goes into each registry's storage the way `import`
// puts files there (volume-files.ts): staged whole, then linked in blobs
// first, nothing replaced, under the registry's lock, with the registry up. A
// cache asked for the image through its API would ask its upstream instead.

import type { Registry } from '../core/config.ts'
import type { Runner } from '../core/exec.ts'
import { withRegistryLocks } from '../core/lock.ts'
import { tarOf } from '../core/tar.ts'
import { classifyPath } from '../registries/registry-layout.ts'
import { copyIntoVolume, helperFailed, SENTINEL, stageAndCommit, stagedPath } from '../registries/volume-files.ts'

/** A file of distribution's storage devreg makes itself, by its path relative to the volume (registry-layout.ts). */
export interface PlacedFile {
  path: string
  body: Buffer
}

/** Puts `files` into the registry's volume; a path outside distribution's layout is a bug in the caller. */
export async function placeFiles(run: Runner, registry: Registry, files: PlacedFile[], what: string): Promise<void> {
  const bad = files.find((f) => !classifyPath(f.path))
  if (bad) throw new Error(`${bad.path} is no file of distribution's storage`)
  await withRegistryLocks(run, [registry], what, () =>
    stageAndCommit(run, [registry], (id, helpers) => copyFiles(run, registry, files, id, helpers.get(registry.volume) as string)),
  )
}

/** One in-memory tar into the stage, its completion mark last. */
async function copyFiles(run: Runner, registry: Registry, files: PlacedFile[], id: string, helper: string): Promise<void> {
  const tar = await tarOf([...files, { path: SENTINEL, body: Buffer.alloc(0) }].map((f) => ({ ...f, path: stagedPath(id, f.path) })))
  const copy = run.stream(copyIntoVolume(helper), { stdin: true })
  try {
    await copy.write(tar)
    copy.end()
    await copy.done
  } catch (err) {
    throw helperFailed(registry, err as Error, 'nothing was placed')
  }
}
