// `just postcreate` as a devcontainer runs it, with the real scripts and
// registries: silent and idempotent when all is well, one line when not.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { Fixture, freePort, integration, ROOT, testRegistry } from '../kit/fixture.ts'
import { containerId } from '../kit/registry.ts'

integration('just postcreate', () => {
  const fx = new Fixture()
  let registry: Awaited<ReturnType<typeof testRegistry>>
  let cache: { name: string; port: number }
  let doc: Record<string, unknown>
  const bin = join(fx.dir, 'bin')

  const postcreate = async (config: string) => {
    const r = await $({
      nothrow: true,
      quiet: true,
      cwd: ROOT,
      // npm is a stand-in: a stale node_modules must not send the test to the registry.
      env: { ...process.env, DEVREG_CONFIG: config, PATH: `${bin}:${process.env.PATH}`, TMPDIR: fx.dir },
    })`${join(ROOT, 'node_modules/.bin/just')} postcreate`
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
  }

  beforeAll(async () => {
    mkdirSync(bin)
    writeFileSync(join(bin, 'npm'), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
    const network = await fx.network('kind')
    const upstream = await fx.upstream(network)
    registry = await testRegistry(fx)
    cache = { name: fx.name('cache'), port: await freePort() }
    doc = {
      // No such cluster: node checks are skipped; the network exists, so the registries join it.
      cluster: { provider: 'kind', name: fx.name('none'), network },
      registry,
      mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port }],
    }
  })
  afterAll(() => fx.cleanup())

  test('brings up the registries and passes preflight without a word; a second run changes nothing', async () => {
    const config = fx.config(doc)
    expect(await postcreate(config)).toEqual({ code: 0, stdout: '', stderr: '' })
    const ids = [await containerId(registry.name), await containerId(cache.name)]
    expect(await postcreate(config)).toEqual({ code: 0, stdout: '', stderr: '' })
    expect([await containerId(registry.name), await containerId(cache.name)]).toEqual(ids)
  })

  test("a failing preflight is one line naming the step, preflight's own summary and the log", async () => {
    const missing = `${fx.prefix}missing.invalid`
    const config = fx.config({ ...doc, hosts: [{ name: missing, address: '10.88.0.1' }] }, 'missing.yaml')
    const r = await postcreate(config)
    expect(r.code).not.toBe(0)
    expect(r.stdout).toBe('')
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^postcreate: preflight failed: \d+ of \d+ checks failed \(/)
    expect(r.stderr).toContain(
      `checks failed (resolve ${missing}); the report gives the fix for each (full output: ${fx.dir}/devreg-postcreate.log)`,
    )
  })
})
