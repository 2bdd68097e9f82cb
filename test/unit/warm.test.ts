// Warming decisions that need no registry: which cache an image goes to, which
// platforms of an index are fetched, how failures and the tally read.
import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { UserError } from '../../scripts/lib/core/log.ts'
import { RegistryError } from '../../scripts/lib/registries/distribution.ts'
import {
  failureReason,
  hostPlatform,
  type Progress,
  routeImages,
  samePlatform,
  selectPlatforms,
  warmImages,
} from '../../scripts/lib/registries/warm.ts'
import { summaryLines, ttyProgress } from '../../scripts/lib/registries/warm-output.ts'
import { fakeRunner, http, on, v2Up } from '../kit/fake-runner.ts'
import { FakeVolume } from '../kit/fake-volume.ts'

const config = resolveConfig({
  mirrors: [
    { host: 'docker.io', upstream: 'http://up:5000' },
    { host: 'ghcr.io', upstream: 'http://up2:5000' },
    { host: 'registry.example.com:5443', upstream: 'http://up3:5000' },
  ],
})

const usageError = (fn: () => unknown): UserError => {
  try {
    fn()
  } catch (err) {
    if (err instanceof UserError) return err
    throw err
  }
  throw new Error('no UserError thrown')
}

describe('routing an image to its cache', () => {
  test.each([
    ['redis:7-alpine', 'docker.io/library/redis:7-alpine', 'kind-cache-docker-io'],
    ['grafana/loki:2.9.3', 'docker.io/grafana/loki:2.9.3', 'kind-cache-docker-io'],
    ['index.docker.io/library/postgres:16', 'docker.io/library/postgres:16', 'kind-cache-docker-io'],
    ['docker.io/library/busybox', 'docker.io/library/busybox:latest', 'kind-cache-docker-io'],
    ['ghcr.io/org/app:1.2', 'ghcr.io/org/app:1.2', 'kind-cache-ghcr-io'],
    ['registry.example.com:5443/team/tool:3', 'registry.example.com:5443/team/tool:3', 'kind-cache-registry-example-com-5443'],
    [`redis@sha256:${'a'.repeat(64)}`, `docker.io/library/redis@sha256:${'a'.repeat(64)}`, 'kind-cache-docker-io'],
  ])('%s is pulled as %s through %s', (image, name, cache) => {
    const [t] = routeImages(config, [image])
    expect(t.name).toBe(name)
    expect(t.cache.name).toBe(cache)
  })

  test('an image listed twice is warmed once', () => {
    expect(routeImages(config, ['redis:7', 'redis:7'])).toHaveLength(1)
  })

  test('an image whose host has no cache is a usage error naming the image, the host and the fix', () => {
    const err = usageError(() => routeImages(config, ['redis:7', 'quay.io/org/x:1', 'localhost:5001/app:dev']))
    expect(err.exitCode).toBe(2)
    expect(err.message).toContain('quay.io/org/x:1: no cache for quay.io (caches: docker.io, ghcr.io, registry.example.com:5443)')
    expect(err.message).toContain('add a mirror with host quay.io')
    expect(err.message).toContain('localhost:5001/app:dev: no cache for localhost:5001')
  })

  test('something that is not an image reference is a usage error', () => {
    const err = usageError(() => routeImages(config, ['redis 7']))
    expect(err.exitCode).toBe(2)
    expect(err.message).toContain('"redis 7" is not an image reference')
  })
})

describe('platforms', () => {
  test.each([
    ['x64', 'linux/amd64'],
    ['arm64', 'linux/arm64'],
    ['arm', 'linux/arm/v7'],
  ])('a %s host warms %s', (arch, platform) => expect(hostPlatform(arch)).toBe(platform))

  test.each([
    ['linux/arm64', 'linux/arm64/v8', true],
    ['linux/arm', 'linux/arm/v7', true],
    ['linux/arm/v6', 'linux/arm/v7', false],
    ['linux/amd64', 'linux/arm64', false],
  ])('%s and %s are the same platform: %p', (a, b, same) => expect(samePlatform(a, b)).toBe(same))

  const index = {
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { digest: 'sha256:amd', size: 1, platform: { os: 'linux', architecture: 'amd64' } },
      { digest: 'sha256:arm', size: 1, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { digest: 'sha256:att', size: 1, platform: { os: 'unknown', architecture: 'unknown' } },
    ],
  }

  test('only the wanted platforms are chosen from an index, never its attestations', () => {
    expect(selectPlatforms(index, ['linux/arm64']).chosen.map((d) => d.digest)).toEqual(['sha256:arm'])
    expect(selectPlatforms(index, ['linux/amd64', 'linux/arm64']).chosen.map((d) => d.digest)).toEqual(['sha256:amd', 'sha256:arm'])
  })

  test('a platform the index lacks is reported', () => {
    expect(selectPlatforms(index, ['linux/amd64', 'linux/s390x'])).toEqual({ chosen: [index.manifests[0]], missing: ['linux/s390x'] })
  })
})

describe('failures and the tally', () => {
  const cache = config.registries[1]

  test.each([
    [
      'a 404 says not found',
      404,
      '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
      false,
      'not found (HTTP 404 manifest unknown)',
    ],
    ['a 404 from an offline cache says why', 404, '', true, 'is offline (its upstream http://up:5000 does not answer)'],
    ['a 401 points at credentials', 401, '', false, 'it is private and needs credentials on the docker.io mirror'],
    ['a refused connection names the cache', null, 'ECONNREFUSED', false, 'kind-cache-docker-io did not answer (ECONNREFUSED)'],
  ] as const)('%s', (_, status, body, offline, reason) => {
    const err = new RegistryError(
      status === null ? `GET http://127.0.0.1:5101/v2/x/manifests/1: ${body}` : `GET library/x:1: HTTP ${status} ${body}`,
      status,
    )
    expect(failureReason(err, cache, offline)).toContain(reason)
  })

  test('the tally counts warmed and failed images, fetched and cached bytes, and says when 2.8 doubled the download', () => {
    const lines = summaryLines({
      images: [
        {
          image: 'a:1',
          name: 'docker.io/library/a:1',
          cache: cache.name,
          platforms: [],
          blobs: 2,
          fetchedBytes: 2048,
          cachedBytes: 0,
          seconds: 1,
          error: null,
        },
        {
          image: 'b:1',
          name: 'docker.io/library/b:1',
          cache: cache.name,
          platforms: [],
          blobs: 0,
          fetchedBytes: 0,
          cachedBytes: 0,
          seconds: 1,
          error: 'not found',
        },
      ],
      warmed: 1,
      failed: 1,
      fetchedBytes: 2048,
      cachedBytes: 1024,
      platforms: ['linux/amd64'],
      doubleFetch: [cache.name],
    })
    expect(lines[0]).toBe('1 warmed, 1 failed: 2.0 KiB fetched from the upstreams, 1.0 KiB already cached')
    expect(lines[1]).toContain('the upstream sent up to 4.0 KiB')
    expect(lines[2]).toBe('  b:1: not found')
  })
})

test('on a terminal, progress redraws one line per image in flight and the total in place, cut to the width', () => {
  let out = ''
  const stream = { columns: 60, write: (s: string) => (out += s) } as unknown as NodeJS.WriteStream
  const p = ttyProgress(stream)
  p.resolved('redis:7-alpine', 2048)
  p.bytes('redis:7-alpine', 1024)
  p.note('waiting for the caches to store 2 blobs')
  const frames = out.split('\x1b[0J')
  expect(frames.at(-1)).toContain('redis:7-alpine')
  expect(frames.at(-1)).toContain('1.0 KiB / 2.0 KiB')
  expect(
    frames
      .at(-1)
      ?.split('\n')
      .every((l) => l.length < 60),
  ).toBe(true)
  // The redraw first moves up over the two lines drawn before.
  expect(frames.at(-2)).toEndWith('\x1b[2A')
  p.done({
    image: 'redis:7-alpine',
    name: 'docker.io/library/redis:7-alpine',
    cache: 'c',
    platforms: [],
    blobs: 2,
    fetchedBytes: 2048,
    cachedBytes: 0,
    seconds: 1.25,
    error: null,
  })
  expect(out).toEndWith('docker.io/library/redis:7-alpine: 2.0 KiB fetched, 0 B already cached, 1.3s\n')
})

describe('warmImages, against a fake runner: the cache answers HTTP, its volume is a FakeVolume', () => {
  const cfg = resolveConfig({ mirrors: [{ host: 'docker.io', upstream: 'http://up:5000' }] })
  const cache = cfg.registries[1]
  const base = `${cache.address.url}/v2/library/redis`
  const hex = (c: string) => c.repeat(64)
  const blob = (c: string, size: number) => ({ digest: `sha256:${hex(c)}`, size, body: Buffer.alloc(size, c) })
  const [config, cachedLayer, newLayer] = [blob('a', 300), blob('b', 5000), blob('c', 7000)]
  const image = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
    layers: [cachedLayer, newLayer].map(({ digest, size }) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size })),
  }
  const amd64 = `sha256:${hex('d')}`
  const index = {
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { digest: amd64, size: 500, platform: { os: 'linux', architecture: 'amd64' } },
      { digest: `sha256:${hex('e')}`, size: 500, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  }
  const V2 = 'docker/registry/v2'
  /** What distribution keeps once it stored a blob for this repository. */
  const store = (v: FakeVolume, b: { digest: string; body: Buffer }) => {
    const h = b.digest.slice(7)
    v.files.set(`${V2}/blobs/sha256/${h.slice(0, 2)}/${h}/data`, b.body)
    v.files.set(`${V2}/repositories/library/redis/_layers/sha256/${h}/link`, Buffer.from(b.digest))
  }
  /** The cache up, holding one layer already; it stores what it serves unless `stores` is false. */
  const cacheUp = (stores = true) => {
    const volume = new FakeVolume(cache)
    store(volume, cachedLayer)
    const run = fakeRunner([
      ...volume.replies(),
      on(['docker', 'exec', cache.name, 'cat', '/tmp/devreg-mode'], 'proxy\n'),
      on(['docker', 'exec', cache.name, 'registry', '--version'], 'registry github.com/distribution/distribution/v3 v3.0.0'),
      v2Up(cache.address.url),
      http('GET', `${base}/manifests/7`, { json: index, headers: { 'content-type': index.mediaType } }),
      http('GET', `${base}/manifests/${amd64}`, { json: image, headers: { 'content-type': image.mediaType } }),
      ...[config, cachedLayer, newLayer].map((b) =>
        http('GET', `${base}/blobs/${b.digest}`, () => {
          if (stores) store(volume, b)
          return { body: b.body }
        }),
      ),
    ])
    return run
  }
  const quiet: Progress = { resolved: () => {}, bytes: () => {}, done: () => {}, note: () => {}, finish: () => {} }
  const warm = (run: ReturnType<typeof fakeRunner>, storageStallMs?: number) =>
    warmImages(run, routeImages(cfg, ['redis:7']), { platforms: ['linux/amd64'], concurrency: 2, progress: quiet, storageStallMs })

  test('only the wanted platform, only the blobs not cached yet are fetched; the warm ends once the cache stored them', async () => {
    const run = cacheUp()
    const summary = await warm(run)
    expect(summary).toMatchObject({ warmed: 1, failed: 0, fetchedBytes: 7300, cachedBytes: 5000, doubleFetch: [] })
    expect(summary.images[0]).toMatchObject({ platforms: ['linux/amd64'], blobs: 3, error: null })
    const asked = run.calls.filter((c) => c.kind === 'http').map((c) => c.line)
    const wanted = [
      `${cache.address.url}/v2/`,
      `${base}/manifests/7`,
      `${base}/manifests/${amd64}`,
      ...[config, newLayer].map((b) => `${base}/blobs/${b.digest}`),
    ]
    expect(asked.sort()).toEqual(wanted.map((url) => `GET ${url}`).sort())
    expect(run.changes).toEqual([])
  })

  test('a cache that never stores what it served fails the image, naming its logs, once the stall time passed', async () => {
    const summary = await warm(cacheUp(false), 2000)
    expect(summary).toMatchObject({ warmed: 0, failed: 1 })
    expect(summary.images[0].error).toBe(
      `${cache.name} did not store ${config.digest.slice(0, 19)} in time: see \`docker logs ${cache.name}\``,
    )
  })

  test('a cache that does not answer stops the warm before any image, saying how to start it', async () => {
    const run = fakeRunner(new FakeVolume(cache).replies())
    await expect(warm(run)).rejects.toThrow(
      `${cache.name} does not answer on ${cache.address.url} (ECONNREFUSED): run \`dev-registry up\` first`,
    )
  })
})
