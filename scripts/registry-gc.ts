#!/usr/bin/env -S npx tsx
// What the local registry and the caches hold (--stats), and garbage
// collection by policy: a dry run by default, --apply to delete. Counts come
// from each registry's storage, read from its volume; deletions never touch
// what a running node holds or a repository's newest tag without --force.

import { nodeImageDigests } from './lib/cluster/nodes.ts'
import { findClusters } from './lib/cluster/providers/index.ts'
import { confirm, isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig, type Registry } from './lib/core/config.ts'
import * as docker from './lib/core/docker.ts'
import { parseDuration } from './lib/core/duration.ts'
import type { Runner } from './lib/core/exec.ts'
import { withLock } from './lib/core/lock.ts'
import { EXIT, formatBytes, log, table, UserError } from './lib/core/log.ts'
import { mapLimit } from './lib/core/pool.ts'
import { AGE_UNITS, type GcPlan, type Policy, planGc, repoGlob } from './lib/registries/gc.ts'
import { applyAll, checkApplicable, type DiskUse, freedBytes, planSummary, type RegistryPlan } from './lib/registries/gc-apply.ts'
import { REGISTRY_NAMES, selectRegistries } from './lib/registries/registry-names.ts'
import { readSmallBlobs, readStorage, registryStats, type Storage } from './lib/registries/storage.ts'

const USAGE = `Usage: registry-gc --stats [options]
       registry-gc POLICY... [--apply] [options]

Stats: repositories, tags, manifests, blobs, logical and stored size, the
share deduplication saves, disk used and the largest repositories, for every
registry devreg manages (read from their volumes: a cache's API would count
the upstream's tags).

Garbage collection lists what a policy would delete and the bytes it frees;
--apply deletes it, then runs the registry's own garbage-collect with the
registry stopped for a moment and restarted as it was. On the local registry
tags and manifests go; on a cache whole repositories are evicted (they pull
again from the upstream the next time). Never deleted without --force: an
image a running node of the devreg cluster holds, and a repository's newest
tag (unless --keep-last 0).

Policies (combine them: what goes must match all):
  --keep-last N       keep the newest N tags of each repository (by the image's
                      created time, tag name as tie-break); local registry only
  --older-than AGE    only what is older than AGE (45m, 12h, 14d, 2w): on the
                      local registry by the image's created time, on a cache by
                      the last pull through it
  --untagged          manifests no tag points at (never an index's platform
                      manifests while the index stays); on a cache,
                      repositories without tags
  --repo GLOB         only repositories matching GLOB (* matches across /)

Options:
  --stats             show what each registry holds
  --registry NAME     only this registry: ${REGISTRY_NAMES}
  --apply             delete (asks first on a terminal)
  --yes, -y           do not ask
  --force             also delete what nodes hold and newest tags
  --json              machine-readable output
  --config PATH       read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --dry-run           with --apply: print the commands and API calls instead
  --verbose, -v       echo every command
  --help, -h          show this help

Examples:
  registry-gc --stats
  registry-gc --keep-last 5                      # what would go; nothing deleted
  registry-gc --keep-last 5 --repo 'acme/*' --apply
  registry-gc --older-than 30d --registry kind-cache-docker-io --apply --yes`

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(
    argv,
    {
      string: ['config', 'registry', 'keep-last', 'older-than', 'repo'],
      boolean: ['stats', 'untagged', 'apply', 'yes', 'force', 'json', 'dry-run', 'verbose', 'help'],
      alias: { y: 'yes', v: 'verbose', h: 'help' },
    },
    USAGE,
  )
  if (!args) return 0
  const run = runnerFor(args)
  const policy = parsePolicy(args)
  if (args.stats && policy) throw new UserError('--stats only reports: run it without a policy, or the policy without --stats', EXIT.usage)
  if (!args.stats && !policy)
    throw new UserError(`choose --stats, or a policy (--keep-last N, --older-than AGE, --untagged)\n\n${USAGE}`, EXIT.usage)
  if (args.stats && (args.apply || args.force)) throw new UserError('--apply and --force go with a policy, not --stats', EXIT.usage)

  const config = loadConfig({ configPath: args.config, env: run.env })
  const registries = selectRegistries(config, args.registry === undefined ? [] : [args.registry], { none: 'all' })
  // One `docker ps` for the whole run; without a daemon every volume would look missing, so it says what is wrong instead.
  const containers = await docker.listContainers(run)
  if (!policy) return stats(run, registries, args.json)
  if (policy.keepLast !== null && args.registry && registries[0].role === 'cache')
    throw new UserError(
      `--keep-last does not apply to ${args.registry}: a cache evicts whole repositories; use --older-than AGE (last pulled) or --repo GLOB`,
      2,
    )
  const opts = { apply: args.apply, yes: args.yes, json: args.json }
  if (!args.apply) return gc(run, config, registries, containers, policy, opts)
  // --apply stops registries and deletes under them: one run at a time, planned
  // from what Docker shows once the lock is ours (a run we waited for may have changed it).
  const apply = async () => gc(run, config, registries, await docker.listContainers(run), policy, opts)
  return withLock(run, config, 'registry-gc --apply', apply, { scope: 'registries' })
}

function parsePolicy(args: Record<string, unknown>): Policy | null {
  const keepText = args['keep-last'] as string | undefined
  const ageText = args['older-than'] as string | undefined
  if (keepText !== undefined && !/^\d+$/.test(keepText))
    throw new UserError(`--keep-last ${JSON.stringify(keepText)} is not a count: use a whole number such as 5`, EXIT.usage)
  const ageMs = ageText === undefined ? null : parseDuration(ageText, AGE_UNITS)
  const olderThan = ageMs === null ? null : ageMs / 1000
  if (ageText !== undefined && olderThan === null)
    throw new UserError(
      `--older-than ${JSON.stringify(ageText)} is not an age: use a number and a unit, e.g. 45m, 12h, 14d or 2w`,
      EXIT.usage,
    )
  const keepLast = keepText === undefined ? null : Number(keepText)
  const untagged = Boolean(args.untagged)
  const repoText = args.repo as string | undefined
  if (repoText !== undefined && !/^[a-z0-9*?][a-z0-9._/*?-]*$/.test(repoText))
    throw new UserError(
      `--repo ${JSON.stringify(repoText)} is not a repository glob: use lowercase names, / and *, e.g. 'acme/*'`,
      EXIT.usage,
    )
  if (keepLast === null && olderThan === null && !untagged) {
    if (repoText !== undefined)
      throw new UserError('--repo narrows a policy: add --keep-last N, --older-than AGE or --untagged', EXIT.usage)
    return null
  }
  return { keepLast, olderThan, untagged, repo: repoText === undefined ? null : repoGlob(repoText), force: Boolean(args.force) }
}

interface Snapshot {
  registry: Registry
  storage: Storage | null
  diskBytes: number | null
}

/** Each registry's storage and disk use, read in parallel through helper containers. */
async function snapshots(run: Runner, registries: Registry[]): Promise<Snapshot[]> {
  return mapLimit(registries, 4, async (registry) => {
    if (!(await docker.volumeExists(run, registry.volume))) return { registry, storage: null, diskBytes: null }
    const storage = await readStorage(run, registry.volume, registry.image)
    return { registry, storage, diskBytes: storage.diskBytes }
  })
}

async function stats(run: Runner, registries: Registry[], json: boolean): Promise<number> {
  const rows = (await snapshots(run, registries)).map(({ registry: r, storage, diskBytes }) => ({
    name: r.name,
    role: r.role,
    upstream: r.upstream,
    volume: r.volume,
    ...(storage ? registryStats(storage) : null),
    diskBytes,
  }))
  if (json) {
    const out = rows.map(({ perRepository, ...rest }) => ({
      ...rest,
      perRepository: (perRepository ?? []).map(({ name, tags, size }) => ({ name, tags, size })),
    }))
    log.out(JSON.stringify(out, null, 2))
    return 0
  }
  const n = (v: number | undefined) => (v === undefined ? '-' : String(v))
  const b = (v: number | null | undefined) => (v === undefined || v === null ? '-' : formatBytes(v))
  log.out(
    table(
      ['REGISTRY', 'ROLE', 'REPOS', 'TAGS', 'MANIFESTS', 'BLOBS', 'LOGICAL', 'STORED', 'DEDUP SAVES', 'DISK'],
      rows.map((r) => [
        r.name,
        r.role,
        n(r.repositories),
        n(r.tags),
        n(r.manifests),
        n(r.blobs),
        b(r.logicalBytes),
        b(r.storedBytes),
        r.dedupRatio === undefined ? '-' : `${(r.dedupRatio * 100).toFixed(0)}%`,
        r.diskBytes === null ? 'no volume' : b(r.diskBytes),
      ]),
    ),
  )
  for (const r of rows) {
    const top = (r.perRepository ?? []).slice(0, 5)
    if (!top.length) continue
    log.out(`\nlargest in ${r.name}:`)
    log.out(
      table(
        ['  REPOSITORY', 'TAGS', 'SIZE'],
        top.map((p) => [`  ${p.name}`, String(p.tags.length), formatBytes(p.size)]),
      ),
    )
  }
  if (rows.some((r) => r.unreferencedBytes))
    log.info(
      `\nunreferenced blobs: ${rows
        .filter((r) => r.unreferencedBytes)
        .map((r) => `${r.name} ${formatBytes(r.unreferencedBytes ?? 0)}`)
        .join(', ')} (the next registry-gc --apply frees them)`,
    )
  return 0
}

/** Digests the running nodes of the devreg cluster hold; a node that cannot be asked stops GC unless --force. */
async function heldByNodes(run: Runner, config: Config, containers: docker.Container[], force: boolean): Promise<Set<string>> {
  const held = new Set<string>()
  const clusters = findClusters(config.cluster.name, containers)
  for (const node of clusters.flatMap((c) => c.nodes).filter((n) => n.running)) {
    const digests = await nodeImageDigests(run, node.name)
    if (digests) for (const d of digests) held.add(d)
    else if (!force)
      throw new UserError(`cannot list the images node ${node.name} holds (ctr images list failed): start the cluster, or pass --force`)
  }
  return held
}

/** Image created times (seconds) for the manifests tags point at, from their configs. */
async function createdTimes(run: Runner, registry: Registry, storage: Storage): Promise<Map<string, number>> {
  const configsOf = (digest: string): string[] => {
    const m = storage.manifests.get(digest)
    if (!m) return []
    return m.kind === 'index' ? m.children.flatMap((c) => configsOf(c.digest)) : m.config ? [m.config] : []
  }
  const tagged = new Set([...storage.repositories.values()].flatMap((r) => [...r.tags.values()].map((t) => t.digest)))
  const wanted = [...new Set([...tagged].flatMap(configsOf))]
  const configs = await readSmallBlobs(run, registry.volume, registry.image, wanted)
  const created = new Map<string, number>()
  for (const digest of tagged) {
    const times = configsOf(digest).map((c) => {
      try {
        return Date.parse((JSON.parse(configs.get(c) ?? '{}') as { created?: string }).created ?? '') / 1000
      } catch {
        return Number.NaN
      }
    })
    // Reproducible builds set created to the epoch: such an image has no usable age.
    const valid = times.filter((t) => Number.isFinite(t) && t > 946684800)
    if (valid.length) created.set(digest, Math.max(...valid))
  }
  return created
}

interface GcOptions {
  apply: boolean
  yes: boolean
  json: boolean
}

async function gc(
  run: Runner,
  config: Config,
  registries: Registry[],
  containers: docker.Container[],
  policy: Policy,
  opts: GcOptions,
): Promise<number> {
  const plans = await planAll(run, config, registries, containers, policy, opts.json)
  const work = plans.filter(({ plan }) => plan.manifests.length || plan.untag.length || plan.evict.length)
  if (!opts.json) for (const { registry, plan } of plans) printPlan(registry, plan)
  const total = work.reduce((n, w) => n + w.plan.reclaimBytes, 0)
  if (!work.length || !opts.apply) {
    if (opts.json) printJson(plans)
    else if (!work.length) log.info('nothing to delete')
    else log.info(`dry run: nothing deleted; about ${formatBytes(total)} would be freed. Rerun with --apply to delete.`)
    return 0
  }
  await checkApplicable(run, work, containers)
  if (!run.dryRun) {
    const what = work.map(({ registry, plan }) => `${registry.name}: ${planSummary(plan)}`).join('; ')
    if (!(await confirm(run, `${what}. Free about ${formatBytes(total)}?`, opts.yes))) {
      log.info('nothing deleted')
      return 1
    }
  }
  const disk = await applyAll(run, work, containers, opts.json)
  if (opts.json) printJson(plans, disk)
  return 0
}

/** Each registry's plan under the policy; a cache is skipped under --keep-last. */
async function planAll(
  run: Runner,
  config: Config,
  registries: Registry[],
  containers: docker.Container[],
  policy: Policy,
  json: boolean,
): Promise<RegistryPlan[]> {
  const nodeDigests = await heldByNodes(run, config, containers, policy.force)
  const now = Date.now() / 1000
  const plans: RegistryPlan[] = []
  for (const { registry, storage } of await snapshots(run, registries)) {
    if (!storage) continue
    if (registry.role === 'cache' && policy.keepLast !== null) {
      if (!json) log.info(`${registry.name}: skipped (--keep-last applies to the local registry; caches evict by --older-than)`)
      continue
    }
    const created = registry.role === 'local' ? await createdTimes(run, registry, storage) : new Map<string, number>()
    const plan = planGc({
      storage,
      policy,
      role: registry.role,
      now,
      nodeDigests,
      tagTime: (repo, tag, digest) => created.get(digest) ?? repo.tags.get(tag)?.linkedAt ?? 0,
    })
    plans.push({ registry, plan })
  }
  return plans
}

/** --json: every plan, with the disk use measured around each applied one. */
function printJson(plans: RegistryPlan[], disk: Map<string, DiskUse> = new Map()): void {
  const out = plans.map(({ registry, plan }) => {
    const d = disk.get(registry.name)
    const applied = d ? { diskBytesBefore: d.before, diskBytesAfter: d.after, freedBytes: freedBytes(d) } : null
    return { registry: registry.name, role: registry.role, ...plan, applied }
  })
  log.out(JSON.stringify(out, null, 2))
}

function printPlan(registry: Registry, plan: GcPlan): void {
  const short = (d: string) => d.slice(0, 19)
  const rows = [
    ...plan.manifests.map((m) => [
      'delete',
      `${m.repo}@${short(m.digest)}`,
      m.tags.length ? `tags ${m.tags.join(', ')}` : m.kind === 'image' ? 'untagged or platform manifest' : m.kind,
    ]),
    ...plan.untag.map((t) => ['untag', `${t.repo}:${t.tag}`, `manifest ${short(t.digest)} stays (other tags)`]),
    ...plan.evict.map((r) => ['evict', r, 'whole repository; pulls again from the upstream']),
    ...plan.kept.map((k) => ['keep', k.tag ? `${k.repo}:${k.tag}` : `${k.repo}@${short(k.digest)}`, k.reason]),
  ]
  if (!rows.length) return
  log.out(`${registry.name} (${registry.role}):`)
  log.out(
    table(
      ['  ACTION', 'WHAT', 'WHY'],
      rows.map(([a, ...rest]) => [`  ${a}`, ...rest]),
    ),
  )
  log.out(
    `  frees about ${formatBytes(plan.reclaimBytes)}${plan.alreadyUnreferencedBytes ? ` (plus ${formatBytes(plan.alreadyUnreferencedBytes)} already unreferenced)` : ''}\n`,
  )
}

if (isMain(import.meta.url)) await runMain(main)
