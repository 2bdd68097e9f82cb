// dev-registry report against real distribution caches, 3.1 (registry:3) and
// 2.8 (registry:2): its numbers are checked against pulls whose bytes are
// known, and against the upstream's own access log for what crossed the
// "internet".
import { expect, test } from 'bun:test'
import type { CacheReport } from '../../scripts/lib/registries/cache-report.ts'
import { integration } from '../kit/fixture.ts'
import { REGISTRY_LAYOUTS } from '../kit/images.ts'
import { layer, type PushedImage, pushImage } from '../kit/push.ts'
import { pull, servedBlobBytes, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

for (const { layout, image: registryImage } of REGISTRY_LAYOUTS)
  integration(`dev-registry report (${layout})`, () => {
    let image: PushedImage
    let size: number
    const w = useWorld({ mirrors: [{ host: 'docker.io', image: registryImage }] }, async (w) => {
      image = await pushImage(`http://127.0.0.1:${w.upstream.port}`, 'library/app', '1', {
        layers: [layer(1_000_000), layer(250_000)],
        created: new Date('2025-01-01T00:00:00Z'),
      })
      size = image.blobs.reduce((n, b) => n + b.size, 0)
      expect((await w.devRegistry()).code).toBe(0)
    })
    const { upstream, cache } = w
    const report = async (...args: string[]) => {
      const r = await w.devRegistry('report', ...args)
      if (r.code !== 0) throw new Error(r.stderr)
      return args.includes('--json') ? (JSON.parse(r.stdout).caches as CacheReport[]) : r.stdout
    }
    const pullThrough = async () => {
      expect((await pull(`127.0.0.1:${cache.port}/library/app:1`)).ok).toBe(true)
      await waitStored(
        cache.name,
        image.blobs.map((b) => b.digest),
      )
    }

    test('a cold pull: every blob from the upstream, and FETCHED equals what the upstream says it sent', async () => {
      const before = await servedBlobBytes(upstream.name)
      await pullThrough()
      const sent = (await servedBlobBytes(upstream.name)) - before
      const [r] = (await report('--json')) as CacheReport[]
      expect(r).toMatchObject({
        name: cache.name,
        state: 'running',
        version: layout === 'registry:3' ? 'v3.1.1' : expect.stringMatching(/^2\.8/),
      })
      expect(r.stats).toMatchObject({ blobRequests: 3, hits: 0, misses: 3, servedBytes: size, fetched: 3, fetchedBytes: size })
      // Measured independently: distribution 2.8 sends each missed blob twice, 3 once.
      expect(sent).toBe(layout === 'registry:3' ? size : 2 * size)
      expect(r.stats?.upstreamBytes).toBe(sent)
      expect(r.stats?.savedBytes).toBe(size - sent)
    })

    test('a warm pull since a given time: every blob from the cache, nothing from the upstream', async () => {
      const since = new Date().toISOString()
      const before = await servedBlobBytes(upstream.name)
      await pullThrough()
      expect(await servedBlobBytes(upstream.name)).toBe(before)
      const [r] = (await report('--json', '--since', since)) as CacheReport[]
      expect(r.since).toBe(since)
      expect(r.stats).toMatchObject({
        blobRequests: 3,
        hits: 3,
        misses: 0,
        servedBytes: size,
        fetched: 0,
        upstreamBytes: 0,
        savedBytes: size,
      })
    })

    test('the table: both pulls since the cache started, a 50% hit ratio, and where each number comes from', async () => {
      const text = (await report()) as string
      const row = text.split('\n')[1].split(/\s{2,}/)
      expect(row.slice(0, 2)).toEqual([cache.name, 'running'])
      expect(row.slice(4, 8)).toEqual(['6', '3', '3', '50%'])
      expect(text).toContain('`response completed`')
      expect(text).toContain(layout === 'registry:3' ? "the cache's volume (a layer link's mtime" : '`Adding new scheduler entry`')
      expect(text).toMatch(/log kept from \d{4}-\d\d-\d\d/)
    })

    test('a cache named by its mirror host or its container name is the one reported; the local registry is refused', async () => {
      for (const name of ['docker.io', cache.name])
        expect(((await report('--json', name)) as CacheReport[]).map((r) => r.name)).toEqual([cache.name])
      await expect(report('local')).rejects.toThrow('local is the local registry: report covers caches only')
    })
  })
