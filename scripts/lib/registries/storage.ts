// What a registry actually stores, read from its volume rather than its API:
// on a pull-through cache `tags/list` answers with the upstream's tags and a
// HEAD on an uncached blob downloads it, so only the storage layout tells what
// is cached. The volume is read through a short-lived helper container with
// the volume mounted read-only (the host's /var/lib/docker is out of reach on
// Docker Desktop and rootless Docker), in one pass: every link, every blob
// size and every manifest, each read once.

import { helperCommand } from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { UserError } from '../core/log.ts'
import { template } from '../core/templates.ts'
import { isIndex, type ManifestDocument, platformOf } from './distribution.ts'
import { blobPath, classifyListed, digestOfBlobPath, LISTING_ARGS, REGISTRY_DATA, REPOSITORIES_DIR } from './registry-layout.ts'

/**
 * Reads a volume in a read-only helper (templates/read-storage.sh): `list`
 * is one traversal of the volume, then only the files whose content matters
 * (which they are comes from registry-layout.ts); `blobs PATH...` folds each
 * file into one line. Parsed by parseListing.
 */
const READ_STORAGE = template('read-storage.sh')
const readStorageHelper = (volume: string, image: string, ...args: string[]) =>
  helperCommand(volume, image, { at: '/volume', readOnly: true, workdir: '/volume' }, 'sh', '-c', READ_STORAGE, 'read-storage', ...args)
/** Deletes paths under repositories/, then runs distribution's garbage-collect (templates/garbage-collect.sh). */
const GARBAGE_COLLECT = template('garbage-collect.sh')

export interface StoredTag {
  digest: string
  /** When the tag was last written: a push, or on a cache the last pull through it (seconds since the epoch). */
  linkedAt: number
}

export interface StoredRepository {
  name: string
  tags: Map<string, StoredTag>
  /** Manifests the repository holds (its revisions). */
  revisions: Set<string>
  /** Blobs linked into the repository (configs and layers). */
  layers: Set<string>
}

export interface StoredManifest {
  digest: string
  kind: 'index' | 'image'
  /** Index: its platform manifests. */
  children: { digest: string; platform: string | null }[]
  /** Image: its config and layers. */
  blobs: { digest: string; size: number }[]
  config: string | null
}

export interface Storage {
  repositories: Map<string, StoredRepository>
  /** Every blob in blobs/, manifests included: digest → bytes on disk. */
  blobs: Map<string, number>
  manifests: Map<string, StoredManifest>
  /**
   * REPO@DIGEST → when the blob was linked into the repository (ms since the
   * epoch): on a cache, when it stored that blob fetched from the upstream.
   */
  layerLinkedAt: Map<string, number>
  /** Disk used by the whole volume (du), null when not measured. */
  diskBytes: number | null
}

export function parseManifest(digest: string, doc: ManifestDocument): StoredManifest {
  if (isIndex(doc))
    return {
      digest,
      kind: 'index',
      children: (doc.manifests ?? []).map((d) => ({ digest: d.digest, platform: platformOf(d) })),
      blobs: [],
      config: null,
    }
  const blobs = [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])].map((d) => ({ digest: d.digest, size: d.size }))
  return { digest, kind: 'image', children: [], blobs, config: doc.config?.digest ?? null }
}

/**
 * Parses `read-storage.sh list` (pure, so it is tested without Docker): from
 * the S lines come blob sizes, each repository's manifests and layers (by
 * their link files), tag times and the disk used (du's blocks).
 */
export function parseListing(text: string): Storage {
  const storage: Storage = { repositories: new Map(), blobs: new Map(), manifests: new Map(), layerLinkedAt: new Map(), diskBytes: null }
  const repo = (name: string) => {
    let r = storage.repositories.get(name)
    if (!r) {
      r = { name, tags: new Map(), revisions: new Set(), layers: new Set() }
      storage.repositories.set(name, r)
    }
    return r
  }
  const mtimes = new Map<string, number>()
  const tagLinks: [string, string][] = []
  let blocks = 0
  for (const line of text.split('\n')) {
    const kind = line.slice(0, 2)
    if (kind === 'S ') {
      const [, b, size, mtime, full] = line.split(' ')
      blocks += Number(b)
      const path = full?.replace(/^\.\//, '') ?? ''
      const f = classifyListed(path)
      if (f?.kind === 'blob') storage.blobs.set(f.digest, Number(size))
      else if (f?.kind === 'revision') repo(f.repository).revisions.add(f.digest)
      else if (f?.kind === 'layer') repo(f.repository).layers.add(f.digest)
      else if (f?.kind === 'tag') mtimes.set(path, Number(mtime))
    } else if (kind === 'L ') {
      const rest = line.slice(4)
      const colon = rest.indexOf(':')
      tagLinks.push([rest.slice(0, colon), rest.slice(colon + 1).trim()])
    } else if (kind === 'T ') {
      // busybox's %y: 2026-01-31 08:00:00.123456789 +0000; milliseconds are enough.
      const [, date, time, zone, full] = line.split(' ')
      const f = classifyListed(full?.replace(/^\.\//, '') ?? '')
      const at = Date.parse(`${date}T${time?.slice(0, 12)}${zone?.replace(/(\d\d)$/, ':$1')}`)
      if (f?.kind === 'layer' && !Number.isNaN(at)) storage.layerLinkedAt.set(`${f.repository}@${f.digest}`, at)
    } else if (kind === 'M ') {
      const rest = line.slice(2)
      const sp = rest.indexOf(' ')
      const digest = digestOfBlobPath(rest.slice(0, sp))
      try {
        storage.manifests.set(digest, parseManifest(digest, JSON.parse(rest.slice(sp + 1)) as ManifestDocument))
      } catch {
        // Not JSON (a schema1 signed manifest or a foreign blob): sized, but not walked.
      }
    }
  }
  storage.diskBytes = blocks * 512
  for (const [path, digest] of tagLinks) {
    const f = classifyListed(path)
    if (f?.kind === 'tag') repo(f.repository).tags.set(f.tag, { digest, linkedAt: mtimes.get(path) ?? 0 })
  }
  return storage
}

/** Reads a registry volume's storage through a read-only helper container running `image`. */
export async function readStorage(run: Runner, volume: string, image: string): Promise<Storage> {
  const r = await run.probe(readStorageHelper(volume, image, 'list', ...LISTING_ARGS))
  if (!r.ok) throw new UserError(`cannot read volume ${volume} with ${image}: ${r.stderr.trim().split('\n')[0]}`)
  return parseListing(r.stdout)
}

/** Small blobs (image configs) by digest, read in one helper container; missing ones are left out. */
export async function readSmallBlobs(run: Runner, volume: string, image: string, digests: string[]): Promise<Map<string, string>> {
  if (!digests.length) return new Map()
  const r = await run.probe(readStorageHelper(volume, image, 'blobs', ...digests.map(blobPath)))
  const out = new Map<string, string>()
  for (const line of r.stdout.split('\n')) {
    const sp = line.indexOf(' ', 2)
    if (line.startsWith('M ') && sp > 0) out.set(digestOfBlobPath(line.slice(2, sp)), line.slice(sp + 1))
  }
  return out
}

/**
 * distribution's own garbage-collect on a registry volume, in a helper
 * container while the registry itself is stopped (it must serve no writes).
 * `remove` are paths relative to the repositories directory, deleted first: a tag's directory
 * (distribution 2.8 deletes tags only with their manifest) or a whole cached
 * repository (a proxy refuses API deletes). garbage-collect walks storage
 * directly, so it works on a cache whose delete setting is off.
 */
export async function garbageCollect(run: Runner, volume: string, image: string, remove: string[]): Promise<void> {
  await run.change(
    helperCommand(volume, image, { at: REGISTRY_DATA }, 'sh', '-c', GARBAGE_COLLECT, 'garbage-collect', REPOSITORIES_DIR, ...remove),
  )
}

/** Every blob a manifest needs that the storage holds, the manifest itself and an index's platform manifests included. */
export function manifestClosure(storage: Storage, digest: string, into = new Set<string>()): Set<string> {
  if (into.has(digest)) return into
  into.add(digest)
  const m = storage.manifests.get(digest)
  for (const child of m?.children ?? []) manifestClosure(storage, child.digest, into)
  for (const b of m?.blobs ?? []) into.add(b.digest)
  return into
}

export interface RepositoryStats {
  name: string
  tags: string[]
  /** Image manifests, an index counted as its platform manifests. */
  manifests: number
  indexes: number
  /** Bytes of every stored blob the repository references, each once within it. */
  size: number
}

export interface RegistryStats {
  repositories: number
  tags: number
  manifests: number
  indexes: number
  /** Distinct stored configs and layers referenced by some manifest. */
  blobs: number
  /** Sum over repositories of their size. */
  logicalBytes: number
  /** Every referenced stored blob counted once. */
  storedBytes: number
  /** 1 - stored/logical: what sharing layers saves. */
  dedupRatio: number
  /** Stored blobs nothing references: what `garbage-collect` would reclaim today. */
  unreferencedBytes: number
  perRepository: RepositoryStats[]
}

/** The numbers --stats reports, from storage only: a blob counts when it is on disk. */
export function registryStats(storage: Storage): RegistryStats {
  const referenced = new Set<string>()
  const manifestDigests = new Set<string>()
  const configsAndLayers = new Set<string>()
  const perRepository: RepositoryStats[] = []
  for (const repo of storage.repositories.values()) {
    const own = new Set<string>()
    let images = 0
    let indexes = 0
    for (const digest of repo.revisions) {
      const m = storage.manifests.get(digest)
      if (!m) continue
      if (m.kind === 'index') indexes++
      else images++
      manifestClosure(storage, digest, own)
    }
    let size = 0
    for (const d of own) {
      const bytes = storage.blobs.get(d)
      if (bytes === undefined) continue
      size += bytes
      referenced.add(d)
      if (storage.manifests.has(d)) manifestDigests.add(d)
      else configsAndLayers.add(d)
    }
    perRepository.push({ name: repo.name, tags: [...repo.tags.keys()].sort(), manifests: images, indexes, size })
  }
  perRepository.sort((a, b) => b.size - a.size || a.name.localeCompare(b.name))
  const sum = (ds: Iterable<string>) => [...ds].reduce((n, d) => n + (storage.blobs.get(d) ?? 0), 0)
  const logicalBytes = perRepository.reduce((n, r) => n + r.size, 0)
  const storedBytes = sum(referenced)
  return {
    repositories: perRepository.length,
    tags: perRepository.reduce((n, r) => n + r.tags.length, 0),
    manifests: perRepository.reduce((n, r) => n + r.manifests, 0),
    indexes: perRepository.reduce((n, r) => n + r.indexes, 0),
    blobs: configsAndLayers.size,
    logicalBytes,
    storedBytes,
    dedupRatio: logicalBytes ? 1 - storedBytes / logicalBytes : 0,
    unreferencedBytes: sum([...storage.blobs.keys()].filter((d) => !referenced.has(d))),
    perRepository,
  }
}
