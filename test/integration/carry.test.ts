// dev-registry export and import against real registries: a warmed cache and
// the local registry go into one archive, every devreg volume is deleted, and
// the archive brings them back on a machine whose upstream is gone.
import { expect, test } from 'bun:test'
import { readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { stageId } from '../../scripts/lib/registries/volume-files.ts'
import { integration } from '../kit/fixture.ts'
import { REGISTRY_IMAGE } from '../kit/images.ts'
import { layer, type PushedImage, pushImage, pushIndex } from '../kit/push.ts'
import { pull, servedBlobBytes } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

/** Every file in a volume with its size and mtime, and the volume's own root: what "changes nothing" is checked against. */
async function volumeListing(volume: string): Promise<string> {
  const r = await $({
    quiet: true,
    nothrow: true,
  })`docker run --rm --network none -v ${`${volume}:/v:ro`} --entrypoint sh ${REGISTRY_IMAGE} -c ${'find /v -exec stat -c "%n %s %Y" {} + | sort'}`
  return r.stdout
}

const volumeExists = async (name: string) => (await $({ quiet: true, nothrow: true })`docker volume inspect ${name}`).exitCode === 0

/** The helper containers (created to read or write a volume through the engine) still there for these volumes. */
async function helpersLeft(volumes: string[]): Promise<string[]> {
  const r = await $({ quiet: true })`docker ps --all --format ${'{{.Label "devreg.volume-helper"}} {{.Names}}'}`
  return r.stdout.split('\n').filter((l) => volumes.includes(l.split(' ')[0]))
}

integration('dev-registry export and import', () => {
  const layers = { redis: layer(900_000), postgres: layer(700_000) }
  const images: Record<string, PushedImage> = {}
  const w = useWorld({ mirrors: [{ host: 'docker.io', upstream: 'hub' }] }, async (w) => {
    const hubApi = `http://127.0.0.1:${w.upstream.port}`
    const created = new Date('2025-01-01T00:00:00Z')
    images.redis = await pushImage(hubApi, 'library/redis', '7-alpine', { layers: [layers.redis, layer(300_000)], created })
    images.postgres = await pushImage(hubApi, 'library/postgres', '16-alpine', { layers: [layers.postgres], created })
    const amd64 = await pushImage(hubApi, 'library/multi', null, { layers: [layer(500_000)], created })
    const arm64 = await pushImage(hubApi, 'library/multi', null, {
      layers: [layer(400_000)],
      created,
      platform: { os: 'linux', architecture: 'arm64' },
    })
    await pushIndex(hubApi, 'library/multi', '1', [amd64, arm64], ['linux/amd64', 'linux/arm64'])
    expect((await w.devRegistry()).code).toBe(0)
    const warm = await w.devRegistry('warm', 'redis:7-alpine', 'postgres:16-alpine', 'multi:1', '--platform', 'linux/amd64')
    expect(warm.code, warm.stderr).toBe(0)
    images.app = await pushImage(`http://127.0.0.1:${w.registry.port}`, 'team/app', 'dev', { layers: [layer(200_000)], created })
  })
  const { fx, upstream: hub, registry, cache } = w
  const archive = () => join(fx.dir, 'caches.tar')
  const script = (...args: string[]) => w.devRegistry(...args)
  const listings = async () => [await volumeListing(registry.volume), await volumeListing(`${cache.name}-data`)].join('\n--\n')
  /** The world's config with other volumes for the cache (and the local registry, when given). */
  const withVolumes = (file: string, cacheVolume: string, registryVolume?: string) =>
    w.configFile(
      {
        ...(registryVolume && { registry: { ...registry, volume: registryVolume } }),
        mirrors: [{ ...w.mirrorDocs()[0], volume: cacheVolume }],
      },
      file,
    )

  test('export writes one tar, its manifest first, while the registries keep serving', async () => {
    const r = await script('export', archive(), registry.name, 'docker.io', '--json')
    expect(r.code, r.stderr).toBe(0)
    const summary = JSON.parse(r.stdout)
    expect(summary.registries.map((x: { key: string; tags: number }) => [x.key, x.tags])).toEqual([
      ['local', 1],
      ['docker.io', 3],
    ])
    expect(r.stderr).toMatch(/wrote .*caches\.tar \([\d.]+ MiB\): 4 tags, \d+ blobs from 2 registries/)
    const entries = (await $({ quiet: true })`tar -tf ${archive()}`).stdout.trim().split('\n')
    expect(entries[0]).toBe('devreg-export.json')
    expect(entries.at(-1)).toBe('devreg-export.end.json')
    const manifest = JSON.parse((await $({ quiet: true })`tar -xOf ${archive()} devreg-export.json`).stdout)
    expect(manifest).toMatchObject({ format: 'devreg-export/1', devreg: '0.1.0' })
    const hubRecord = manifest.registries.find((x: { key: string }) => x.key === 'docker.io')
    expect(hubRecord.distribution).toMatch(/^v?\d+\.\d+/)
    expect(hubRecord.repositories.map((x: { name: string }) => x.name)).toEqual(['library/multi', 'library/postgres', 'library/redis'])
    // Only what the tags reach: the arm64 half of the index was never pulled, so it is not there.
    expect(Object.keys(hubRecord.blobs)).toContain(images.redis.digest)
    // The caches kept serving throughout, and the helpers that read the volumes are gone.
    expect((await $({ quiet: true })`docker inspect --format {{.State.Running}} ${cache.name}`).stdout.trim()).toBe('true')
    expect(await helpersLeft([registry.volume, `${cache.name}-data`])).toEqual([])
  })

  test('a dry-run import into other volumes lists what it would add and creates nothing', async () => {
    const otherCache = fx.name('other-cache-data', 'volume')
    const other = withVolumes('other.yaml', otherCache, fx.name('other-registry-data', 'volume'))
    const r = await w.run('dev-registry', ['import', archive(), '--dry-run'], { config: other })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`would add docker.io/library/redis:7-alpine to ${otherCache}`)
    expect(r.stdout).toContain('would add team/app:dev to')
    expect(r.stdout).toMatch(/3 tags, \d+ blobs/)
    expect(await volumeExists(otherCache)).toBe(false)
  })

  test("an import leaves another run's staging directory in the volume alone, and removes one whose run is gone", async () => {
    const volume = fx.name('staged-cache-data', 'volume')
    // A stage of an import running on another machine, and one of a run of this machine that no longer runs.
    const elsewhere = '.devreg-import-another-machine-1-0123456789ab'
    const gone = `.devreg-import-${stageId(hostname(), 2 ** 22 + 1)}`
    await $({
      quiet: true,
    })`docker run --rm --network none -v ${`${volume}:/v`} --entrypoint mkdir ${REGISTRY_IMAGE} /v/${elsewhere} /v/${gone}`
    const r = await w.run('dev-registry', ['import', archive(), 'docker.io'], { config: withVolumes('staged.yaml', volume) })
    expect(r.code, r.stderr).toBe(0)
    const left = await $({ quiet: true })`docker run --rm --network none -v ${`${volume}:/v:ro`} --entrypoint ls ${REGISTRY_IMAGE} -a /v`
    expect(left.stdout.split('\n').filter((n) => n.startsWith('.devreg-import-'))).toEqual([elsewhere])
  })

  test('after every devreg volume is deleted, import restores them and the images pull with the upstream stopped, 0 blob bytes from it', async () => {
    expect((await script('rm', '--purge', '--yes')).code).toBe(0)
    expect(await volumeExists(registry.volume)).toBe(false)
    expect(await volumeExists(`${cache.name}-data`)).toBe(false)
    await $({ quiet: true })`docker stop ${hub.name}`
    const served = await servedBlobBytes(hub.name)

    const r = await script('import', archive())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('every blob matches its digest')
    expect(r.stderr).toMatch(/added 3 tags, \d+ blobs/)
    expect(await helpersLeft([registry.volume, `${cache.name}-data`])).toEqual([])
    expect((await script()).code).toBe(0)
    for (const ref of ['library/redis:7-alpine', 'library/postgres:16-alpine', 'library/multi:1']) {
      const p = await pull(`127.0.0.1:${cache.port}/${ref}`)
      expect(p.ok, `${ref}: ${p.stderr}`).toBe(true)
    }
    const local = await pull(`127.0.0.1:${registry.port}/team/app:dev`)
    expect(local.ok, local.stderr).toBe(true)
    expect(await servedBlobBytes(hub.name)).toBe(served)
  })

  test('a second import, with the registries up, adds nothing and says so', async () => {
    const before = await listings()
    const r = await script('import', archive())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('nothing to add')
    expect(await listings()).toBe(before)
  })

  test('a flipped byte or a cut-short archive: exit 1, what is wrong, and no volume changed', async () => {
    const bytes = readFileSync(archive())
    const at = bytes.indexOf(Buffer.from(layers.postgres.subarray(512, 576))) + 1000
    expect(at).toBeGreaterThan(1000)
    const flipped = Buffer.from(bytes)
    flipped[at] ^= 0x01
    const flippedFile = join(fx.dir, 'flipped.tar')
    writeFileSync(flippedFile, flipped)
    const cutFile = join(fx.dir, 'cut.tar')
    writeFileSync(cutFile, bytes.subarray(0, Math.floor(bytes.length * 0.6)))
    // A volume that lacks content, so a faulty import would have something to add.
    await $({ quiet: true })`docker volume rm -f ${registry.volume}`.nothrow()
    const before = await listings()
    const bad = await script('import', flippedFile)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/flipped\.tar is damaged: blob sha256:[0-9a-f]{64} of docker\.io does not match its digest/)
    expect(bad.stderr).toContain('nothing was imported')
    const cut = await script('import', cutFile)
    expect(cut.code).toBe(1)
    expect(cut.stderr).toMatch(/cut\.tar is damaged: .*cut short/)
    expect(await listings()).toBe(before)
  })

  test('bad usage: exit 2 and nothing touched', async () => {
    const before = await listings()
    for (const [args, message] of [
      [['import'], /import needs the archive's path/],
      [['export', archive(), 'nope'], /no registry nope in the config/],
      [['import', join(fx.dir, 'missing.tar')], /no such file/],
    ] as const) {
      const r = await script(...args)
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(message)
    }
    expect(await listings()).toBe(before)
  })
})
