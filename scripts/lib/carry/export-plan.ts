// What `dev-registry export` takes from a volume (pure, so it is tested
// without Docker): what the tags reach and the volume holds, with the link
// files distribution resolves them by, in the order import links them in.

import {
  blobPath,
  classifyPath,
  FILE_ORDER,
  layerLinkPath,
  revisionLinkPath,
  type StorageFile,
  tagIndexLinkPath,
  tagLinkPath,
} from '../registries/registry-layout.ts'
import { manifestClosure, type Storage, type StoredRepository } from '../registries/storage.ts'
import type { ArchiveRepository } from './archive.ts'

export interface PlannedFile extends StorageFile {
  /** Bytes of a blob; a link's length. */
  size: number
  /** A link's content, as distribution writes it. */
  content: string | null
}

export interface ExportPlan {
  repositories: ArchiveRepository[]
  blobs: Record<string, number>
  files: PlannedFile[]
  /** Tags whose manifest the volume does not hold (a cache that never finished storing it). */
  skipped: string[]
}

type AddFile = (f: Omit<PlannedFile, 'size'> & { size?: number }) => void

/** What to export from a volume's storage: what its tags reach and it holds. */
export function planExport(storage: Storage): ExportPlan {
  const files = new Map<string, PlannedFile>()
  const add: AddFile = (f) => files.set(f.path, { ...f, size: f.size ?? Buffer.byteLength(f.content ?? '') })
  const blobs: Record<string, number> = {}
  const repositories: ArchiveRepository[] = []
  const skipped: string[] = []
  for (const repo of [...storage.repositories.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const out = planRepository(storage, repo, add, blobs, skipped)
    if (out) repositories.push(out)
  }
  const ordered = [...files.values()].sort(
    (a, b) => FILE_ORDER.indexOf(a.kind) - FILE_ORDER.indexOf(b.kind) || a.path.localeCompare(b.path),
  )
  return { repositories, blobs, files: ordered, skipped }
}

/** One repository's part of the plan, null when none of its tags can go; tags left out go to `skipped`. */
function planRepository(
  storage: Storage,
  repo: StoredRepository,
  add: AddFile,
  blobs: Record<string, number>,
  skipped: string[],
): ArchiveRepository | null {
  const out: ArchiveRepository = { name: repo.name, tags: {}, manifests: [], layers: [] }
  const manifests = new Set<string>()
  const layers = new Set<string>()
  for (const [tag, { digest }] of [...repo.tags].sort(([a], [b]) => a.localeCompare(b))) {
    if (!storage.blobs.has(digest) || !repo.revisions.has(digest) || !classifyPath(tagLinkPath(repo.name, tag))) {
      skipped.push(`${repo.name}:${tag}`)
      continue
    }
    out.tags[tag] = digest
    addTagLinks(add, repo.name, tag, digest)
    for (const d of manifestClosure(storage, digest)) {
      if (!storage.blobs.has(d)) continue
      if (repo.revisions.has(d) && storage.manifests.has(d)) manifests.add(d)
      else if (repo.layers.has(d)) layers.add(d)
    }
  }
  if (!Object.keys(out.tags).length) return null
  for (const [set, kind, linkPath] of [
    [manifests, 'revision', revisionLinkPath],
    [layers, 'layer', layerLinkPath],
  ] as const)
    for (const d of [...set].sort()) {
      blobs[d] = storage.blobs.get(d) as number
      add({ path: blobPath(d), kind: 'blob', repository: null, tag: null, digest: d, content: null, size: blobs[d] })
      add({ path: linkPath(repo.name, d), kind, repository: repo.name, tag: null, digest: d, content: d })
    }
  out.manifests = [...manifests].sort()
  out.layers = [...layers].sort()
  return out
}

/** The two links a tag is: its current manifest and its entry in the tag's index. */
function addTagLinks(add: AddFile, repository: string, tag: string, digest: string): void {
  add({ path: tagLinkPath(repository, tag), kind: 'tag', repository, tag, digest, content: digest })
  add({ path: tagIndexLinkPath(repository, tag, digest), kind: 'tagIndex', repository, tag, digest, content: digest })
}
