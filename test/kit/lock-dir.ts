// devreg's locks live in $XDG_RUNTIME_DIR/devreg (lock.ts lockDir, read from
// the runner's environment): tests that run code which takes them give their
// runner a directory of their own, so they never wait for, or leave anything
// beside, the machine's real runs.
import { afterAll, beforeAll } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** For the tests of the calling file: the environment to run with, and where the lock files then go. */
export function privateLockDir(): { env: () => Record<string, string>; locks: () => string } {
  let dir = ''
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'devreg-locks-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return { env: () => ({ XDG_RUNTIME_DIR: dir }), locks: () => join(dir, 'devreg') }
}
