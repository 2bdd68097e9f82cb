// What `registry-gc --apply` runs for one registry, in order, against a fake
// runner and a fake registry API: deletes through the API first, the storage
// pass only while the registry is stopped, and a start whatever happened.
import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/config.ts'
import type { V2Answer } from '../../scripts/lib/distribution.ts'
import type { GcPlan } from '../../scripts/lib/gc.ts'
import { applyPlan, type GcRegistryApi } from '../../scripts/lib/gc-apply.ts'
import { type FakeRunner, fakeRunner, on } from '../kit/fake-runner.ts'

const [local] = resolveConfig({ mirrors: [] }).registries
const digest = `sha256:${'a'.repeat(64)}`
const plan: GcPlan = {
  manifests: [{ repo: 'app', digest, tags: ['old'], kind: 'image' }],
  untag: [{ repo: 'app', tag: 'v1', digest: `sha256:${'b'.repeat(64)}`, time: 0 }],
  evict: ['library/redis'],
  kept: [],
  reclaimBytes: 0,
  alreadyUnreferencedBytes: 0,
}

/** A registry API that records into the runner's calls, so one list holds the whole order. */
function api(run: FakeRunner, answers = true): GcRegistryApi {
  const note = (line: string) => run.calls.push({ kind: 'change', argv: [], line })
  return {
    deleteManifest: async (base, repo, d) => void note(`DELETE ${base}/v2/${repo}/manifests/${d}`),
    waitForV2: async (base): Promise<V2Answer> => {
      note(`GET ${base}/v2/`)
      return answers
        ? { ok: true, status: 200, apiVersion: 'registry/2.0', error: null }
        : { ok: false, status: null, apiVersion: null, error: 'ECONNREFUSED' }
    },
  }
}
const gcRun = (line: string) => line.startsWith('docker run --rm --network none') && line.includes('garbage-collect')

describe('registry-gc --apply, for one running registry', () => {
  test('API deletes, stop, the storage pass with the tags and repositories to remove, start, then /v2/ answers', async () => {
    const run = fakeRunner()
    await applyPlan(run, local, plan, true, api(run))
    const lines = run.calls.map((c) => c.line)
    expect(lines[0]).toBe(`DELETE ${local.address.url}/v2/app/manifests/${digest}`)
    expect(lines[1]).toBe(`docker stop ${local.name}`)
    expect(gcRun(lines[2])).toBe(true)
    // Paths relative to the storage's repositories directory, which comes first (registry-layout.ts).
    expect(run.calls[2].argv.slice(-4)).toEqual([
      'garbage-collect',
      '/var/lib/registry/docker/registry/v2/repositories',
      'app/_manifests/tags/v1',
      'library/redis',
    ])
    expect(lines.slice(3)).toEqual([`docker start ${local.name}`, `GET ${local.address.url}/v2/`])
  })

  test('a failed storage pass still starts the registry again, and the failure is reported', async () => {
    const run = fakeRunner([on(['docker', 'run'], { exitCode: 1, stderr: 'failed to garbage collect' })])
    await expect(applyPlan(run, local, plan, true, api(run))).rejects.toThrow('failed to garbage collect')
    expect(run.changes.at(-1)).toBe(`docker start ${local.name}`)
  })

  test('a registry that does not answer after the restart is an error naming its logs', async () => {
    const run = fakeRunner()
    await expect(applyPlan(run, local, plan, true, api(run, false))).rejects.toThrow(`\`docker logs ${local.name}\` shows why`)
  })

  test('a stopped registry is neither started nor waited for', async () => {
    const run = fakeRunner()
    await applyPlan(run, local, plan, false, api(run))
    expect(run.calls.map((c) => c.line).filter((l) => !gcRun(l))).toEqual([`DELETE ${local.address.url}/v2/app/manifests/${digest}`])
  })

  test('under --dry-run the API deletes are shown as curl lines and nothing waits', async () => {
    const run = fakeRunner([], { dryRun: true })
    const recorded = api(run)
    await applyPlan(run, local, plan, true, recorded)
    expect(run.calls.some((c) => c.line.startsWith('DELETE') || c.line.startsWith('GET'))).toBe(false)
    expect(run.changes).toEqual([`docker stop ${local.name}`, expect.stringContaining('garbage-collect'), `docker start ${local.name}`])
  })
})
