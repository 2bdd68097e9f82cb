// Garbage collection as a plan: from what a registry stores and a policy, the
// tags and manifests that go, what is kept and why, and the bytes that frees.
// Pure, so every rule is tested without Docker; registry-gc.ts carries it out.
import type { DurationUnit } from '../core/duration.ts'
import { manifestClosure, type Storage, type StoredRepository } from './storage.ts'

export interface Policy {
  /** Keep the newest N tags of each repository. */
  keepLast: number | null
  /** Only what is older than this many seconds goes. */
  olderThan: number | null
  /** Only repositories whose name matches. */
  repo: RegExp | null
  /** Manifests no tag points at (and no kept index holds) go. */
  untagged: boolean
  /** Also delete what nodes hold and the newest tag of a repository. */
  force: boolean
}

export interface TagInfo {
  repo: string
  tag: string
  digest: string
  /** Seconds since the epoch that age and order go by. */
  time: number
}

export interface ManifestDeletion {
  repo: string
  digest: string
  /** The tags that pointed at it; empty for an untagged manifest or an index's platform manifest. */
  tags: string[]
  kind: 'index' | 'image' | 'unknown'
}

export interface GcPlan {
  /** Manifests deleted through the API (a local registry). */
  manifests: ManifestDeletion[]
  /** Tags removed while the manifest stays because another tag still points at it. */
  untag: TagInfo[]
  /** Whole repositories removed from a cache's storage. */
  evict: string[]
  /** What the policy selected and a rule kept, with the rule. */
  kept: { repo: string; tag: string | null; digest: string; reason: string }[]
  /** Stored blobs that nothing kept references afterwards. */
  reclaimBytes: number
  /** Stored blobs nothing references even now (garbage-collect removes them as well). */
  alreadyUnreferencedBytes: number
}

/** The units an age (--older-than 45m, 12h, 14d, 2w) takes: parseDuration(text, AGE_UNITS). */
export const AGE_UNITS: readonly DurationUnit[] = ['s', 'm', 'h', 'd', 'w']

/** A shell-style glob over repository names: * matches any run of characters (slashes too), ? one. */
export function repoGlob(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${body}$`)
}

/** Newest first: by time, then the tag name (numeric-aware) as the tie-break. */
export function newestFirst(a: TagInfo, b: TagInfo): number {
  return b.time - a.time || b.tag.localeCompare(a.tag, 'en', { numeric: true })
}

interface PlanInput {
  storage: Storage
  policy: Policy
  role: 'local' | 'cache'
  /** Seconds since the epoch. */
  now: number
  /** A tag's time: the image's created time on a local registry, the last pull on a cache. */
  tagTime: (repo: StoredRepository, tag: string, digest: string) => number
  /** Manifest digests the running nodes hold. */
  nodeDigests: Set<string>
}

export function planGc(input: PlanInput): GcPlan {
  const { storage, policy } = input
  const plan: GcPlan = { manifests: [], untag: [], evict: [], kept: [], reclaimBytes: 0, alreadyUnreferencedBytes: 0 }
  const held = heldManifests(storage, input.nodeDigests)
  const holds = (digest: string) => [...manifestClosure(storage, digest)].some((m) => held.has(m))
  const deleted = new Map<string, Set<string>>()
  for (const repo of storage.repositories.values()) {
    if (policy.repo && !policy.repo.test(repo.name)) continue
    const tags = [...repo.tags].map(([tag, l]) => ({ repo: repo.name, tag, digest: l.digest, time: input.tagTime(repo, tag, l.digest) }))
    tags.sort(newestFirst)
    const scope: RepositoryScope = { input, repo, tags, held, holds, plan }
    if (input.role === 'cache') planEviction(scope, deleted)
    else deleted.set(repo.name, planRepository(scope))
  }
  plan.untag.sort((a, b) => a.repo.localeCompare(b.repo) || newestFirst(b, a))
  Object.assign(plan, reclaim(storage, deleted))
  return plan
}

/** One repository being planned, and the plan it adds to. */
interface RepositoryScope {
  input: PlanInput
  repo: StoredRepository
  /** Its tags, newest first. */
  tags: TagInfo[]
  /** Every manifest a node holds. */
  held: Set<string>
  /** Whether a node holds the manifest or one within it. */
  holds: (digest: string) => boolean
  plan: GcPlan
}

/** Every manifest a node holds, an index's platform manifests included; a digest is held when it or a manifest within it is. */
function heldManifests(storage: Storage, nodeDigests: Set<string>): Set<string> {
  const held = new Set<string>()
  for (const d of nodeDigests) for (const m of manifestClosure(storage, d)) if (storage.manifests.has(m) || m === d) held.add(m)
  return held
}

const tagsOf = (s: RepositoryScope, digest: string) => s.tags.filter((t) => t.digest === digest)

/** Whether one of the indexes `among` lists `digest` as a platform manifest. */
const childOf = (s: RepositoryScope, digest: string, among: string[]) =>
  among.some((i) => s.input.storage.manifests.get(i)?.children.some((c) => c.digest === digest))

/** A local registry's repository: the manifests that go (returned), tags removed, and what a rule keeps. */
function planRepository(s: RepositoryScope): Set<string> {
  const { repo, plan } = s
  const { storage, policy } = s.input
  const going = goingTags(s)
  const gone = new Set<string>()
  for (const digest of new Set([...going].map((t) => t.digest))) {
    const all = tagsOf(s, digest)
    if (all.every((t) => going.has(t))) gone.add(digest)
    else plan.untag.push(...all.filter((t) => going.has(t)))
  }
  const indexes = [...repo.revisions].filter((d) => storage.manifests.get(d)?.kind === 'index')
  if (policy.untagged) addUntagged(s, gone, indexes)
  addPlatformManifests(s, gone, indexes)
  for (const digest of gone)
    plan.manifests.push({
      repo: repo.name,
      digest,
      tags: tagsOf(s, digest).map((t) => t.tag),
      kind: storage.manifests.get(digest)?.kind ?? 'unknown',
    })
  return gone
}

/** The tags --keep-last and --older-than select, less those a rule keeps (recorded in plan.kept). */
function goingTags(s: RepositoryScope): Set<TagInfo> {
  const { tags, plan } = s
  const { policy, now } = s.input
  const old = (t: TagInfo) => policy.olderThan === null || now - t.time >= policy.olderThan
  const selected = tags.filter((t, i) => (policy.keepLast !== null || policy.olderThan !== null) && i >= (policy.keepLast ?? 0) && old(t))
  const going = new Set<TagInfo>()
  for (const t of selected) {
    if (!policy.force && s.holds(t.digest)) plan.kept.push({ ...t, reason: 'a running node holds it (--force deletes it anyway)' })
    else if (!policy.force && t === tags[0] && policy.keepLast !== 0)
      plan.kept.push({ ...t, reason: 'the newest tag of the repository (--keep-last 0 or --force allows emptying it)' })
    else going.add(t)
  }
  return going
}

/** --untagged: manifests no tag points at and no index holds go, unless a node holds them. */
function addUntagged(s: RepositoryScope, gone: Set<string>, indexes: string[]): void {
  const { repo, plan } = s
  for (const digest of repo.revisions) {
    if (tagsOf(s, digest).length || childOf(s, digest, indexes)) continue
    if (!s.input.policy.force && s.holds(digest)) plan.kept.push({ repo: repo.name, tag: null, digest, reason: 'a running node holds it' })
    else gone.add(digest)
  }
}

/** An index goes whole: its platform manifests follow unless a tag or a kept index still needs them. */
function addPlatformManifests(s: RepositoryScope, gone: Set<string>, indexes: string[]): void {
  for (const digest of [...gone]) {
    for (const child of s.input.storage.manifests.get(digest)?.children ?? []) {
      if (!s.repo.revisions.has(child.digest) || tagsOf(s, child.digest).length) continue
      const keptIndexes = indexes.filter((i) => !gone.has(i))
      if (childOf(s, child.digest, keptIndexes)) continue
      if (!s.input.policy.force && s.held.has(child.digest)) continue
      gone.add(child.digest)
    }
  }
}

/** A cache keeps no tag history worth thinning: a repository goes whole, or stays. */
function planEviction(s: RepositoryScope, deleted: Map<string, Set<string>>): void {
  const { input, repo, tags, holds, plan } = s
  const { policy } = input
  const lastPulled = tags[0]?.time ?? 0
  if (policy.olderThan !== null && input.now - lastPulled < policy.olderThan) return
  if (policy.untagged && tags.length) return
  const holding = [...repo.revisions].find(holds)
  if (holding && !policy.force) {
    plan.kept.push({
      repo: repo.name,
      tag: null,
      digest: holding,
      reason: 'a running node holds an image of it (--force evicts it anyway)',
    })
    return
  }
  plan.evict.push(repo.name)
  deleted.set(repo.name, new Set(repo.revisions))
}

/** Bytes freed: blobs of deleted manifests that no remaining manifest in any repository references. */
function reclaim(storage: Storage, deleted: Map<string, Set<string>>) {
  const kept = new Set<string>()
  const freed = new Set<string>()
  for (const repo of storage.repositories.values()) {
    const gone = deleted.get(repo.name) ?? new Set()
    for (const d of repo.revisions) manifestClosure(storage, d, gone.has(d) ? freed : kept)
  }
  const bytes = (ds: Iterable<string>) => [...ds].reduce((n, d) => n + (storage.blobs.get(d) ?? 0), 0)
  return {
    reclaimBytes: bytes([...freed].filter((d) => !kept.has(d))),
    alreadyUnreferencedBytes: bytes([...storage.blobs.keys()].filter((d) => !kept.has(d) && !freed.has(d))),
  }
}
