// registry-gc against real registries: the numbers --stats prints are checked
// against what the test pushed, and every deletion against what the registry
// serves and what its volume holds afterwards.
import { expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { freePort, integration, waitHttp } from '../kit/fixture.ts'
import { REGISTRY_IMAGE } from '../kit/images.ts'
import { layer, manifestStatus, type PushedImage, pushImage, pushIndex, tagsOf } from '../kit/push.ts'
import { pull, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000)

/** Every file in a volume with its size and mtime: what "changes no byte" is checked against. */
async function volumeListing(volume: string): Promise<string> {
  const r = await $({
    quiet: true,
  })`docker run --rm --network none -v ${`${volume}:/v:ro`} --entrypoint sh ${REGISTRY_IMAGE} -c ${'find /v -exec stat -c "%n %s %Y" {} + | sort'}`
  return r.stdout
}

async function volumeDiskBytes(volume: string): Promise<number> {
  const r = await $({ quiet: true })`docker run --rm --network none -v ${`${volume}:/v:ro`} --entrypoint du ${REGISTRY_IMAGE} -sk /v`
  return Number.parseInt(r.stdout, 10) * 1024
}

/** Pulls an image into a directory with skopeo and hashes every file skopeo wrote. */
async function pullHashes(ref: string): Promise<Record<string, string>> {
  const dir = mkdtempSync(join(tmpdir(), 'devreg-gc-pull-'))
  try {
    await $({ quiet: true })`skopeo copy --quiet --src-tls-verify=false ${`docker://${ref}`} ${`dir:${dir}`}`
    const out: Record<string, string> = {}
    for (const f of readdirSync(dir))
      out[f] = createHash('sha256')
        .update(readFileSync(join(dir, f)))
        .digest('hex')
    return out
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The exact numbers --stats must report for these images, computed from what was pushed. */
function expectedStats(images: PushedImage[]) {
  const repos = new Map<string, Map<string, number>>()
  for (const img of images) {
    const own = repos.get(img.repo) ?? new Map<string, number>()
    own.set(img.digest, img.size)
    for (const b of img.blobs) own.set(b.digest, b.size)
    repos.set(img.repo, own)
  }
  const all = new Map<string, number>()
  let logical = 0
  for (const own of repos.values())
    for (const [d, s] of own) {
      logical += s
      all.set(d, s)
    }
  const stored = [...all.values()].reduce((a, b) => a + b, 0)
  const blobs = new Set(images.flatMap((i) => i.blobs.map((b) => b.digest)))
  return { repositories: repos.size, logicalBytes: logical, storedBytes: stored, blobs: blobs.size, dedupRatio: 1 - stored / logical }
}

integration('registry-gc', () => {
  let local: string
  // The cache on a volume the config names, not the one devreg would derive.
  const w = useWorld({ mirrors: [{ host: 'docker.io', volume: 'cache-data' }] }, async (w) => {
    local = `http://127.0.0.1:${w.registry.port}`
    const up = await w.devRegistry()
    expect(up.code, up.stderr).toBe(0)
  })
  const { fx, upstream, registry, cache } = w
  const gc = (...args: string[]) => w.run('registry-gc', args)
  const statsOf = async (name: string) => {
    const r = await gc('--stats', '--json', '--registry', name)
    expect(r.code, r.stderr).toBe(0)
    return JSON.parse(r.stdout)[0]
  }

  test('--stats on the local registry equals what was pushed: logical, stored and deduplicated', async () => {
    const base = layer(400_000)
    const web1 = { layers: [base, layer(200_000)], created: daysAgo(2) }
    const images = [
      await pushImage(local, 'stats/web', 'v1', web1),
      await pushImage(local, 'stats/web', 'v2', { layers: [base, layer(150_000)], created: daysAgo(1) }),
      await pushImage(local, 'stats/api', 'v1', { layers: [base, layer(120_000)], created: daysAgo(1) }),
      // The same image under a second name: stored once, counted in both repositories.
      await pushImage(local, 'stats/copy', 'v1', web1),
    ]
    expect(images[3].digest).toBe(images[0].digest)
    const want = expectedStats(images)
    const s = await statsOf(registry.name)
    expect(s).toMatchObject({
      repositories: 3,
      tags: 4,
      manifests: 4,
      indexes: 0,
      blobs: want.blobs,
      logicalBytes: want.logicalBytes,
      storedBytes: want.storedBytes,
      unreferencedBytes: 0,
    })
    expect(want.blobs).toBe(7) // one shared base, three own layers, three configs
    expect(s.dedupRatio).toBeCloseTo(want.dedupRatio, 10)
    expect(s.diskBytes).toBeGreaterThanOrEqual(want.storedBytes)
    expect(s.perRepository.map((r: { name: string; tags: string[] }) => [r.name, r.tags])).toEqual([
      ['stats/web', ['v1', 'v2']],
      ['stats/copy', ['v1']],
      ['stats/api', ['v1']],
    ])
    const human = await gc('--stats', '--registry', registry.name)
    expect(human.stdout).toContain(`largest in ${registry.name}:`)
    expect(human.stdout).toMatch(/stats\/web +2 /)
  })

  test('--stats on a cache counts what it stores, not the upstream tags it could serve', async () => {
    const up = `http://127.0.0.1:${upstream.port}`
    const seven = await pushImage(up, 'library/redis', '7', { layers: [layer(300_000)], created: daysAgo(3) })
    await pushImage(up, 'library/redis', '6', { layers: [layer(250_000)], created: daysAgo(9) })
    await pushImage(up, 'library/nginx', '1', { layers: [layer(200_000)], created: daysAgo(9) })
    expect((await pull(`127.0.0.1:${cache.port}/library/redis:7`)).ok).toBe(true)
    await waitStored(
      cache.name,
      seven.blobs.map((b) => b.digest),
    )
    const s = await statsOf(cache.name)
    const want = expectedStats([seven])
    expect(s).toMatchObject({ repositories: 1, tags: 1, manifests: 1, blobs: 2, storedBytes: want.storedBytes })
    expect(s.perRepository).toEqual([{ name: 'library/redis', tags: ['7'], size: want.storedBytes }])
    // --registry takes the names export and report take: the mirror host, or local for the local registry.
    expect(await statsOf('docker.io')).toEqual(s)
    expect((await statsOf('local')).name).toBe(registry.name)
  })

  test('a dry run lists what would go and changes no byte on disk', async () => {
    for (const [tag, days] of [
      ['a', 3],
      ['b', 2],
      ['c', 1],
    ] as const)
      await pushImage(local, 'dry/app', tag, { layers: [layer(50_000)], created: daysAgo(days) })
    const before = await volumeListing(registry.volume)
    const r = await gc('--keep-last', '1', '--repo', 'dry/*')
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/delete +dry\/app@sha256:\S+ +tags a/)
    expect(r.stdout).toMatch(/delete +dry\/app@sha256:\S+ +tags b/)
    expect(r.stdout).not.toContain('tags c')
    expect(r.stderr).toContain('dry run: nothing deleted')
    expect(await volumeListing(registry.volume)).toBe(before)
    expect(await tagsOf(local, 'dry/app')).toEqual(['a', 'b', 'c'])
  })

  test('--keep-last 2 on 5 tags deletes the 3 oldest by created time; the kept ones pull identically; the disk shrinks as reported', async () => {
    // Tag names in another order than their created times: age decides.
    const ages = { e: 5, a: 4, d: 3, b: 2, c: 1 }
    const base = layer(300_000)
    const pushed: Record<string, PushedImage> = {}
    for (const [tag, days] of Object.entries(ages))
      pushed[tag] = await pushImage(local, 'gc/five', tag, { layers: [base, layer(100_000 + days * 1000)], created: daysAgo(days) })
    const ref = (tag: string) => `127.0.0.1:${registry.port}/gc/five:${tag}`
    const keptBefore = { b: await pullHashes(ref('b')), c: await pullHashes(ref('c')) }

    const plan = await gc('--keep-last', '2', '--repo', 'gc/five', '--json')
    const planned = JSON.parse(plan.stdout).find((p: { registry: string }) => p.registry === registry.name)
    expect(planned.manifests.map((m: { tags: string[] }) => m.tags[0]).sort()).toEqual(['a', 'd', 'e'])
    // What goes: three manifests, their configs and own layers; the shared base stays.
    const gone = ['a', 'd', 'e'].map((t) => pushed[t])
    expect(planned.reclaimBytes).toBe(gone.reduce((n, i) => n + i.size + i.blobs[0].size + i.blobs[2].size, 0))

    const diskBefore = await volumeDiskBytes(registry.volume)
    const r = await gc('--keep-last', '2', '--repo', 'gc/five', '--apply', '--yes', '--json')
    expect(r.code, r.stderr).toBe(0)
    const { applied } = JSON.parse(r.stdout).find((p: { registry: string }) => p.registry === registry.name)
    const diskAfter = await volumeDiskBytes(registry.volume)
    expect(applied.freedBytes).toBe(diskBefore - diskAfter)
    expect(applied.freedBytes).toBeGreaterThanOrEqual(planned.reclaimBytes)

    expect(await tagsOf(local, 'gc/five')).toEqual(['b', 'c'])
    for (const t of ['a', 'd', 'e']) expect(await manifestStatus(local, 'gc/five', pushed[t].digest)).toBe(404)
    expect(await pullHashes(ref('b'))).toEqual(keptBefore.b)
    expect(await pullHashes(ref('c'))).toEqual(keptBefore.c)
  })

  test('a tag that goes while another tag of its manifest stays is removed as a tag only', async () => {
    // v1 and v2 name one manifest (same content); with equal created times the tag name breaks the tie: v2 is newer.
    const twin = { layers: [layer(60_000)], created: daysAgo(2) }
    const shared = await pushImage(local, 'gc/twin', 'v1', twin)
    expect((await pushImage(local, 'gc/twin', 'v2', twin)).digest).toBe(shared.digest)
    const old = await pushImage(local, 'gc/twin', 'v0', { layers: [layer(60_000)], created: daysAgo(9) })
    const r = await gc('--keep-last', '1', '--repo', 'gc/twin', '--apply', '--yes')
    expect(r.code, r.stderr).toBe(0)
    expect(await tagsOf(local, 'gc/twin')).toEqual(['v2'])
    expect(await manifestStatus(local, 'gc/twin', shared.digest)).toBe(200)
    expect(await manifestStatus(local, 'gc/twin', 'v1')).toBe(404)
    expect(await manifestStatus(local, 'gc/twin', old.digest)).toBe(404)
    expect((await pull(`127.0.0.1:${registry.port}/gc/twin:v2`)).ok).toBe(true)
  })

  test('a multi-platform index survives --untagged; an orphan manifest does not', async () => {
    const amd = await pushImage(local, 'gc/multi', null, { layers: [layer(70_000)], created: daysAgo(5) })
    const arm = await pushImage(local, 'gc/multi', null, {
      layers: [layer(70_000)],
      created: daysAgo(5),
      platform: { os: 'linux', architecture: 'arm64' },
    })
    const index = await pushIndex(local, 'gc/multi', '1', [amd, arm], ['linux/amd64', 'linux/arm64'])
    const orphan = await pushImage(local, 'gc/multi', null, { layers: [layer(70_000)], created: daysAgo(5) })
    const r = await gc('--untagged', '--repo', 'gc/multi', '--apply', '--yes')
    expect(r.code, r.stderr).toBe(0)
    expect(await manifestStatus(local, 'gc/multi', orphan.digest)).toBe(404)
    for (const d of [index.digest, amd.digest, arm.digest]) expect(await manifestStatus(local, 'gc/multi', d)).toBe(200)
    for (const b of [...amd.blobs, ...arm.blobs])
      expect((await fetch(`${local}/v2/gc/multi/blobs/${b.digest}`, { method: 'HEAD' })).status).toBe(200)
  })

  test('a cache evicts whole repositories with the cache stopped, and comes back as it was', async () => {
    const id = (await $({ quiet: true })`docker inspect --format {{.Id}} ${cache.name}`).stdout.trim()
    const r = await gc('--older-than', '0s', '--repo', 'library/redis', '--registry', cache.name, '--apply', '--yes')
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/evict +library\/redis/)
    const s = await statsOf(cache.name)
    expect(s.repositories).toBe(0)
    expect(s.storedBytes).toBe(0)
    const after = await $({ quiet: true })`docker inspect --format ${'{{.Id}} {{.State.Running}}'} ${cache.name}`
    expect(after.stdout.trim()).toBe(`${id} true`)
    // Evicted content pulls again from the upstream.
    expect((await pull(`127.0.0.1:${cache.port}/library/redis:7`)).ok).toBe(true)
  })

  test('bad input: exit 2 and nothing deleted', async () => {
    await pushImage(local, 'gc/bad', 'x', { layers: [layer(10_000)], created: daysAgo(3) })
    await pushImage(local, 'gc/bad', 'y', { layers: [layer(10_000)], created: daysAgo(2) })
    const before = await volumeListing(registry.volume)
    const cases: [string[], RegExp][] = [
      [['--stats', '--registry', 'nope'], /no registry nope in the config: name .*, a mirror host \(docker\.io\), or local/],
      [['--older-than', '2 weeks'], /--older-than "2 weeks" is not an age: use .* 14d/],
      [['--keep-last', 'few'], /--keep-last "few" is not a count/],
      [['--keep-last', '1', '--registry', cache.name], /--keep-last does not apply to .*: a cache evicts whole repositories/],
      [['--repo', 'gc/*'], /--repo narrows a policy/],
      [[], /choose --stats, or a policy/],
      [['--keep-last', '1', '--repo', 'gc/bad', '--apply'], /no terminal to ask on; rerun with --yes/],
    ]
    for (const [args, message] of cases) {
      const r = await gc(...args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(message)
    }
    expect(await volumeListing(registry.volume)).toBe(before)
    expect(await tagsOf(local, 'gc/bad')).toEqual(['x', 'y'])
  })

  test('a local registry with storage delete disabled: exit 1 (the registry, not the command, is wrong), how to enable it, nothing deleted', async () => {
    const name = fx.name('nodelete')
    const volume = fx.name('nodelete-data', 'volume')
    const port = await freePort()
    await $({
      quiet: true,
    })`docker run -d --name ${name} --label devreg.managed=true -v ${`${volume}:/var/lib/registry`} -p ${`127.0.0.1:${port}:5000`} ${REGISTRY_IMAGE}`
    const base = `http://127.0.0.1:${port}`
    await waitHttp(`${base}/v2/`)
    await pushImage(base, 'app', 'old', { layers: [layer(10_000)], created: daysAgo(3) })
    await pushImage(base, 'app', 'new', { layers: [layer(10_000)], created: daysAgo(1) })
    const other = fx.config({ registry: { name, port, image: REGISTRY_IMAGE, volume }, mirrors: [] })
    const r = await w.run('registry-gc', ['--keep-last', '1', '--apply', '--yes'], { config: other })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('storage delete disabled')
    expect(r.stderr).toContain('REGISTRY_STORAGE_DELETE_ENABLED=true')
    expect(await tagsOf(base, 'app')).toEqual(['new', 'old'])
  })
})
