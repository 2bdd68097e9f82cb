// dev-registry warm against real caches with two fake upstreams (docker.io and
// ghcr.io): what it fetched is checked against the upstreams' access logs and
// the caches' storage, not against its own report.
import { expect, test } from 'bun:test'
import type { WarmSummary } from '../../scripts/lib/registries/warm.ts'
import { integration } from '../kit/fixture.ts'
import { layer, type PushedImage, pushImage, pushIndex } from '../kit/push.ts'
import { servedBlobBytes, storedBlobs } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const bytes = (image: PushedImage) => image.blobs.reduce((n, b) => n + b.size, 0)

integration('dev-registry warm', () => {
  const images: Record<'redis' | 'postgres' | 'tool' | 'amd64' | 'arm64', PushedImage> = {} as never
  const w = useWorld(
    {
      mirrors: [
        { host: 'docker.io', upstream: 'hub' },
        { host: 'ghcr.io', upstream: 'ghcr' },
      ],
      config: { images: ['redis:7-alpine', 'ghcr.io/org/tool:1'] },
    },
    async (w) => {
      const [hubApi, ghcrApi] = [w.upstreams.hub, w.upstreams.ghcr].map((u) => `http://127.0.0.1:${u.port}`)
      const created = new Date('2025-01-01T00:00:00Z')
      images.redis = await pushImage(hubApi, 'library/redis', '7-alpine', { layers: [layer(900_000), layer(300_000)], created })
      images.postgres = await pushImage(hubApi, 'library/postgres', '16-alpine', { layers: [layer(700_000)], created })
      images.tool = await pushImage(ghcrApi, 'org/tool', '1', { layers: [layer(600_000)], created })
      images.amd64 = await pushImage(hubApi, 'library/multi', null, { layers: [layer(500_000)], created })
      images.arm64 = await pushImage(hubApi, 'library/multi', null, {
        layers: [layer(400_000)],
        created,
        platform: { os: 'linux', architecture: 'arm64' },
      })
      await pushIndex(hubApi, 'library/multi', '1', [images.amd64, images.arm64], ['linux/amd64', 'linux/arm64'])
      expect((await w.devRegistry()).code).toBe(0)
    },
  )
  const { hub, ghcr } = w.upstreams
  const caches = { hub: w.caches[0], ghcr: w.caches[1] }
  const warm = async (...args: string[]) => {
    const r = await w.devRegistry('warm', '--json', ...args)
    return { ...r, summary: (r.stdout.trim() ? JSON.parse(r.stdout) : null) as WarmSummary }
  }
  /** Whether a cache stores every blob of an image. */
  const holds = async (cache: string, image: PushedImage) => {
    const stored = new Set(await storedBlobs(cache))
    return image.blobs.every((b) => stored.has(b.digest))
  }

  test("the config's images go through the cache of their host: redis:7-alpine to docker.io's, ghcr.io/org/tool:1 to ghcr.io's", async () => {
    const before = { hub: await servedBlobBytes(hub.name), ghcr: await servedBlobBytes(ghcr.name) }
    const redis = bytes(images.redis)
    const tool = bytes(images.tool)
    const r = await warm()
    expect(r.code).toBe(0)
    expect(r.summary.images.map((i) => [i.name, i.cache, i.fetchedBytes, i.cachedBytes])).toEqual([
      ['docker.io/library/redis:7-alpine', caches.hub.name, redis, 0],
      ['ghcr.io/org/tool:1', caches.ghcr.name, tool, 0],
    ])
    expect(r.stderr).toContain('2 warmed, 0 failed')
    // Stored on return, each in its own cache only.
    expect(await holds(caches.hub.name, images.redis)).toBe(true)
    expect(await holds(caches.ghcr.name, images.tool)).toBe(true)
    expect(await holds(caches.hub.name, images.tool)).toBe(false)
    // Each upstream served at least its own image (distribution 2.8 sends it twice).
    expect((await servedBlobBytes(hub.name)) - before.hub).toBeGreaterThanOrEqual(redis)
    expect((await servedBlobBytes(ghcr.name)) - before.ghcr).toBeGreaterThanOrEqual(tool)
  })

  test('a second warm fetches nothing: every byte counts as cached and no upstream serves a blob', async () => {
    const before = { hub: await servedBlobBytes(hub.name), ghcr: await servedBlobBytes(ghcr.name) }
    const r = await warm('redis:7-alpine', 'ghcr.io/org/tool:1')
    expect(r.code).toBe(0)
    expect(r.summary.fetchedBytes).toBe(0)
    expect(r.summary.cachedBytes).toBe(bytes(images.redis) + bytes(images.tool))
    expect(await servedBlobBytes(hub.name)).toBe(before.hub)
    expect(await servedBlobBytes(ghcr.name)).toBe(before.ghcr)
  })

  test('an image that cannot be pulled fails the run with exit 1 and its reason, and the others are still warmed', async () => {
    const r = await warm('postgres:16-alpine', 'library/nosuch:1')
    expect(r.code).toBe(1)
    expect(r.summary.warmed).toBe(1)
    expect(r.summary.images[1]).toMatchObject({ name: 'docker.io/library/nosuch:1', error: expect.stringContaining('not found (HTTP 404') })
    expect(r.stderr).toContain('1 warmed, 1 failed')
    expect(r.stderr).toContain('library/nosuch:1: not found')
    expect(await holds(caches.hub.name, images.postgres)).toBe(true)
  })

  test('from a multi-platform index only the platforms asked for are fetched', async () => {
    const arm = await warm('multi:1', '--platform', 'linux/arm64')
    expect(arm.code).toBe(0)
    expect(arm.summary.images[0].platforms).toEqual(['linux/arm64'])
    expect(arm.summary.fetchedBytes).toBe(bytes(images.arm64))
    expect(await holds(caches.hub.name, images.arm64)).toBe(true)
    expect(await holds(caches.hub.name, images.amd64)).toBe(false)

    // The config's platforms: amd64 is fetched now, arm64 is already there.
    w.config = w.configFile({ warm: { platforms: ['linux/amd64', 'linux/arm64'] } }, 'platforms.yaml')
    const both = await warm('multi:1')
    expect(both.code).toBe(0)
    expect(both.summary.images[0].platforms).toEqual(['linux/amd64', 'linux/arm64'])
    expect(both.summary.fetchedBytes).toBe(bytes(images.amd64))
    expect(both.summary.cachedBytes).toBe(bytes(images.arm64))
    expect(await holds(caches.hub.name, images.amd64)).toBe(true)
  })

  test('a platform the index does not offer fails that image and names the ones it has', async () => {
    const r = await warm('multi:1', '--platform', 'linux/s390x')
    expect(r.code).toBe(1)
    expect(r.summary.images[0].error).toBe('no linux/s390x in its index (it has linux/amd64, linux/arm64)')
  })

  test('without --json, progress and the tally are plain lines on stderr when it is not a terminal', async () => {
    const r = await w.devRegistry('warm', 'redis:7-alpine')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/✓ docker\.io\/library\/redis:7-alpine: 0 B fetched, 1\.1 MiB already cached, [\d.]+s\n/)
    expect(r.stderr).toContain('1 warmed, 0 failed: 0 B fetched from the upstreams')
    expect(r.stderr).not.toContain('\x1b[')
  })
})
