// One run at a time, with real scripts on real Docker: two `dev-registry up`
// at once, `up` during `registry-gc --apply`, and a lock its holder left behind.
// The scripts keep their locks under the test's own XDG_RUNTIME_DIR.
import { beforeAll, expect, test } from 'bun:test'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { loadConfig } from '../../scripts/lib/core/config.ts'
import { type Holder, lockNames } from '../../scripts/lib/core/lock.ts'
import { integration, type ScriptResult } from '../kit/fixture.ts'
import { layer, pushImage, tagsOf } from '../kit/push.ts'
import { useWorld } from '../kit/world.ts'

const WAITING = /waiting for (.+) \(pid \d+, since \d\d:\d\d:\d\d\) to finish with this config \((.+)\) …/

integration('one run at a time', () => {
  const w = useWorld()
  const { fx, registry, cache } = w
  const runtime = join(fx.dir, 'run')
  const locks = join(runtime, 'devreg')
  const env = { XDG_RUNTIME_DIR: runtime }
  const up = () => w.run('dev-registry', [], { env })
  beforeAll(() => mkdirSync(runtime, { mode: 0o700 }))

  /** Runs a script and notes when it ended. */
  const timed = async (p: Promise<ScriptResult>) => ({ ...(await p), ended: performance.now() })

  /** The containers this file's config names, besides the upstream: name → state. */
  const registryContainers = async () => {
    const out = await $({ quiet: true })`docker ps -a --format ${'{{.Names}} {{.State}}'}`
    return out.stdout
      .split('\n')
      .filter((l) => l.startsWith(fx.prefix) && !l.startsWith(`${fx.prefix}upstream `))
      .sort()
  }

  test('two `dev-registry up` started together, ten times: both exit 0 and one set of containers is left each time', async () => {
    const expected = [`${cache.name} running`, `${registry.name} running`].sort()
    const waited: string[] = []
    for (let round = 0; round < 10; round++) {
      const runs = await Promise.all([up(), up()])
      for (const r of runs) expect(r.code, `round ${round}: ${r.stderr}`).toBe(0)
      expect(await registryContainers(), `round ${round}`).toEqual(expected)
      expect(readdirSync(locks), `round ${round}: locks left behind`).toEqual([])
      for (const r of runs) {
        const m = WAITING.exec(r.stderr)
        if (m) waited.push(`round ${round}: ${m[0]}`)
      }
      await $({ quiet: true })`docker rm -f ${registry.name} ${cache.name}`
    }
    // The lock was really contended: a run that started second said for whom it waited.
    expect(waited.length).toBeGreaterThan(0)
    expect(waited[0]).toMatch(/waiting for dev-registry up .* to finish with this config \(registry dt/)
  })

  test('`dev-registry up` during `registry-gc --apply` waits for it, and gc reports the registry answering again', async () => {
    const first = await up()
    expect(first.code, first.stderr).toBe(0)
    // Something to delete, so gc stops the registry, garbage-collects and restarts it.
    const local = `http://127.0.0.1:${registry.port}`
    for (const [tag, days] of [
      ['a', 3],
      ['b', 2],
      ['c', 1],
    ] as const)
      await pushImage(local, 'lock/app', tag, { layers: [layer(100_000)], created: new Date(Date.now() - days * 86_400_000) })

    const gc = timed(w.run('registry-gc', ['--keep-last', '1', '--repo', 'lock/app', '--apply', '--yes'], { env }))
    // Start `up` once gc holds the lock: deterministic, however fast gc is.
    const lockFile = join(locks, `registry-${registry.name}.lock`)
    const deadline = Date.now() + 30_000
    for (;;) {
      const holder = (() => {
        try {
          return JSON.parse(readFileSync(lockFile, 'utf8')) as Holder
        } catch {
          return null
        }
      })()
      if (holder?.what === 'registry-gc --apply') break
      if (Date.now() > deadline) throw new Error(`registry-gc never took ${lockFile}: ${JSON.stringify(await gc)}`)
      await Bun.sleep(20)
    }
    const second = timed(up())
    const [g, u] = await Promise.all([gc, second])

    expect(g.code, g.stderr).toBe(0)
    expect(g.stderr).toContain(`${registry.name} restarted and answers GET /v2/ again`)
    expect(u.code, u.stderr).toBe(0)
    expect(u.stderr).toMatch(/waiting for registry-gc --apply \(pid \d+, since \d\d:\d\d:\d\d\) to finish with this config/)
    // up went on only after gc had finished, and found nothing left to do.
    expect(u.ended).toBeGreaterThan(g.ended)
    expect(u.stderr).toContain('nothing to do')
    expect(await tagsOf(local, 'lock/app')).toEqual(['c'])
    expect(readdirSync(locks)).toEqual([])
  })

  test('a lock whose holder is gone is taken over without waiting', async () => {
    const dead = Bun.spawn(['true'])
    await dead.exited
    const holder: Holder = { pid: dead.pid, what: 'dev-up', command: 'dev-up.ts', started: new Date().toISOString() }
    for (const name of lockNames(loadConfig({ configPath: w.config, env: {} }), 'registries'))
      await Bun.write(join(locks, `${name}.lock`), JSON.stringify(holder))
    const started = performance.now()
    const r = await up()
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).not.toContain('waiting for')
    expect(r.stderr).toContain(`dev-up (pid ${dead.pid}) left its lock behind without running any more: taking it over`)
    expect(performance.now() - started).toBeLessThan(30_000)
    expect(readdirSync(locks)).toEqual([])
  })
})
