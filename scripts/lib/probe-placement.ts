// verify's probe image goes into each registry's storage the way `import`
// puts files there (volume-files.ts): staged whole, then linked in blobs
// first, nothing replaced, under the registry's lock, with the registry up. A
// cache asked for the image through its API would ask its upstream instead.
import type { Registry } from './config.ts'
import type { Runner } from './exec.ts'
import { withRegistryLocks } from './lock.ts'
import { classifyPath } from './registry-layout.ts'
import { tarOf } from './tar.ts'
import { commitStage, helperFailed, prepareStaging, SENTINEL, stageFiles, stageId } from './volume-files.ts'

/** A file of distribution's storage devreg makes itself, by its path relative to the volume (registry-layout.ts). */
export interface PlacedFile {
  path: string
  body: Buffer
}

/** Puts `files` into the registry's volume; a path outside distribution's layout is a bug in the caller. */
export async function placeFiles(run: Runner, registry: Registry, files: PlacedFile[], what: string): Promise<void> {
  const bad = files.find((f) => !classifyPath(f.path))
  if (bad) throw new Error(`${bad.path} is no file of distribution's storage`)
  await withRegistryLocks(run, [registry], what, () => stageAndCommit(run, registry, files))
}

async function stageAndCommit(run: Runner, registry: Registry, files: PlacedFile[]): Promise<void> {
  const id = stageId()
  const tar = await tarOf([...files, { path: SENTINEL, body: Buffer.alloc(0) }])
  await prepareStaging(run, registry)
  const helper = run.stream(stageFiles(registry, id), { stdin: true })
  try {
    await helper.write(tar)
    helper.end()
    await helper.done
  } catch (err) {
    throw helperFailed(registry, err as Error, 'nothing was placed')
  }
  await run.change(commitStage(registry, id), { input: '' })
}
