// The per-config lock between processes: several runs racing for a dead
// holder's lock, and a run ended by SIGTERM releasing it.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Holder } from '../../scripts/lib/core/lock.ts'

const LOCK_TS = join(import.meta.dir, '../../scripts/lib/core/lock.ts')
const CONFIG_TS = join(import.meta.dir, '../../scripts/lib/core/config.ts')

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'devreg-lock-'))
})
afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A lock file whose holder has exited. */
async function deadHolder(): Promise<string> {
  const p = Bun.spawn(['true'])
  await p.exited
  return JSON.stringify({ pid: p.pid, what: 'dev-up', command: 'dev-up.ts', started: new Date().toISOString() } satisfies Holder)
}

/** A script that takes the lock in its own process; `body` runs while it is held. */
function contender(body: string): string {
  const path = join(dir, `contender-${Math.random().toString(16).slice(2)}.ts`)
  writeFileSync(
    path,
    `import { appendFileSync } from 'node:fs'
import { resolveConfig } from ${JSON.stringify(CONFIG_TS)}
import { withLock } from ${JSON.stringify(LOCK_TS)}
const config = resolveConfig(${JSON.stringify({ cluster: { name: 'unit' }, mirrors: [] })})
const dir = ${JSON.stringify(join(dir, 'locks'))}
const log = ${JSON.stringify(join(dir, 'log'))}
await withLock({ dryRun: false, env: {}, uid: process.getuid?.() ?? null }, config, 'contender', async () => { ${body} }, { dir, pollMs: 5, say: () => {} })
`,
  )
  return path
}

describe('between processes', () => {
  test('six runs racing for a dead holder’s lock take it one at a time', async () => {
    const locks = join(dir, 'locks')
    Bun.spawnSync(['mkdir', '-m', '700', locks])
    // The first name in lock order, so every run meets the dead holder at once.
    writeFileSync(join(locks, 'cluster-kind-unit.lock'), await deadHolder())
    const script = contender(`appendFileSync(log, 'in ' + process.pid + '\\n')
  await new Promise((r) => setTimeout(r, 50))
  appendFileSync(log, 'out ' + process.pid + '\\n')`)
    const runs = Array.from({ length: 6 }, () => Bun.spawn([process.execPath, script], { stderr: 'pipe' }))
    const codes = await Promise.all(runs.map((p) => p.exited))
    expect(codes).toEqual([0, 0, 0, 0, 0, 0])
    const events = readFileSync(join(dir, 'log'), 'utf8').trim().split('\n')
    expect(events.length).toBe(12)
    for (let i = 0; i < events.length; i += 2) {
      const [, pid] = events[i].split(' ')
      expect([events[i], events[i + 1]]).toEqual([`in ${pid}`, `out ${pid}`])
    }
    expect(readdirSync(locks)).toEqual([])
  })

  test('SIGTERM releases the lock and still ends the process by that signal', async () => {
    const script = contender(`appendFileSync(log, 'held\\n')
  await new Promise((r) => setTimeout(r, 60_000))`)
    const p = Bun.spawn([process.execPath, script])
    const deadline = Date.now() + 10_000
    while (!readdirSync(dir).includes('log') && Date.now() < deadline) await sleep(20)
    expect(readdirSync(join(dir, 'locks')).length).toBe(3)
    p.kill('SIGTERM')
    await p.exited
    expect(p.signalCode).toBe('SIGTERM')
    expect(readdirSync(join(dir, 'locks'))).toEqual([])
  })
})
