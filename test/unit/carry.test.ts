// The archive format without Docker: tar in and out, what export picks from a
// volume's storage, and import's check of an archive before it touches anything.
import { describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { createReadStream, mkdtempSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { verifyArchive } from '../../scripts/lib/carry/archive-check.ts'
import { exportRegistries } from '../../scripts/lib/carry/carry-export.ts'
import { importArchive, importTargets } from '../../scripts/lib/carry/carry-import.ts'
import { planExport } from '../../scripts/lib/carry/export-plan.ts'
import { type Registry, resolveConfig } from '../../scripts/lib/core/config.ts'
import { UserError } from '../../scripts/lib/core/log.ts'
import { readTar, TarWriter } from '../../scripts/lib/core/tar.ts'
import { classifyPath } from '../../scripts/lib/registries/registry-layout.ts'
import { selectRegistries } from '../../scripts/lib/registries/registry-names.ts'
import { parseListing } from '../../scripts/lib/registries/storage.ts'
import { abandonedStages, stageId } from '../../scripts/lib/registries/volume-files.ts'
import { sampleArchive, tar } from '../kit/archive.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'
import { FakeVolume, registryVersion } from '../kit/fake-volume.ts'
import { privateLockDir } from '../kit/lock-dir.ts'

const V2 = 'docker/registry/v2'
const dir = mkdtempSync(join(tmpdir(), 'devreg-carry-unit-'))
// Import takes the registries' locks, where its runner's environment says.
const { env } = privateLockDir()

async function entries(...chunks: Buffer[]): Promise<[string, string][]> {
  const out: [string, string][] = []
  for await (const e of readTar(chunks)) {
    let body = ''
    for await (const c of e.body) body += c.toString()
    out.push([e.path, body])
  }
  return out
}

const GiB = 1024 ** 3

describe('tar', () => {
  test('round-trips short names, names that need the ustar prefix, and names longer than 255 bytes', async () => {
    const long = `${'a'.repeat(150)}/${'b'.repeat(90)}/${'c'.repeat(120)}`
    const files: [string, string][] = [
      ['x', 'hello'],
      [`${V2}/blobs/sha256/ab/${'ab'.repeat(32)}/data`, 'blob'],
      [long, 'deep'],
    ]
    expect(await entries(await tar(files))).toEqual(files)
  })

  test('sees a header that does not check out and a stream that stops inside an entry', async () => {
    const bytes = await tar([['f', 'x'.repeat(600)]])
    const bad = Buffer.from(bytes)
    bad[10] ^= 1
    await expect(entries(bad)).rejects.toThrow(/a header does not check out/)
    await expect(entries(bytes.subarray(0, 700))).rejects.toThrow(/cut short/)
  })

  test('reads several tars one after another as one stream (xargs tar -c)', async () => {
    expect(await entries(await tar([['a', '1']]), await tar([['b', '2']]))).toEqual([
      ['a', '1'],
      ['b', '2'],
    ])
  })

  test.each([8 * GiB + 1, 64 * GiB + 1])(
    'a file of %d bytes (sparse: no disk) keeps its size, in a header GNU tar reads too',
    async (size) => {
      const path = join(dir, `sparse-${size}`)
      writeFileSync(path, '')
      truncateSync(path, size)
      // Only the header and the first MiB are streamed: enough to read both back, without minutes of zeros.
      const written: Buffer[] = []
      const enough = new Error('enough')
      const w = new TarWriter(async (chunk) => {
        written.push(chunk)
        if (Buffer.concat(written).length > 1 << 20) throw enough
      })
      const add = w.add({ path: 'blob', size: statSync(path).size, mtime: 1_700_000_000, mode: 0o644 }, createReadStream(path))
      await expect(add).rejects.toBe(enough)
      const head = Buffer.concat(written)
      // GNU base-256 (the high bit set), not octal digits that overflow the field.
      expect(head[124] & 0x80).toBe(0x80)
      for await (const e of readTar([head])) {
        expect(e).toMatchObject({ path: 'blob', size, type: 'file' })
        for await (const chunk of e.body) {
          expect(chunk.every((b) => b === 0)).toBe(true)
          break
        }
        break
      }
      const listed = spawnSync('tar', ['-tvf', '-'], { input: head.subarray(0, 512) })
      expect(listed.stdout.toString()).toContain(` ${size} `)
    },
  )
})

test('classifyPath accepts distribution layout only', () => {
  const hex = 'ab'.repeat(32)
  const table: [string, string | null][] = [
    [`${V2}/blobs/sha256/ab/${hex}/data`, 'blob'],
    [`${V2}/blobs/sha256/cd/${hex}/data`, null],
    [`${V2}/repositories/library/redis/_layers/sha256/${hex}/link`, 'layer'],
    [`${V2}/repositories/a/b/c/_manifests/revisions/sha256/${hex}/link`, 'revision'],
    [`${V2}/repositories/app/_manifests/tags/v1.2/index/sha256/${hex}/link`, 'tagIndex'],
    [`${V2}/repositories/app/_manifests/tags/v1.2/current/link`, 'tag'],
    [`${V2}/repositories/../../etc/_manifests/tags/x/current/link`, null],
    [`${V2}/repositories/app/_uploads/x/data`, null],
    ['/etc/passwd', null],
  ]
  for (const [path, kind] of table) expect([path, classifyPath(path)?.kind ?? null]).toEqual([path, kind])
})

describe('planExport', () => {
  const hex = (c: string) => c.repeat(64)
  const manifest = {
    schemaVersion: 2,
    config: { digest: `sha256:${hex('c')}`, size: 10 },
    layers: [{ digest: `sha256:${hex('d')}`, size: 20 }],
  }
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { digest: `sha256:${hex('a')}`, platform: { os: 'linux', architecture: 'amd64' } },
      { digest: `sha256:${hex('e')}`, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  }
  const blob = (h: string, size: number) => `S 8 ${size} 1 ./${V2}/blobs/sha256/${h.slice(0, 2)}/${h}/data`
  const link = (repo: string, rest: string) => `S 8 71 1 ./${V2}/repositories/${repo}/${rest}`
  const listing = [
    blob(hex('a'), 300),
    blob(hex('b'), 200),
    blob(hex('c'), 10),
    blob(hex('d'), 20),
    blob(hex('f'), 99),
    link('lib/app', `_manifests/revisions/sha256/${hex('a')}/link`),
    link('lib/app', `_manifests/revisions/sha256/${hex('b')}/link`),
    link('lib/app', `_layers/sha256/${hex('c')}/link`),
    link('lib/app', `_layers/sha256/${hex('d')}/link`),
    link('lib/app', `_layers/sha256/${hex('f')}/link`),
    link('lib/app', '_manifests/tags/1/current/link'),
    link('lib/app', '_manifests/tags/gone/current/link'),
    `L ./${V2}/repositories/lib/app/_manifests/tags/1/current/link:sha256:${hex('b')}`,
    `L ./${V2}/repositories/lib/app/_manifests/tags/gone/current/link:sha256:${hex('9')}`,
    `M ./${V2}/blobs/sha256/aa/${hex('a')}/data ${JSON.stringify(manifest)}`,
    `M ./${V2}/blobs/sha256/bb/${hex('b')}/data ${JSON.stringify(index)}`,
  ].join('\n')

  test('takes what a tag reaches and the volume holds: the index, its stored child, config and layer, with their links; an unreferenced blob stays', () => {
    const plan = planExport(parseListing(listing))
    expect(plan.skipped).toEqual(['lib/app:gone'])
    expect(plan.repositories).toEqual([
      {
        name: 'lib/app',
        tags: { '1': `sha256:${hex('b')}` },
        manifests: [`sha256:${hex('a')}`, `sha256:${hex('b')}`],
        layers: [`sha256:${hex('c')}`, `sha256:${hex('d')}`],
      },
    ])
    expect(plan.blobs).toEqual({
      [`sha256:${hex('a')}`]: 300,
      [`sha256:${hex('b')}`]: 200,
      [`sha256:${hex('c')}`]: 10,
      [`sha256:${hex('d')}`]: 20,
    })
    const kinds = plan.files.map((f) => f.kind)
    // Content first, tags last: the order import links them in.
    expect(kinds).toEqual(['blob', 'blob', 'blob', 'blob', 'layer', 'layer', 'revision', 'revision', 'tagIndex', 'tag'])
    expect(plan.files.at(-1)).toMatchObject({
      path: `${V2}/repositories/lib/app/_manifests/tags/1/current/link`,
      content: `sha256:${hex('b')}`,
    })
  })
})

describe('verifyArchive', () => {
  const layer = Buffer.alloc(5000, 7)
  const { digests: d, manifest, files } = sampleArchive(layer)
  const write = (name: string, data: Buffer) => {
    const path = join(dir, name)
    writeFileSync(path, data)
    return path
  }
  const damaged = async (path: string) => {
    try {
      await verifyArchive(path)
    } catch (err) {
      expect(err).toBeInstanceOf(UserError)
      expect((err as UserError).exitCode).toBe(1)
      return (err as Error).message
    }
    throw new Error(`${path} passed`)
  }

  test('a whole archive passes, plain or gzip, and lists its files', async () => {
    const ok = await verifyArchive(write('ok.tar', await tar(files())))
    expect(ok.files.map((f) => f.kind)).toEqual(['blob', 'blob', 'layer', 'revision', 'tagIndex', 'tag'])
    expect((await verifyArchive(write('ok.tar.gz', gzipSync(await tar(files()))))).files).toHaveLength(6)
  })

  test('a flipped byte in a blob, a link, the manifest or a header is named', async () => {
    const good = await tar(files())
    const flip = (at: number) => {
      const b = Buffer.from(good)
      b[at] ^= 1
      return b
    }
    const blobAt = good.indexOf(layer) + 100
    expect(await damaged(write('blob.tar', flip(blobAt)))).toMatch(/blob sha256:[0-9a-f]{64} of docker\.io does not match its digest/)
    expect(await damaged(write('tag.tar', await tar(files(manifest, d.layer))))).toMatch(/link .*tags\/1\/current\/link says/)
    const m = good.indexOf(Buffer.from('"devreg"'))
    expect(await damaged(write('manifest.tar', flip(m + 2)))).toMatch(/does not match the digest its end record gives|not JSON/)
    expect(await damaged(write('header.tar', flip(good.indexOf(Buffer.from('registries/')) + 3)))).toMatch(/a header does not check out/)
  })

  test('cut short anywhere, or with a file missing, it fails: at an entry boundary too', async () => {
    const all = files()
    const good = await tar(all)
    expect(await damaged(write('cut.tar', good.subarray(0, Math.floor(good.length / 2))))).toMatch(/cut short/)
    expect(await damaged(write('no-end.tar', await tar(all.slice(0, -1))))).toMatch(/devreg-export\.end\.json is missing/)
    const gz = gzipSync(good)
    expect(await damaged(write('cut.tar.gz', gz.subarray(0, gz.length - 10)))).toMatch(/gzip|cut short/)
    const withoutBlob = all.filter((_, i) => i !== 1)
    expect(await damaged(write('missing.tar', await tar(withoutBlob)))).toMatch(
      /holds 5 files, its end record says 6|blobs of docker\.io are missing/,
    )
  })

  test('a path outside distribution storage is refused', async () => {
    const all = files()
    all.splice(1, 0, ['registries/docker.io/../../etc/passwd', 'x'])
    expect(await damaged(write('escape.tar', await tar(all)))).toMatch(/no file of a registry it lists/)
    expect(await damaged(write('other.tar', await tar([['README', 'hi']])))).toMatch(/does not start with devreg-export\.json/)
  })

  test('an archived cache goes to the cache of the same host; a host without a mirror is a usage error', () => {
    const config = resolveConfig({ mirrors: [{ host: 'docker.io', upstream: 'http://up:5000' }] })
    expect(importTargets(config, manifest, []).get('docker.io')?.name).toBe('kind-cache-docker-io')
    const quay = { ...manifest, registries: [{ ...manifest.registries[0], key: 'quay.io' }] }
    expect(() => importTargets(config, quay, [])).toThrow(/holds a cache of quay\.io, which the config has no mirror for/)
    expect(selectRegistries(config, [], { none: 'caches' }).map((r) => r.name)).toEqual(['kind-cache-docker-io'])
    expect(selectRegistries(config, ['local', 'docker.io'], { none: 'caches' }).map((r) => r.name)).toEqual([
      'kind-registry',
      'kind-cache-docker-io',
    ])
  })

  test('the template the helpers run passes shellcheck', () => {
    const r = spawnSync('shellcheck', [join(import.meta.dir, '../../templates/volume-files.sh')], { encoding: 'utf8' })
    // Without shellcheck this fails, saying so: a check that did not run must not pass (`just lint` needs it too).
    if (r.error)
      throw new Error(`shellcheck not found on PATH: apt-get install shellcheck (or brew install shellcheck) (${r.error.message})`)
    expect(r.stdout + r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})

describe('export and import against volumes the fake runner plays', () => {
  const config = resolveConfig({ mirrors: [{ host: 'docker.io', upstream: 'http://127.0.0.1:9' }] })
  const cache = config.registries.find((r) => r.role === 'cache') as Registry
  const layer = Buffer.alloc(300_000, 3)
  const { files } = sampleArchive(layer)
  /** The volume the sample archive was exported from. */
  const filled = () => {
    const v = new FakeVolume(cache)
    for (const [path, body] of files()) if (path.startsWith('registries/docker.io/')) v.files.set(path.slice(21), Buffer.from(body))
    return v
  }

  test('export streams what the tags reach into one archive that import checks and merges into an empty volume', async () => {
    const source = filled()
    const file = join(dir, 'orchestrated.tar')
    const out = fakeRunner([...source.replies(), registryVersion], { disk: true })
    const summary = await exportRegistries(out, [cache], { file, gzip: false })
    expect(summary.registries).toMatchObject([{ name: cache.name, tags: 1, blobs: 2 }])
    // Read through the engine from a helper mounted read-only and never started, which is gone afterwards.
    const [helper] = out.changes.filter((l) => l.startsWith('docker create')).map((l) => l.split(' ')[3])
    expect(out.changes.find((l) => l.startsWith('docker create'))).toContain(`${cache.volume}:/var/lib/registry:ro`)
    expect(out.calls.filter((c) => c.kind === 'stream').map((c) => c.line)).toEqual([
      `docker cp ${helper}:/var/lib/registry/docker/registry/v2 -`,
    ])
    expect(out.calls.some((c) => c.argv[1] === 'start' || (c.argv[1] === 'run' && c.argv.includes('volume-files')))).toBe(false)
    expect(source.helpers.size).toBe(0)

    const target = new FakeVolume(cache, false)
    const into = fakeRunner(target.replies(), { env: env() })
    const imported = await importArchive(into, config, file, [])
    expect(imported.added).toBe(6)
    expect(target.files).toEqual(source.files)
    // Created, staged, then linked in: the commit comes after the stage is complete.
    expect(into.changes.map((l) => l.split(' ').slice(0, 3).join(' ') + (l.includes('commit') ? ' commit' : ''))).toEqual([
      'docker volume create',
      'docker create --name',
      'docker run --rm commit',
    ])
    expect(into.calls.filter((c) => c.kind === 'stream').map((c) => c.argv.slice(0, 3))).toEqual([['docker', 'cp', '-']])
    expect(target.stages.size).toBe(0)
    expect(target.helpers.size).toBe(0)

    const again = fakeRunner(target.replies(), { env: env() })
    expect((await importArchive(again, config, file, [])).added).toBe(0)
    expect(again.calls.some((c) => c.kind === 'stream')).toBe(false)
  })

  test('the manifest names the domain a cache mirrors as upstreamDomain, and as host until the next release', async () => {
    const file = join(dir, 'keys.tar')
    await exportRegistries(fakeRunner([...filled().replies(), registryVersion], { disk: true }), [cache], { file, gzip: false })
    const { manifest } = await verifyArchive(file)
    expect(manifest.registries).toMatchObject([{ key: 'docker.io', upstreamDomain: 'docker.io', host: 'docker.io' }])
  })

  test('an archive written before upstreamDomain (host alone) still imports', async () => {
    const { manifest, files: before } = sampleArchive(Buffer.alloc(1000, 2))
    const { upstreamDomain, ...old } = manifest.registries[0]
    expect(old.host).toBe(upstreamDomain as string)
    const file = join(dir, 'before.tar')
    writeFileSync(file, await tar(before({ ...manifest, registries: [old] })))
    const target = new FakeVolume(cache, false)
    expect((await importArchive(fakeRunner(target.replies(), { env: env() }), config, file, [])).added).toBe(6)
    expect(target.files.size).toBe(6)
  })

  test('a helper that dies halfway fails the import at once with its own message; nothing is committed, its stage is cleaned', async () => {
    const file = join(dir, 'dies.tar')
    writeFileSync(file, await tar(files()))
    const target = new FakeVolume(cache)
    const run = fakeRunner(target.replies({ readsOnly: 100_000, stderr: 'Error response from daemon: no space left on device' }), {
      env: env(),
    })
    await expect(importArchive(run, config, file, [])).rejects.toThrow(
      `${cache.name}: the helper container writing into volume ${cache.volume} failed: Error response from daemon: no space left on device; nothing was imported`,
    )
    expect(run.changes.filter((l) => l.includes('commit'))).toEqual([])
    expect(run.calls.filter((c) => c.argv.includes('clean'))).toHaveLength(1)
    expect(target.files.size).toBe(0)
    expect(target.stages.size).toBe(0)
    expect(target.helpers.size).toBe(0)
  }, 2000)
})

describe('staging directories', () => {
  const config = resolveConfig({ mirrors: [{ host: 'docker.io', upstream: 'http://127.0.0.1:9' }] })
  const cache = config.registries.find((r) => r.role === 'cache') as Registry
  const runs = (alive: number[]) => (pid: number) => alive.includes(pid)

  test('a stage is gone only when this host made it and its process no longer runs', () => {
    const ids = ['dev-box-41-0123456789ab', 'dev-box-42-0123456789ab', 'laptop-41-0123456789ab', '0123456789ab', 'dev-box-x-0123456789ab']
    expect(abandonedStages(ids, runs([42]), 'dev-box')).toEqual(['dev-box-41-0123456789ab'])
    expect(stageId('Dev_Box', 7)).toMatch(/^dev-box-7-[0-9a-f]{12}$/)
  })

  test("an import removes the stages of runs that are gone and leaves every other run's alone", async () => {
    const file = join(dir, 'stages.tar')
    writeFileSync(file, await tar(sampleArchive(Buffer.alloc(1000, 1)).files()))
    const target = new FakeVolume(cache)
    const live = stageId(hostname(), process.pid)
    const gone = stageId(hostname(), 2 ** 22 + 1)
    const elsewhere = stageId('another-machine', process.pid)
    for (const id of [live, gone, elsewhere]) target.stages.set(id, new Map())
    const run = fakeRunner(target.replies(), { env: env() })
    expect((await importArchive(run, config, file, [])).added).toBe(6)
    expect([...target.stages.keys()].sort()).toEqual([live, elsewhere].sort())
    expect(target.files.size).toBe(6)
  })
  test("an export removes the helpers of runs that are gone, leaves a live run's alone, and its own goes even when the copy fails", async () => {
    const source = new FakeVolume(cache)
    const layer = Buffer.alloc(1000, 2)
    for (const [path, body] of sampleArchive(layer).files())
      if (path.startsWith('registries/docker.io/')) source.files.set(path.slice(21), Buffer.from(body))
    const name = (id: string) => `${cache.volume}-files-${id}`
    const live = name(stageId(hostname(), process.pid))
    const gone = name(stageId(hostname(), 2 ** 22 + 1))
    for (const helper of [live, gone]) source.helpers.set(helper, { write: false })
    const run = fakeRunner([
      on(['docker', 'cp', /:\/var\/lib\/registry\/docker\/registry\/v2$/], {
        exitCode: 1,
        stderr: 'Error response from daemon: i/o error',
      }),
      ...source.replies(),
      registryVersion,
    ])
    await expect(exportRegistries(run, [cache], { file: join(dir, 'failed.tar'), gzip: false })).rejects.toThrow(/i\/o error/)
    expect([...source.helpers.keys()]).toEqual([live])
  })
})
