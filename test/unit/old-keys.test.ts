// The JSON keys renamed when "host" came to mean this machine alone: each
// --json output carries the old key beside the new one, with the same value,
// until the next release (scripts/lib/core/old-keys.ts; the archive's manifest is
// in carry.test.ts). Deleting them then is deleting this file.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { report, status } from '../../scripts/dev-registry.ts'
import { planProbes, targets } from '../../scripts/lib/cluster/verify.ts'
import { verifyJson } from '../../scripts/lib/cluster/verify-verdicts.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { LABEL } from '../../scripts/lib/core/labels.ts'
import { hostMirrors } from '../../scripts/lib/machine/host-mirrors.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'

const config = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
const recorded = JSON.parse(readFileSync(join(import.meta.dir, 'fixtures/docker-info/dockerd-28-containerd.json'), 'utf8'))
const running = config.registries.map((r) =>
  JSON.stringify({ ID: r.name, Names: r.name, State: 'running', Labels: `${LABEL.managed}=true`, Networks: '', Ports: '', Image: 'x' }),
)
/** Docker 28 with the containerd store (it reads hosts.toml), every registry running. */
const machine = () =>
  fakeRunner([
    on(['docker', 'info', '--format', '{{json .}}'], JSON.stringify(recorded.info)),
    on(['docker', 'version', '--format', '{{json .}}'], JSON.stringify(recorded.version)),
    on(['docker', 'ps'], running.join('\n')),
    on(['docker', 'exec'], 'pull-through\n'),
  ])

let stdout = ''
const saved = { out: process.stdout.write, err: process.stderr.write }
beforeEach(() => {
  stdout = ''
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk)
    return true
  }) as typeof process.stdout.write
  process.stderr.write = (() => true) as typeof process.stderr.write
})
afterEach(() => {
  process.stdout.write = saved.out
  process.stderr.write = saved.err
})

describe('renamed JSON keys are written under their old names too', () => {
  test('status --json: each registry has upstreamDomain and host; each host-engine route domain and host', async () => {
    expect(await status(machine(), config, true)).toBe(0)
    const out = JSON.parse(stdout)
    expect(out.registries.map((r: Record<string, unknown>) => [r.name, r.upstreamDomain, r.host])).toEqual([
      ['kind-registry', null, null],
      ['kind-cache-docker-io', 'docker.io', 'docker.io'],
      ['kind-cache-ghcr-io', 'ghcr.io', 'ghcr.io'],
    ])
    expect(out.hostEngine.map((h: Record<string, unknown>) => [h.domain, h.host])).toEqual([
      ['docker.io', 'docker.io'],
      ['ghcr.io', 'ghcr.io'],
    ])
  })

  test('report --json: each cache has upstreamDomain and host', async () => {
    expect(await report(fakeRunner(), config, { since: { kind: 'start' }, registries: [], json: true })).toBe(0)
    expect(JSON.parse(stdout).caches.map((c: Record<string, unknown>) => [c.name, c.upstreamDomain, c.host])).toEqual([
      ['kind-cache-docker-io', 'docker.io', 'docker.io'],
      ['kind-cache-ghcr-io', 'ghcr.io', 'ghcr.io'],
    ])
  })

  test('verify --json: each probe has domain and host', () => {
    const probes = planProbes(targets(config), ['dev-control-plane'], 'sha256:f00d')
    const out = JSON.parse(
      JSON.stringify(verifyJson({ ok: true, cluster: 'dev', image: 'x', elapsedMs: 1, summary: { pass: 0, fail: 0, skip: 4 }, probes })),
    )
    expect(out.probes.map((p: Record<string, unknown>) => [p.domain, p.host])).toEqual([
      ['localhost:5001', 'localhost:5001'],
      ['kind-registry:5000', 'kind-registry:5000'],
      ['docker.io', 'docker.io'],
      ['ghcr.io', 'ghcr.io'],
    ])
  })

  test('host-mirrors --json: each skipped entry has domains and hosts', async () => {
    // The classic image store reads no hosts.toml, so ghcr.io is skipped.
    const classic = fakeRunner(
      [
        on(['docker', 'info', '--format', '{{json .}}'], JSON.stringify({ ...recorded.info, DriverStatus: [] })),
        on(['docker', 'version', '--format', '{{json .}}'], JSON.stringify(recorded.version)),
        on(['docker', 'ps'], running.join('\n')),
      ],
      { dryRun: true },
    )
    expect(await hostMirrors(classic, config, { undo: false, yes: false, json: true })).toBe(0)
    expect(JSON.parse(stdout).skipped).toEqual([
      { domains: ['ghcr.io'], hosts: ['ghcr.io'], why: expect.stringContaining('classic image store') },
    ])
  })
})
