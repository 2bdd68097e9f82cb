// What `registry-gc --apply` runs for one registry, in order, against a fake
// runner that answers the registry API too: deletes through the API first, the
// storage pass only while the registry is stopped, and a start whatever happened.
import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import type { GcPlan } from '../../scripts/lib/registries/gc.ts'
import { applyPlan } from '../../scripts/lib/registries/gc-apply.ts'
import { fakeRunner, http, on, v2Up } from '../kit/fake-runner.ts'

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

const DELETE = `DELETE ${local.address.url}/v2/app/manifests/${digest}`
/** The registry's API: it deletes the manifest and, unless `answers` is false, answers GET /v2/. */
const api = (answers = true) => [http('DELETE', DELETE.split(' ')[1], { status: 202 }), ...(answers ? [v2Up(local.address.url)] : [])]
const gcRun = (line: string) => line.startsWith('docker run --rm --network none') && line.includes('garbage-collect')

describe('registry-gc --apply, for one running registry', () => {
  test('API deletes, stop, the storage pass with the tags and repositories to remove, start, then /v2/ answers', async () => {
    const run = fakeRunner([...api()])
    await applyPlan(run, local, plan, true)
    const lines = run.calls.map((c) => c.line)
    expect(lines[0]).toBe(DELETE)
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
    const run = fakeRunner([on(['docker', 'run'], { exitCode: 1, stderr: 'failed to garbage collect' }), ...api()])
    await expect(applyPlan(run, local, plan, true)).rejects.toThrow('failed to garbage collect')
    expect(run.changes.at(-1)).toBe(`docker start ${local.name}`)
  })

  test('a registry that does not answer after the restart is an error naming its logs', async () => {
    const run = fakeRunner(api(false))
    await expect(applyPlan(run, local, plan, true)).rejects.toThrow(`\`docker logs ${local.name}\` shows why`)
  })

  test('a stopped registry is neither started nor waited for', async () => {
    const run = fakeRunner(api())
    await applyPlan(run, local, plan, false)
    expect(run.calls.map((c) => c.line).filter((l) => !gcRun(l))).toEqual([DELETE])
  })

  test('under --dry-run the API deletes are shown as curl lines and nothing waits', async () => {
    const run = fakeRunner(api(), { dryRun: true })
    await applyPlan(run, local, plan, true)
    expect(run.calls.some((c) => c.line.startsWith('DELETE') || c.line.startsWith('GET'))).toBe(false)
    expect(run.changes).toEqual([`docker stop ${local.name}`, expect.stringContaining('garbage-collect'), `docker start ${local.name}`])
  })
})
