// The per-config lock on temp directories: taking it, waiting for a live
// holder, taking over a dead one, and releasing it on return and on a throw
// (between processes, and on SIGTERM: test/cli/lock.test.ts).
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { type Holder, lockDir, lockNames, takeOver, withLock } from '../../scripts/lib/core/lock.ts'

const config = resolveConfig({ cluster: { name: 'unit' }, mirrors: [{ host: 'docker.io', upstream: 'https://registry-1.docker.io' }] })
const LOCAL = 'registry-kind-registry.lock'

/** A run that changes things (not --dry-run): it takes locks. */
const live = { dryRun: false, env: {}, uid: process.getuid?.() ?? null }
let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'devreg-lock-'))
})
afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

const files = () => readdirSync(dir).sort()
const holderText = (pid: number, what = 'dev-up') =>
  JSON.stringify({ pid, what, command: `${what}.ts`, started: new Date().toISOString() } satisfies Holder)

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const p = Bun.spawn(['true'])
  await p.exited
  return p.pid
}

describe('lock names and place', () => {
  test('one per cluster, network and registry container, sorted', () => {
    expect(lockNames(config)).toEqual(['cluster-kind-unit', 'network-kind', 'registry-kind-cache-docker-io', 'registry-kind-registry'])
  })

  test('runs that leave the cluster alone lock only the registries', () => {
    expect(lockNames(config, 'registries')).toEqual(['registry-kind-cache-docker-io', 'registry-kind-registry'])
  })

  test("the runtime directory, else a directory under the temp dir named for the runner's user", () => {
    expect(lockDir({ env: { XDG_RUNTIME_DIR: '/run/user/1000' }, uid: 1000 })).toBe('/run/user/1000/devreg')
    expect(lockDir({ env: {}, uid: 1234 })).toBe(join(tmpdir(), 'devreg-1234'))
    expect(lockDir({ env: {}, uid: null })).toBe(join(tmpdir(), 'devreg-user'))
  })
})

describe('withLock', () => {
  test('holds a file per name recording who and since when while fn runs, and removes them after', async () => {
    const during = await withLock(
      live,
      config,
      'dev-registry up',
      async () => {
        const holder = JSON.parse(readFileSync(join(dir, LOCAL), 'utf8')) as Holder
        return { names: files(), holder }
      },
      { dir },
    )
    expect(during.names).toEqual(lockNames(config).map((n) => `${n}.lock`))
    expect(during.holder).toMatchObject({ pid: process.pid, what: 'dev-registry up' })
    expect(Date.now() - Date.parse(during.holder.started)).toBeLessThan(5000)
    expect(typeof during.holder.command).toBe('string')
    expect(files()).toEqual([])
  })

  test('waits for a live holder, says once for whom, reminds, and goes ahead once it is released', async () => {
    const holder = Bun.spawn(['sleep', '30'])
    writeFileSync(join(dir, LOCAL), holderText(holder.pid))
    // The test waits for the lines as they are said, never for a time.
    const lines: string[] = []
    let heard = () => {}
    const saidTwice = new Promise<void>((resolve) => {
      heard = () => lines.length === 2 && resolve()
    })
    let ran = false
    const done = withLock(
      live,
      config,
      'dev-registry up',
      async () => {
        ran = true
      },
      {
        dir,
        pollMs: 5,
        remindMs: 20,
        say: (line) => {
          lines.push(line)
          heard()
        },
      },
    )
    try {
      await saidTwice
      expect(ran).toBe(false)
      expect(lines[0]).toMatch(
        new RegExp(
          `^waiting for dev-up \\(pid ${holder.pid}, since \\d\\d:\\d\\d:\\d\\d\\) to finish with this config \\(registry kind-registry\\) …$`,
        ),
      )
      expect(lines[1]).toStartWith(`still waiting for dev-up (pid ${holder.pid}`)
    } finally {
      // Released whatever happened above, so the waiting run ends with this test.
      rmSync(join(dir, LOCAL), { force: true })
      await done
      holder.kill()
    }
    expect(ran).toBe(true)
    expect(lines.slice(1).every((l) => l.startsWith('still waiting for dev-up'))).toBe(true)
    expect(files()).toEqual([])
  })

  test('a holder whose process is gone is taken over at once, without waiting', async () => {
    const pid = await deadPid()
    writeFileSync(join(dir, LOCAL), holderText(pid))
    const lines: string[] = []
    const holder = await withLock(live, config, 'dev-up', async () => JSON.parse(readFileSync(join(dir, LOCAL), 'utf8')) as Holder, {
      dir,
      say: (l) => lines.push(l),
    })
    expect(holder.pid).toBe(process.pid)
    expect(lines).toEqual([`dev-up (pid ${pid}) left its lock behind without running any more: taking it over`])
    expect(files()).toEqual([])
  })

  test('a file that is no devreg lock is replaced', async () => {
    writeFileSync(join(dir, LOCAL), 'not json')
    const lines: string[] = []
    await withLock(live, config, 'dev-up', async () => {}, { dir, say: (l) => lines.push(l) })
    expect(lines).toEqual([`${join(dir, LOCAL)} is not a devreg lock: replacing it`])
  })

  test('is released when fn throws, and the error goes on', async () => {
    const boom = withLock(
      live,
      config,
      'dev-up',
      async () => {
        expect(files().length).toBe(4)
        throw new Error('boom')
      },
      { dir },
    )
    await expect(boom).rejects.toThrow('boom')
    expect(files()).toEqual([])
  })

  test('a nested call in the same process does not wait for itself', async () => {
    const lines: string[] = []
    const inner = await withLock(
      live,
      config,
      'dev-up',
      () => withLock(live, config, 'dev-registry up', async () => 'inner', { dir, pollMs: 10 }),
      {
        dir,
        say: (l) => lines.push(l),
      },
    )
    expect(inner).toBe('inner')
    expect(lines).toEqual([])
    expect(files()).toEqual([])
  })

  test('under --dry-run no lock is taken', async () => {
    expect(await withLock({ ...live, dryRun: true }, config, 'dev-up', async () => files(), { dir })).toEqual([])
  })
})

describe('taking over a dead holder', () => {
  test('removes the file while it still holds the dead holder', async () => {
    const stale = holderText(await deadPid())
    writeFileSync(join(dir, LOCAL), stale)
    expect(takeOver(join(dir, LOCAL), stale)).toBe(true)
    expect(files()).toEqual([])
  })

  test('leaves a lock another run took since the dead holder was read', async () => {
    const stale = holderText(await deadPid())
    const fresh = holderText(process.pid)
    writeFileSync(join(dir, LOCAL), fresh)
    expect(takeOver(join(dir, LOCAL), stale)).toBe(false)
    expect(readFileSync(join(dir, LOCAL), 'utf8')).toBe(fresh)
    expect(files()).toEqual([LOCAL])
  })

  test('backs off while another live run is taking it over', async () => {
    const stale = holderText(await deadPid())
    writeFileSync(join(dir, LOCAL), stale)
    writeFileSync(join(dir, `${LOCAL}.takeover`), String(process.pid))
    expect(takeOver(join(dir, LOCAL), stale)).toBe(false)
    expect(files()).toEqual([LOCAL, `${LOCAL}.takeover`])
  })

  test('clears the claim of a taker that died, then takes over on the next look', async () => {
    const stale = holderText(await deadPid())
    writeFileSync(join(dir, LOCAL), stale)
    writeFileSync(join(dir, `${LOCAL}.takeover`), String(await deadPid()))
    expect(takeOver(join(dir, LOCAL), stale)).toBe(false)
    expect(files()).toEqual([LOCAL])
    expect(takeOver(join(dir, LOCAL), stale)).toBe(true)
    expect(files()).toEqual([])
  })
})
