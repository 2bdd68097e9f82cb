// Garbage collection as a plan: from what a registry stores and a policy, the
// tags and manifests that go, what is kept and why, and the bytes that frees.
// Pure, so every rule is tested without Docker; registry-gc.ts carries it out.
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

/** Parses 14d, 12h, 30m, 45s or 2w into seconds; null when it is not a duration. */
export function parseAge(text: string): number | null {
  const m = /^(\d+)(s|m|h|d|w)$/.exec(text)
  if (!m) return null
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w']
}

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
  const { storage, policy, role } = input
  const plan: GcPlan = { manifests: [], untag: [], evict: [], kept: [], reclaimBytes: 0, alreadyUnreferencedBytes: 0 }
  // Every manifest a node holds, an index's platform manifests included; a
  // digest is held when it or a manifest within it is.
  const held = new Set<string>()
  for (const d of input.nodeDigests) for (const m of manifestClosure(storage, d)) if (storage.manifests.has(m) || m === d) held.add(m)
  const holds = (digest: string) => [...manifestClosure(storage, digest)].some((m) => held.has(m))
  const old = (t: TagInfo) => policy.olderThan === null || input.now - t.time >= policy.olderThan
  const deleted = new Map<string, Set<string>>()

  for (const repo of storage.repositories.values()) {
    if (policy.repo && !policy.repo.test(repo.name)) continue
    const tags = [...repo.tags].map(([tag, l]) => ({ repo: repo.name, tag, digest: l.digest, time: input.tagTime(repo, tag, l.digest) }))
    tags.sort(newestFirst)
    if (role === 'cache') {
      planEviction(input, repo, tags, holds, plan, deleted)
      continue
    }
    const selected = tags.filter((t, i) => (policy.keepLast !== null || policy.olderThan !== null) && i >= (policy.keepLast ?? 0) && old(t))
    const going = new Set<TagInfo>()
    for (const t of selected) {
      if (!policy.force && holds(t.digest)) plan.kept.push({ ...t, reason: 'a running node holds it (--force deletes it anyway)' })
      else if (!policy.force && t === tags[0] && policy.keepLast !== 0)
        plan.kept.push({ ...t, reason: 'the newest tag of the repository (--keep-last 0 or --force allows emptying it)' })
      else going.add(t)
    }
    const gone = new Set<string>()
    const tagsOf = (digest: string) => tags.filter((t) => t.digest === digest)
    for (const digest of new Set([...going].map((t) => t.digest))) {
      const all = tagsOf(digest)
      if (all.every((t) => going.has(t))) gone.add(digest)
      else plan.untag.push(...all.filter((t) => going.has(t)))
    }
    const indexes = [...repo.revisions].filter((d) => storage.manifests.get(d)?.kind === 'index')
    const childOf = (digest: string, among: string[]) =>
      among.some((i) => storage.manifests.get(i)?.children.some((c) => c.digest === digest))
    if (policy.untagged)
      for (const digest of repo.revisions) {
        if (tagsOf(digest).length || childOf(digest, indexes)) continue
        if (!policy.force && holds(digest)) plan.kept.push({ repo: repo.name, tag: null, digest, reason: 'a running node holds it' })
        else gone.add(digest)
      }
    // An index goes whole: its platform manifests follow unless a tag or a kept index still needs them.
    for (const digest of [...gone]) {
      for (const child of storage.manifests.get(digest)?.children ?? []) {
        if (!repo.revisions.has(child.digest) || tagsOf(child.digest).length) continue
        if (
          childOf(
            child.digest,
            indexes.filter((i) => !gone.has(i)),
          )
        )
          continue
        if (!policy.force && held.has(child.digest)) continue
        gone.add(child.digest)
      }
    }
    for (const digest of gone)
      plan.manifests.push({
        repo: repo.name,
        digest,
        tags: tagsOf(digest).map((t) => t.tag),
        kind: storage.manifests.get(digest)?.kind ?? 'unknown',
      })
    deleted.set(repo.name, gone)
  }
  plan.untag.sort((a, b) => a.repo.localeCompare(b.repo) || newestFirst(b, a))
  Object.assign(plan, reclaim(storage, deleted))
  return plan
}

/** A cache keeps no tag history worth thinning: a repository goes whole, or stays. */
function planEviction(
  input: PlanInput,
  repo: StoredRepository,
  tags: TagInfo[],
  holds: (digest: string) => boolean,
  plan: GcPlan,
  deleted: Map<string, Set<string>>,
): void {
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
