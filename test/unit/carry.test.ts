// The archive format without Docker: tar in and out, what export picks from a
// volume's storage, and import's check of an archive before it touches anything.
import { describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, mkdtempSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import {
  type ArchiveManifest,
  chooseRegistries,
  classifyPath,
  FORMAT,
  importTargets,
  planExport,
  verifyArchive,
} from '../../scripts/lib/carry.ts'
import { resolveConfig } from '../../scripts/lib/config.ts'
import { UserError } from '../../scripts/lib/log.ts'
import { parseListing } from '../../scripts/lib/storage.ts'
import { readTar, TarWriter, tarOf } from '../../scripts/lib/tar.ts'

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`
const V2 = 'docker/registry/v2'
const dir = mkdtempSync(join(tmpdir(), 'devreg-carry-unit-'))

const tar = (entries: [string, Buffer | string][]) =>
  tarOf(entries.map(([path, body]) => ({ path, body: Buffer.from(body), mtime: 1_700_000_000 })))

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
    link('lib/app', `_manifests/revisions/sha256/${hex('a')}`),
    link('lib/app', `_manifests/revisions/sha256/${hex('b')}`),
    link('lib/app', `_layers/sha256/${hex('c')}`),
    link('lib/app', `_layers/sha256/${hex('d')}`),
    link('lib/app', `_layers/sha256/${hex('f')}`),
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
  const image = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [{ digest: sha(layer), size: layer.length }] }))
  const d = { layer: sha(layer), image: sha(image) }
  const manifest: ArchiveManifest = {
    format: FORMAT,
    devreg: '0.1.0',
    created: '2025-01-01T00:00:00Z',
    registries: [
      {
        key: 'docker.io',
        role: 'cache',
        name: 'kind-cache-docker-io',
        host: 'docker.io',
        upstream: 'https://registry-1.docker.io',
        volume: 'kind-cache-docker-io-data',
        image: 'registry:3',
        distribution: 'v3.0.0',
        repositories: [{ name: 'library/app', tags: { '1': d.image }, manifests: [d.image], layers: [d.layer] }],
        blobs: { [d.image]: image.length, [d.layer]: layer.length },
        files: 6,
        bytes: image.length + layer.length,
      },
    ],
  }
  const base = `registries/docker.io/${V2}`
  const repo = `${base}/repositories/library/app`
  const hexOf = (x: string) => x.slice(7)
  const files = (m: ArchiveManifest = manifest, tagLink = d.image): [string, Buffer | string][] => {
    const json = `${JSON.stringify(m)}\n`
    return [
      ['devreg-export.json', json],
      [`${base}/blobs/sha256/${hexOf(d.layer).slice(0, 2)}/${hexOf(d.layer)}/data`, layer],
      [`${base}/blobs/sha256/${hexOf(d.image).slice(0, 2)}/${hexOf(d.image)}/data`, image],
      [`${repo}/_layers/sha256/${hexOf(d.layer)}/link`, d.layer],
      [`${repo}/_manifests/revisions/sha256/${hexOf(d.image)}/link`, d.image],
      [`${repo}/_manifests/tags/1/index/sha256/${hexOf(d.image)}/link`, d.image],
      [`${repo}/_manifests/tags/1/current/link`, tagLink],
      ['devreg-export.end.json', JSON.stringify({ manifestSha256: sha(json), files: 6 })],
    ]
  }
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
    expect(chooseRegistries(config, []).map((r) => r.name)).toEqual(['kind-cache-docker-io'])
    expect(chooseRegistries(config, ['local', 'docker.io']).map((r) => r.name)).toEqual(['kind-registry', 'kind-cache-docker-io'])
  })

  test('the template the helpers run passes shellcheck', async () => {
    const { $ } = await import('zx')
    const r = await $({ nothrow: true, quiet: true })`shellcheck ${join(import.meta.dir, '../../templates/volume-files.sh')}`
    if (r.exitCode === 127 || /not found/.test(r.stderr)) return
    expect(r.stdout + r.stderr).toBe('')
  })
})
