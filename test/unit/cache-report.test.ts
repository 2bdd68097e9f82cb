// The cache report's arithmetic, on a real distribution 2.8.2 proxy log: a cold
// pull of a 3-blob image, the same pull again, then a 404; and on the same
// requests as distribution 3 makes them, its stores read from the volume.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseDuration } from '../../scripts/lib/core/duration.ts'
import { UserError } from '../../scripts/lib/core/log.ts'
import { type CacheReport, parseRegistryLog, parseSince, renderReport, statsFromLog } from '../../scripts/lib/registries/cache-report.ts'

const fixture = readFileSync(join(import.meta.dir, 'fixtures/distribution-2.8-proxy-log.txt'), 'utf8')
// alpha:1 as the upstream serves it: two layers and a config.
const ALPHA = 1_500_645 + 700_402 + 1_793

describe('reading a distribution 2.8 log', () => {
  const log = parseRegistryLog(fixture)
  const stores = { at: log.stored, fetchesTwice: true }

  test('every request, and each blob or manifest the proxy stored', () => {
    expect(log.requests).toHaveLength(11)
    expect(log.requests.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 404])
    expect([...log.stored.keys()].map((k) => k.slice(0, 24))).toEqual([
      'library/alpha@sha256:a96',
      'library/alpha@sha256:804',
      'library/alpha@sha256:94b',
      'library/alpha@sha256:f41',
    ])
    expect(log.listeningSince).toBeLessThan(log.requests[0].end)
  })

  test('a cold pull: every blob missed, stored once, and sent twice by the upstream; the warm pull: every blob a hit', () => {
    const s = statsFromLog(log, 0, stores)
    expect(s).toEqual({
      requests: 11,
      errors: 1,
      blobRequests: 6,
      hits: 3,
      misses: 3,
      servedBytes: 2 * ALPHA,
      fetched: 3,
      fetchedBytes: ALPHA,
      upstreamBytes: 2 * ALPHA,
      savedBytes: 0,
    })
  })

  test('since a time: only the warm pull counts, and it saved every byte it served', () => {
    const s = statsFromLog(log, log.requests[5].start, stores)
    expect(s).toMatchObject({ requests: 6, errors: 1, blobRequests: 3, hits: 3, misses: 0, fetched: 0, upstreamBytes: 0 })
    expect(s.savedBytes).toBe(ALPHA)
  })

  test('without store times (distribution 3 logs none with proxy.ttl 0): requests and bytes only', () => {
    expect(statsFromLog(log, 0, null)).toMatchObject({
      blobRequests: 6,
      servedBytes: 2 * ALPHA,
      hits: null,
      misses: null,
      upstreamBytes: null,
    })
  })

  test('distribution 3, stores from the layer links: a missed blob costs the upstream one download, a later one none', () => {
    const v3 = { ...log, stored: new Map() }
    // The volume links configs and layers (not manifests) into a repository, and sizes every blob.
    const blobGet = (key: string) => log.requests.find((r) => r.uri.includes('/blobs/') && r.uri.includes(key.split('@')[1]))
    const at = new Map([...log.stored].filter(([k]) => blobGet(k)))
    const sizes = new Map([...at.keys()].map((k) => [k.split('@')[1], blobGet(k)?.written ?? 0]))
    const s = statsFromLog(v3, 0, { at, sizes, fetchesTwice: false })
    expect(s).toMatchObject({
      blobRequests: 6,
      hits: 3,
      misses: 3,
      fetched: 3,
      fetchedBytes: ALPHA,
      upstreamBytes: ALPHA,
      savedBytes: ALPHA,
    })
    expect(statsFromLog(v3, log.requests[5].start, { at, sizes, fetchesTwice: false })).toMatchObject({
      hits: 3,
      misses: 0,
      fetched: 0,
      upstreamBytes: 0,
    })
  })

  test("a node's requests through a hosts.toml mirror (containerd adds ?ns=docker.io) count like any other", () => {
    const viaMirror = parseRegistryLog(fixture.replaceAll(/(\/blobs\/sha256:[0-9a-f]{64})"/g, '$1?ns=docker.io"'))
    expect(viaMirror.requests.filter((r) => r.uri.endsWith('?ns=docker.io'))).toHaveLength(6)
    expect(statsFromLog(viaMirror, 0, { at: viaMirror.stored, fetchesTwice: true })).toEqual(statsFromLog(log, 0, stores))
  })

  test('JSON-formatted lines read the same as text ones', () => {
    const line = JSON.stringify({
      time: '2025-01-01T00:00:01.5Z',
      msg: 'response completed',
      'http.request.method': 'GET',
      'http.request.uri': `/v2/x/blobs/sha256:${'a'.repeat(64)}`,
      'http.response.status': 200,
      'http.response.written': 42,
      'http.response.duration': '1.5s',
    })
    expect(parseRegistryLog(line).requests).toEqual([
      {
        end: Date.parse('2025-01-01T00:00:01.5Z'),
        start: Date.parse('2025-01-01T00:00:00Z'),
        method: 'GET',
        uri: `/v2/x/blobs/sha256:${'a'.repeat(64)}`,
        status: 200,
        written: 42,
      },
    ])
  })
})

test.each([
  ['54.137234ms', 54.137234],
  ['1.5s', 1500],
  ['2m3s', 123_000],
  ['850µs', 0.85],
  ['1h0m0.5s', 3_600_500],
])('Go duration %s is %d ms', (text, ms) => expect(parseDuration(text)).toBeCloseTo(ms, 6))

describe('--since', () => {
  const now = Date.parse('2025-06-01T12:00:00Z')
  test.each([
    [undefined, { kind: 'start' }],
    ['start', { kind: 'start' }],
    ['all', { kind: 'all' }],
    ['90m', { kind: 'time', at: now - 90 * 60_000 }],
    ['1d', { kind: 'time', at: now - 86_400_000 }],
    ['2025-05-31T08:00:00Z', { kind: 'time', at: Date.parse('2025-05-31T08:00:00Z') }],
  ])('%s', (text, want) => expect(parseSince(text, now)).toEqual(want as never))

  test('anything else is a usage error that says what is accepted', () => {
    expect(() => parseSince('yesterday')).toThrow(UserError)
    let error: unknown
    try {
      parseSince('5 minutes')
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(UserError)
    expect((error as UserError).exitCode).toBe(2)
    expect((error as UserError).message).toContain('a duration back such as 90m')
  })
})

test('the table says where the numbers come from, and that a cold 2.8 pull costs bytes', () => {
  const report: CacheReport = {
    name: 'kind-cache-docker-io',
    upstreamDomain: 'docker.io',
    state: 'running',
    version: '2.8.2',
    since: '2025-06-01T10:00:00.000Z',
    logFrom: '2025-06-01T11:00:00.000Z',
    truncated: true,
    stats: statsFromLog(parseRegistryLog(fixture), 0, { at: parseRegistryLog(fixture).stored, fetchesTwice: true }),
    sources: ['requests and bytes served: the registry log (`response completed`)'],
  }
  const text = renderReport([report, { ...report, name: 'kind-cache-ghcr-io', state: 'missing', stats: null, since: '' }])
  const [header, row, missing] = text.split('\n')
  expect(header.split(/\s{2,}/)).toEqual([
    'CACHE',
    'STATE',
    'SINCE',
    'REQUESTS',
    'BLOB GETS',
    'FROM CACHE',
    'FROM UPSTREAM',
    'HIT RATIO',
    'SERVED',
    'FETCHED',
    'SAVED',
  ])
  expect(row.split(/\s{2,}/)).toEqual([
    'kind-cache-docker-io',
    'running',
    '2025-06-01 10:00:00Z',
    '11',
    '6',
    '3',
    '3',
    '50%',
    '4.2 MiB',
    '4.2 MiB',
    '0 B',
  ])
  expect(missing.split(/\s+/).slice(0, 4)).toEqual(['kind-cache-ghcr-io', 'missing', '-', '-'])
  expect(text).toContain('requests before 2025-06-01 11:00:00Z are not counted')
  expect(text).toContain('once to answer, once to store')
})
