// registry:3 keeps its config in /etc/distribution, registry:2 in
// /etc/docker/registry. No distribution 3 binary can be had offline, so this
// checks the part devreg owns: a cache and registry-gc on an image laid out
// like registry:3 find the config there.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { Fixture, freePort, integration, runScript, testRegistry } from '../support/fixture.ts'
import { REGISTRY_IMAGE } from '../support/images.ts'
import { layer, pushImage } from '../support/push.ts'
import { cacheMode, eventually, pull } from '../support/registry.ts'

const V3_LAYOUT = 'devreg-test/registry-v3-layout:1'

integration('an image laid out like registry:3', () => {
  const fx = new Fixture()
  let config: string
  let cache: { name: string; port: number }

  beforeAll(async () => {
    const ctx = mkdtempSync(join(tmpdir(), 'devreg-v3-layout-'))
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM ${REGISTRY_IMAGE}\nRUN mkdir -p /etc/distribution && mv /etc/docker/registry/config.yml /etc/distribution/config.yml\n`,
    )
    await $({ quiet: true })`docker build --quiet --tag ${V3_LAYOUT} ${ctx}`
    const network = await fx.network('net')
    const upstream = await fx.upstream(network)
    await pushImage(`http://127.0.0.1:${upstream.port}`, 'library/app', '1', { layers: [layer(50_000)], created: new Date() })
    cache = { name: fx.name('cache'), port: await freePort() }
    config = fx.config({
      cluster: { network },
      registry: await testRegistry(fx),
      mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port, image: V3_LAYOUT }],
    })
    const up = await runScript('dev-registry', ['--config', config])
    expect(up.code, up.stderr).toBe(0)
  })
  afterAll(() => fx.cleanup())

  test('the cache finds /etc/distribution/config.yml, pulls through, and registry-gc evicts from it', async () => {
    expect(await cacheMode(cache.name)).toBe('proxy')
    expect((await pull(`127.0.0.1:${cache.port}/library/app:1`)).ok).toBe(true)
    const stats = async () =>
      JSON.parse((await runScript('registry-gc', ['--config', config, '--stats', '--json', '--registry', cache.name])).stdout)[0]
    await eventually('the cache to store what it served', async () => (await stats()).blobs === 2)
    const gc = await runScript('registry-gc', ['--config', config, '--older-than', '0s', '--registry', cache.name, '--apply', '--yes'])
    expect(gc.code, gc.stderr).toBe(0)
    expect((await stats()).repositories).toBe(0)
  })
})
