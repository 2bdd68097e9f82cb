// The GC plan and the storage reading it rests on, without Docker: every rule
// of registry-gc on storages built by hand.
import { describe, expect, test } from 'bun:test'
import { parseDuration } from '../../scripts/lib/core/duration.ts'
import { parseReference } from '../../scripts/lib/core/reference.ts'
import { AGE_UNITS, type GcPlan, newestFirst, type Policy, planGc, repoGlob } from '../../scripts/lib/registries/gc.ts'
import { parseListing, registryStats, type Storage } from '../../scripts/lib/registries/storage.ts'

const d = (n: number | string) => `sha256:${String(n).padStart(64, '0')}`
const NOW = 1_800_000_000
const DAY = 86_400

/** A storage built from images: each image has a manifest, a config and layers of the given sizes. */
function storage(
  repos: Record<
    string,
    { tags?: Record<string, number | string>; images: (number | string)[]; indexes?: Record<string, (number | string)[]> }
  >,
  layers: Record<string, { digest: string; size: number }[]> = {},
): Storage {
  const s: Storage = { repositories: new Map(), blobs: new Map(), manifests: new Map(), layerLinkedAt: new Map(), diskBytes: null }
  for (const [name, r] of Object.entries(repos)) {
    const revisions = new Set<string>()
    for (const img of r.images) {
      const digest = d(img)
      const own = layers[String(img)] ?? [{ digest: d(`${img}1`), size: 1000 }]
      const config = { digest: d(`${img}c`), size: 10 }
      s.manifests.set(digest, { digest, kind: 'image', children: [], blobs: [config, ...own], config: config.digest })
      s.blobs.set(digest, 100)
      for (const b of [config, ...own]) s.blobs.set(b.digest, b.size)
      revisions.add(digest)
    }
    for (const [idx, children] of Object.entries(r.indexes ?? {})) {
      const digest = d(idx)
      s.manifests.set(digest, {
        digest,
        kind: 'index',
        children: children.map((c) => ({ digest: d(c), platform: null })),
        blobs: [],
        config: null,
      })
      s.blobs.set(digest, 50)
      revisions.add(digest)
    }
    const tags = new Map(Object.entries(r.tags ?? {}).map(([t, img]) => [t, { digest: d(img), linkedAt: NOW - DAY }]))
    s.repositories.set(name, { name, tags, revisions, layers: new Set() })
  }
  return s
}

const policy = (p: Partial<Policy>): Policy => ({ keepLast: null, olderThan: null, repo: null, untagged: false, force: false, ...p })

function plan(
  s: Storage,
  p: Partial<Policy>,
  opts: { times?: Record<string, number>; held?: string[]; role?: 'local' | 'cache' } = {},
): GcPlan {
  return planGc({
    storage: s,
    policy: policy(p),
    role: opts.role ?? 'local',
    now: NOW,
    nodeDigests: new Set(opts.held ?? []),
    tagTime: (repo, tag) => opts.times?.[`${repo.name}:${tag}`] ?? repo.tags.get(tag)?.linkedAt ?? 0,
  })
}

const deleted = (p: GcPlan) => p.manifests.map((m) => `${m.repo}@${m.digest.slice(-3)}`).sort()

describe('keep-last and older-than', () => {
  const five = storage({ app: { tags: { a: 1, b: 2, c: 3, d: 4, e: 5 }, images: [1, 2, 3, 4, 5] } })
  const times = { 'app:a': NOW - 5 * DAY, 'app:b': NOW - 1 * DAY, 'app:c': NOW - 4 * DAY, 'app:d': NOW - 2 * DAY, 'app:e': NOW - 3 * DAY }

  test('keep-last N keeps the N newest by time, not by name', () => {
    expect(deleted(plan(five, { keepLast: 2 }, { times }))).toEqual(['app@001', 'app@003', 'app@005'])
  })

  test('the tag name breaks a tie, numeric-aware (v10 is newer than v9)', () => {
    const tags = ['v9', 'v10', 'v2'].map((tag) => ({ repo: 'r', tag, digest: d(1), time: 5 }))
    expect(tags.sort(newestFirst).map((t) => t.tag)).toEqual(['v10', 'v9', 'v2'])
  })

  test('older-than and keep-last combine: what goes matches both', () => {
    expect(deleted(plan(five, { keepLast: 1, olderThan: 3 * DAY }, { times }))).toEqual(['app@001', 'app@003', 'app@005'])
    expect(deleted(plan(five, { keepLast: 4, olderThan: 3 * DAY }, { times }))).toEqual(['app@001'])
  })

  test('the newest tag stays unless --keep-last 0 or --force', () => {
    const all = plan(five, { olderThan: 0 }, { times })
    expect(deleted(all)).toHaveLength(4)
    expect(all.kept).toEqual([expect.objectContaining({ tag: 'b', reason: expect.stringContaining('newest tag') })])
    expect(deleted(plan(five, { keepLast: 0 }, { times }))).toHaveLength(5)
    expect(deleted(plan(five, { olderThan: 0, force: true }, { times }))).toHaveLength(5)
  })

  test('--repo limits the plan to matching repositories; * crosses slashes', () => {
    const two = storage({ 'acme/web': { tags: { a: 1, b: 2 }, images: [1, 2] }, other: { tags: { a: 3, b: 4 }, images: [3, 4] } })
    expect(deleted(plan(two, { keepLast: 0, repo: repoGlob('acme/*') }))).toEqual(['acme/web@001', 'acme/web@002'])
    expect(repoGlob('*').test('a/b/c')).toBe(true)
    expect(repoGlob('ac?e').test('acme')).toBe(true)
    expect(repoGlob('acme.io').test('acmexio')).toBe(false)
  })
})

describe('tags sharing a manifest', () => {
  test('a manifest goes only with all its tags; a lone tag that goes is untagged', () => {
    const s = storage({ app: { tags: { v0: 1, v1: 2, v2: 2 }, images: [1, 2] } })
    const times = { 'app:v0': NOW - 9 * DAY, 'app:v1': NOW - 2 * DAY, 'app:v2': NOW - 2 * DAY }
    const p = plan(s, { keepLast: 1 }, { times })
    expect(deleted(p)).toEqual(['app@001'])
    expect(p.untag.map((t) => t.tag)).toEqual(['v1'])
    // Untagging frees nothing: the manifest and its blobs stay.
    expect(p.reclaimBytes).toBe(100 + 10 + 1000)
  })
})

describe('nodes', () => {
  const s = storage({ app: { tags: { old: 1, new: 2 }, images: [1, 2] } })
  const times = { 'app:old': NOW - 5 * DAY, 'app:new': NOW }

  test('a manifest a node holds is kept, matched by digest', () => {
    const p = plan(s, { keepLast: 1 }, { times, held: [d(1)] })
    expect(deleted(p)).toEqual([])
    expect(p.kept).toEqual([expect.objectContaining({ tag: 'old', reason: expect.stringContaining('running node') })])
    expect(deleted(plan(s, { keepLast: 1, force: true }, { times, held: [d(1)] }))).toEqual(['app@001'])
  })

  test('a node holding one platform of an index keeps the index tag', () => {
    const multi = storage({ app: { tags: { old: 'i', new: 3 }, images: [1, 2, 3], indexes: { i: [1, 2] } } })
    const p = plan(multi, { keepLast: 1 }, { times, held: [d(2)] })
    expect(deleted(p)).toEqual([])
  })
})

describe('indexes and --untagged', () => {
  const multi = storage({ app: { tags: { v1: 'i' }, images: [1, 2, 3], indexes: { i: [1, 2] } } })

  test('--untagged never deletes a platform manifest of a kept index', () => {
    expect(deleted(plan(multi, { untagged: true }))).toEqual(['app@003'])
  })

  test('an index that goes takes its untagged platform manifests with it', () => {
    const p = plan(multi, { keepLast: 0 })
    expect(deleted(p)).toEqual(['app@001', 'app@002', 'app@00i'])
    expect(p.reclaimBytes).toBe(50 + 2 * (100 + 10 + 1000))
  })

  test('a platform manifest another kept index still lists stays', () => {
    const two = storage({ app: { tags: { a: 'i', b: 'j' }, images: [1, 2], indexes: { i: [1, 2], j: [2] } } })
    const p = plan(two, { keepLast: 1 }, { times: { 'app:a': NOW - DAY, 'app:b': NOW } })
    expect(deleted(p)).toEqual(['app@001', 'app@00i'])
  })
})

describe('reclaimed bytes', () => {
  test('a layer another repository still uses is not counted', () => {
    const shared = { digest: d('base'), size: 5000 }
    const s = storage(
      { a: { tags: { x: 1 }, images: [1] }, b: { tags: { y: 2 }, images: [2] } },
      { 1: [shared, { digest: d('own1'), size: 700 }], 2: [shared] },
    )
    const p = plan(s, { keepLast: 0, repo: repoGlob('a') })
    expect(p.reclaimBytes).toBe(100 + 10 + 700)
  })
})

describe('caches', () => {
  const s = storage({ 'library/redis': { tags: { '7': 1 }, images: [1] }, 'library/nginx': { tags: { '1': 2 }, images: [2] } })
  const times = { 'library/redis:7': NOW - 20 * DAY, 'library/nginx:1': NOW - DAY }

  test('whole repositories last pulled before the cutoff are evicted', () => {
    const p = plan(s, { olderThan: 14 * DAY }, { times, role: 'cache' })
    expect(p.evict).toEqual(['library/redis'])
    expect(p.manifests).toEqual([])
    expect(p.reclaimBytes).toBe(100 + 10 + 1000)
  })

  test('a repository a node holds an image of stays without --force', () => {
    const p = plan(s, { olderThan: 0 }, { times, role: 'cache', held: [d(1)] })
    expect(p.evict).toEqual(['library/nginx'])
    expect(plan(s, { olderThan: 0, force: true }, { times, role: 'cache', held: [d(1)] }).evict.sort()).toEqual([
      'library/nginx',
      'library/redis',
    ])
  })
})

describe('--older-than ages', () => {
  const age = (text: string) => parseDuration(text, AGE_UNITS)
  test.each([
    ['45s', 45],
    ['30m', 1800],
    ['12h', 43200],
    ['14d', 1209600],
    ['2w', 1209600],
    ['0s', 0],
    ['1.5d', 129600],
    ['1d12h', 129600],
  ])('%s is %d seconds', (text, seconds) => expect(age(text)).toBe(seconds * 1000))
  test.each([['14'], ['d'], ['-1d'], ['2 weeks'], ['14D'], ['500ms']])('%s is refused', (text) => expect(age(text)).toBeNull())
})

describe('parseListing', () => {
  const hex = (c: string) => c.repeat(64)
  const blob = (c: string) => `blobs/sha256/${c}${c}/${hex(c)}/data`
  const manifest = JSON.stringify({
    schemaVersion: 2,
    config: { digest: `sha256:${hex('c')}`, size: 10 },
    layers: [{ digest: `sha256:${hex('1')}`, size: 1000 }],
  })
  const v2 = './docker/registry/v2'
  const text = [
    'S 8 4096 1700000000 .',
    `S 8 10 1 ${v2}/${blob('c')}`,
    `S 8 1000 1 ${v2}/${blob('1')}`,
    `S 8 300 1 ${v2}/${blob('a')}`,
    `S 8 77 1 ${v2}/${blob('f')}`,
    `S 8 4096 1 ${v2}/repositories/acme/web/_manifests/revisions/sha256/${hex('a')}`,
    `S 8 71 1 ${v2}/repositories/acme/web/_manifests/revisions/sha256/${hex('a')}/link`,
    `S 8 4096 1 ${v2}/repositories/acme/web/_layers/sha256/${hex('1')}`,
    `S 8 71 1 ${v2}/repositories/acme/web/_layers/sha256/${hex('1')}/link`,
    // A manifest deleted through the API: distribution leaves its directory, without the link.
    `S 8 4096 1 ${v2}/repositories/acme/web/_manifests/revisions/sha256/${hex('f')}`,
    `S 8 71 1700000000 ${v2}/repositories/acme/web/_manifests/tags/v1/current/link`,
    `S 8 71 1 ${v2}/repositories/acme/web/_manifests/tags/v1/index/sha256/${hex('a')}/link`,
    // An upload in progress is neither a blob nor a layer.
    `S 8 500 1 ${v2}/repositories/acme/web/_uploads/0a1b/data`,
    `L ${v2}/repositories/acme/web/_manifests/tags/v1/current/link:sha256:${hex('a')}`,
    // Folded newlines and indentation, as the listing script prints a pretty-printed manifest.
    `M ${v2}/${blob('a')} ${manifest.replace(/,/g, ',  ')} `,
    '',
  ].join('\n')

  test('reads tags with their link time, revisions, layers, blob sizes and manifests', () => {
    const s = parseListing(text)
    const repo = s.repositories.get('acme/web')
    expect(repo?.tags.get('v1')).toEqual({ digest: `sha256:${hex('a')}`, linkedAt: 1700000000 })
    expect([...(repo?.revisions ?? [])]).toEqual([`sha256:${hex('a')}`])
    expect([...(repo?.layers ?? [])]).toEqual([`sha256:${hex('1')}`])
    expect(s.blobs.get(`sha256:${hex('1')}`)).toBe(1000)
    expect(s.manifests.get(`sha256:${hex('a')}`)?.config).toBe(`sha256:${hex('c')}`)
    expect(s.diskBytes).toBe(13 * 8 * 512)
  })

  test('a layer link time (busybox stat %y, to the nanosecond) is when the blob was stored for that repository', () => {
    const linked = `T 2026-12-06 01:46:37.107131681 +0000 ${v2}/repositories/acme/web/_layers/sha256/${hex('1')}/link`
    const s = parseListing(`${text}${linked}\n`)
    expect([...s.layerLinkedAt]).toEqual([[`acme/web@sha256:${hex('1')}`, Date.parse('2026-12-06T01:46:37.107Z')]])
    expect(parseListing(text).layerLinkedAt.size).toBe(0)
  })

  test('stats: stored blobs only; an unreferenced blob is reported apart', () => {
    const st = registryStats(parseListing(text))
    expect(st).toMatchObject({
      repositories: 1,
      tags: 1,
      manifests: 1,
      blobs: 2,
      logicalBytes: 1310,
      storedBytes: 1310,
      unreferencedBytes: 77,
    })
  })

  test('a layer the cache has not stored yet is not counted', () => {
    const partial = text.replace(`S 8 1000 1 ${v2}/${blob('1')}\n`, '')
    expect(registryStats(parseListing(partial))).toMatchObject({ blobs: 1, storedBytes: 310 })
  })
})

describe('parseReference', () => {
  test.each([
    ['redis:7-alpine', 'docker.io', 'library/redis', '7-alpine'],
    ['redis', 'docker.io', 'library/redis', 'latest'],
    ['bitnami/redis:7', 'docker.io', 'bitnami/redis', '7'],
    ['docker.io/library/redis:7', 'docker.io', 'library/redis', '7'],
    ['index.docker.io/redis', 'docker.io', 'library/redis', 'latest'],
    ['ghcr.io/acme/app:1.2', 'ghcr.io', 'acme/app', '1.2'],
    ['localhost:5001/app:dev', 'localhost:5001', 'app', 'dev'],
    ['registry.k8s.io/pause:3.9', 'registry.k8s.io', 'pause', '3.9'],
    [`quay.io/a/b@${d(1)}`, 'quay.io', 'a/b', d(1)],
  ])('%s', (ref, domain, repository, reference) => expect(parseReference(ref)).toEqual({ domain, repository, reference }))
})
