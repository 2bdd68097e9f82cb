// registry:3 (distribution v3) keeps its config in /etc/distribution,
// registry:2 (2.8) in /etc/docker/registry. On a config that mixes them, the
// cache entrypoint and registry-gc find each image's own config.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { Fixture, freePort, integration, runScript, testRegistry } from '../kit/fixture.ts'
import { REGISTRY2_IMAGE, REGISTRY3_IMAGE } from '../kit/images.ts'
import { layer, pushImage } from '../kit/push.ts'
import { cacheMode, eventually, pull } from '../kit/registry.ts'

integration('a local registry laid out like registry:2 and a cache laid out like registry:3', () => {
  const fx = new Fixture()
  let config: string
  let registry: Awaited<ReturnType<typeof testRegistry>>
  let cache: { name: string; port: number }
  const stats = async (name: string) =>
    JSON.parse((await runScript('registry-gc', ['--config', config, '--stats', '--json', '--registry', name])).stdout)[0]
  const gc = (name: string, ...args: string[]) =>
    runScript('registry-gc', ['--config', config, '--older-than', '0s', '--registry', name, '--apply', '--yes', ...args])

  beforeAll(async () => {
    const network = await fx.network('net')
    const upstream = await fx.upstream(network)
    await pushImage(`http://127.0.0.1:${upstream.port}`, 'library/app', '1', { layers: [layer(50_000)], created: new Date() })
    registry = { ...(await testRegistry(fx)), image: REGISTRY2_IMAGE }
    cache = { name: fx.name('cache'), port: await freePort() }
    config = fx.config({
      cluster: { network },
      registry,
      mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port, image: REGISTRY3_IMAGE }],
    })
    const up = await runScript('dev-registry', ['--config', config])
    expect(up.code, up.stderr).toBe(0)
  })
  afterAll(() => fx.cleanup())

  test('the cache finds /etc/distribution/config.yml, pulls through, and registry-gc evicts from it', async () => {
    expect(await cacheMode(cache.name)).toBe('proxy')
    expect((await pull(`127.0.0.1:${cache.port}/library/app:1`)).ok).toBe(true)
    await eventually('the cache to store what it served', async () => (await stats(cache.name)).blobs === 2)
    const r = await gc(cache.name)
    expect(r.code, r.stderr).toBe(0)
    expect((await stats(cache.name)).repositories).toBe(0)
  })

  test('registry-gc finds /etc/docker/registry/config.yml in the local registry and collects from it', async () => {
    await pushImage(`http://127.0.0.1:${registry.port}`, 'app', 'dev', {
      layers: [layer(40_000)],
      created: new Date('2020-01-01T00:00:00Z'),
    })
    expect((await stats(registry.name)).repositories).toBe(1)
    const r = await gc(registry.name, '--keep-last', '0')
    expect(r.code, r.stderr).toBe(0)
    expect((await stats(registry.name)).blobs).toBe(0)
  })
})
