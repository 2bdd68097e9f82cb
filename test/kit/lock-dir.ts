// devreg's locks live in $XDG_RUNTIME_DIR/devreg (lock.ts lockDir): tests that
// run code which takes them point that at a directory of their own, so they
// never wait for, or leave anything beside, the machine's real runs.
import { afterAll, beforeAll } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** For the tests of the calling file: returns where the lock files go. */
export function privateLockDir(): () => string {
  let saved: string | undefined
  let dir = ''
  beforeAll(() => {
    saved = process.env.XDG_RUNTIME_DIR
    dir = mkdtempSync(join(tmpdir(), 'devreg-locks-'))
    process.env.XDG_RUNTIME_DIR = dir
  })
  afterAll(() => {
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR
    else process.env.XDG_RUNTIME_DIR = saved
    rmSync(dir, { recursive: true, force: true })
  })
  return () => join(dir, 'devreg')
}
