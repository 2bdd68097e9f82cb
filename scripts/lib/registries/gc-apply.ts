// registry-gc --apply: a plan (gc.ts) carried out on each registry. Manifests
// go through the registry's API (a local registry); then, with the registry
// stopped for a moment, removed tags and evicted repositories are deleted from
// its storage and distribution's own garbage-collect runs (storage.ts); the
// registry is started again as it was and must answer.
import type { Registry } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { EXIT, formatBytes, log, UserError } from '../core/log.ts'
import { mapLimit } from '../core/pool.ts'
import { deleteManifest, waitForV2 } from './distribution.ts'
import type { GcPlan } from './gc.ts'
import { tagDirectory } from './registry-layout.ts'
import { garbageCollect } from './storage.ts'

export interface RegistryPlan {
  registry: Registry
  plan: GcPlan
}

/** A volume's disk use before and after garbage collection (null: not measured). */
export interface DiskUse {
  before: number | null
  after: number | null
}

/** What a plan deletes, in one line: "2 manifest(s) deleted, 1 tag(s) removed". */
export function planSummary(plan: GcPlan): string {
  const parts = [
    plan.manifests.length ? `${plan.manifests.length} manifest(s) deleted` : '',
    plan.untag.length ? `${plan.untag.length} tag(s) removed` : '',
    plan.evict.length ? `${plan.evict.length} repositor${plan.evict.length === 1 ? 'y' : 'ies'} evicted` : '',
  ]
  return parts.filter(Boolean).join(', ')
}

/** Everything that could refuse, checked before the first deletion. */
export async function checkApplicable(run: Runner, work: RegistryPlan[], containers: docker.Container[]): Promise<void> {
  for (const { registry, plan } of work) {
    const c = containers.find((x) => x.name === registry.name)
    if (c && !docker.isOwned(c)) throw new UserError(`${registry.name} is not a devreg container: devreg does not modify it`, EXIT.failed)
    if (registry.role !== 'local' || !plan.manifests.length) continue
    if (c?.state !== 'running')
      throw new UserError(
        `${registry.name} is not running; manifests are deleted through its API: start it with \`dev-registry up\``,
        EXIT.failed,
      )
    const info = await docker.inspect<{ Config: { Env?: string[] } }>(run, registry.name)
    if (!info?.Config.Env?.includes('REGISTRY_STORAGE_DELETE_ENABLED=true'))
      throw new UserError(
        `${registry.name} has storage delete disabled, so its API refuses deletes: recreate it with \`dev-registry rm\` and \`dev-registry up\` (devreg sets REGISTRY_STORAGE_DELETE_ENABLED=true; its volume stays)`,
        EXIT.failed,
      )
  }
}

/** Applies each plan in turn, measuring the volume around it (not under --dry-run). */
export async function applyAll(
  run: Runner,
  work: RegistryPlan[],
  containers: docker.Container[],
  json: boolean,
): Promise<Map<string, DiskUse>> {
  const disk = new Map<string, DiskUse>()
  for (const { registry, plan } of work) {
    const before = run.dryRun ? null : await docker.volumeBytes(run, registry.volume, registry.image)
    await applyPlan(run, registry, plan, containers.find((c) => c.name === registry.name)?.state === 'running')
    if (run.dryRun) continue
    const measured = { before, after: await docker.volumeBytes(run, registry.volume, registry.image) }
    disk.set(registry.name, measured)
    const freed = freedBytes(measured)
    if (!json)
      log.ok(`${registry.name}: ${planSummary(plan)}; ${freed === null ? 'disk use unknown' : `freed ${formatBytes(freed)} on disk`}`)
  }
  return disk
}

export const freedBytes = (d: DiskUse) => (d.before !== null && d.after !== null ? d.before - d.after : null)

/**
 * Deletes the plan's manifests through the API, then, with the registry
 * stopped, removes its tags and evicted repositories and runs distribution's
 * garbage-collect; starts it again whatever happened, and checks it answers.
 */
export async function applyPlan(run: Runner, registry: Registry, plan: GcPlan, running: boolean): Promise<void> {
  const base = registry.address.url
  await mapLimit(plan.manifests, 8, async (m) => {
    if (run.dryRun) log.out(`curl -X DELETE ${base}/v2/${m.repo}/manifests/${m.digest}`)
    else await deleteManifest(run, base, m.repo, m.digest)
  })
  const remove = [...plan.untag.map((t) => tagDirectory(t.repo, t.tag)), ...plan.evict]
  if (running) await docker.stopContainer(run, registry.name)
  try {
    await garbageCollect(run, registry.volume, registry.image, remove)
  } finally {
    if (running) await docker.startContainer(run, registry.name)
  }
  if (!running || run.dryRun) return
  // Success means the registry serves again, not only that its container started.
  const answer = await waitForV2(run, base, 30_000)
  if (!answer.ok)
    throw new UserError(
      `${registry.name} does not answer GET ${base}/v2/ after garbage-collect restarted it (${answer.error ?? `HTTP ${answer.status}`}): \`docker logs ${registry.name}\` shows why`,
    )
  log.info(`${registry.name} restarted and answers GET /v2/ again`)
}
