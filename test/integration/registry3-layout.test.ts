// registry:3 (distribution v3) keeps its config in /etc/distribution,
// registry:2 (2.8) in /etc/docker/registry. On a config that mixes them, the
// cache entrypoint and registry-gc find each image's own config.
import { expect, test } from 'bun:test'
import { integration } from '../kit/fixture.ts'
import { REGISTRY2_IMAGE, REGISTRY3_IMAGE } from '../kit/images.ts'
import { layer, pushImage } from '../kit/push.ts'
import { cacheMode, eventually, pull } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

integration('a local registry laid out like registry:2 and a cache laid out like registry:3', () => {
  const w = useWorld(
    { registryImage: REGISTRY2_IMAGE, mirrors: [{ host: 'docker.io', cache: 'cache', image: REGISTRY3_IMAGE }] },
    async (w) => {
      await pushImage(`http://127.0.0.1:${w.upstream.port}`, 'library/app', '1', { layers: [layer(50_000)], created: new Date() })
      const up = await w.devRegistry()
      expect(up.code, up.stderr).toBe(0)
    },
  )
  const { registry, cache } = w
  const stats = async (name: string) => JSON.parse((await w.run('registry-gc', ['--stats', '--json', '--registry', name])).stdout)[0]
  const gc = (name: string, ...args: string[]) =>
    w.run('registry-gc', ['--older-than', '0s', '--registry', name, '--apply', '--yes', ...args])

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
