// `just postcreate` as a devcontainer runs it, with the real scripts and
// registries: silent and idempotent when all is well, one line when not.
import { beforeAll, expect, test } from 'bun:test'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { integration, ROOT } from '../kit/fixture.ts'
import { containerId } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

integration('just postcreate', () => {
  // No such cluster: node checks are skipped; the network exists, so the registries join it.
  const w = useWorld({ mirrors: [{ host: 'docker.io', cache: 'cache' }] })
  const { fx, registry, cache } = w
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

  beforeAll(() => {
    mkdirSync(bin)
    writeFileSync(join(bin, 'npm'), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  })

  test('brings up the registries and passes preflight without a word; a second run changes nothing', async () => {
    expect(await postcreate(w.config)).toEqual({ code: 0, stdout: '', stderr: '' })
    const ids = [await containerId(registry.name), await containerId(cache.name)]
    expect(await postcreate(w.config)).toEqual({ code: 0, stdout: '', stderr: '' })
    expect([await containerId(registry.name), await containerId(cache.name)]).toEqual(ids)
  })

  test("a failing preflight is one line naming the step, preflight's own summary and the log", async () => {
    const missing = `${fx.prefix}missing.invalid`
    const config = w.configFile({ hosts: [{ name: missing, address: '10.88.0.1' }] }, 'missing.yaml')
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
