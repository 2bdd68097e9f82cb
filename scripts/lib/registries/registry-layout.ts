// distribution's storage on disk, the one description devreg has of it
// (distribution's registry/storage/paths.go; the same in 2.8 and 3). Every
// module that reads or writes a registry volume takes its paths from here,
// and so do the shell programs in templates/, which get them as arguments:
//
//   /var/lib/registry/docker/registry/v2/          the filesystem driver's root
//     blobs/sha256/<2 hex>/<64 hex>/data           every blob, manifests too
//     repositories/<name>/
//       _layers/sha256/<hex>/link                  a config or layer linked in
//       _manifests/revisions/sha256/<hex>/link     a manifest the repository holds
//       _manifests/tags/<tag>/current/link         the tag's manifest
//       _manifests/tags/<tag>/index/sha256/<hex>/link   every manifest it had
//       _uploads/<id>/...                          uploads in progress
//
// A link holds the digest it names (`sha256:<hex>`). Paths here are relative
// to the volume's root unless they say otherwise.
import { REPOSITORY, TAG } from '../core/reference.ts'

/** Where distribution keeps its data in the registry:2 and registry:3 images: the volume's mount point. */
export const REGISTRY_DATA = '/var/lib/registry'
/** The filesystem driver's root inside the volume. */
export const STORAGE_ROOT = 'docker/registry/v2'

const BLOBS = `${STORAGE_ROOT}/blobs/sha256`
const REPOSITORIES = `${STORAGE_ROOT}/repositories`
const LAYERS = '_layers/sha256'
const REVISIONS = '_manifests/revisions/sha256'
const TAGS = '_manifests/tags'
const CURRENT = 'current/link'
const TAG_INDEX = 'index/sha256'

const hexOf = (digest: string) => digest.replace(/^sha256:/, '')
/** A blob's file from its digest's first two hex digits and the whole hex (strings or a sed's back-references). */
const blobFile = (fanOut: string, hex: string) => `${BLOBS}/${fanOut}/${hex}/data`

export const blobPath = (digest: string) => blobFile(hexOf(digest).slice(0, 2), hexOf(digest))
export const repositoryPath = (repository: string) => `${REPOSITORIES}/${repository}`
export const layerLinkPath = (repository: string, digest: string) => `${repositoryPath(repository)}/${LAYERS}/${hexOf(digest)}/link`
export const revisionLinkPath = (repository: string, digest: string) => `${repositoryPath(repository)}/${REVISIONS}/${hexOf(digest)}/link`
export const tagLinkPath = (repository: string, tag: string) => `${repositoryPath(repository)}/${TAGS}/${tag}/${CURRENT}`
export const tagIndexLinkPath = (repository: string, tag: string, digest: string) =>
  `${repositoryPath(repository)}/${TAGS}/${tag}/${TAG_INDEX}/${hexOf(digest)}/link`

/** The repositories directory as a helper container sees the volume (mounted at REGISTRY_DATA). */
export const REPOSITORIES_DIR = `${REGISTRY_DATA}/${REPOSITORIES}`
/** What removing a tag deletes, relative to REPOSITORIES_DIR: its directory, current link and index alike. */
export const tagDirectory = (repository: string, tag: string) => `${repository}/${TAGS}/${tag}`

/** The digest a blob's data path names: its last directory. */
export const digestOfBlobPath = (path: string) => `sha256:${path.split('/').at(-2)}`

const HEX = '[0-9a-f]{64}'
/** Each kind of file as a pattern over its path, with the grammar of repository and tag names given. */
const filePatterns = (repository: string, tag: string) => ({
  blob: `${BLOBS}/([0-9a-f]{2})/(${HEX})/data`,
  layer: `${REPOSITORIES}/(${repository})/${LAYERS}/(${HEX})/link`,
  revision: `${REPOSITORIES}/(${repository})/${REVISIONS}/(${HEX})/link`,
  tagIndex: `${REPOSITORIES}/(${repository})/${TAGS}/(${tag})/${TAG_INDEX}/(${HEX})/link`,
  tag: `${REPOSITORIES}/(${repository})/${TAGS}/(${tag})/${CURRENT}`,
})
const anchored = <K extends string>(patterns: Record<K, string>) =>
  Object.fromEntries(Object.entries(patterns).map(([k, p]) => [k, new RegExp(`^${p}$`)])) as Record<K, RegExp>

/** Names by the reference grammar (reference.ts): what an archive may carry. */
const STRICT = anchored(filePatterns(REPOSITORY, TAG))
export type FileKind = keyof typeof STRICT
/** The order files are written and linked in: content before anything that names it. */
export const FILE_ORDER: FileKind[] = ['blob', 'layer', 'revision', 'tagIndex', 'tag']

export interface StorageFile {
  /** Relative to the volume's root: docker/registry/v2/... */
  path: string
  kind: FileKind
  repository: string | null
  tag: string | null
  /** The blob a data file holds, or the digest a link names (a tag's: from its content). */
  digest: string | null
}

/** What a path in distribution's storage is; null for anything an archive must not carry. */
export function classifyPath(path: string): StorageFile | null {
  for (const kind of FILE_ORDER) {
    const m = STRICT[kind].exec(path)
    if (!m) continue
    switch (kind) {
      case 'blob':
        return m[2].startsWith(m[1]) ? { path, kind, repository: null, tag: null, digest: `sha256:${m[2]}` } : null
      case 'layer':
      case 'revision':
        return { path, kind, repository: m[1], tag: null, digest: `sha256:${m[2]}` }
      case 'tagIndex':
        return { path, kind, repository: m[1], tag: m[2], digest: `sha256:${m[3]}` }
      case 'tag':
        return { path, kind, repository: m[1], tag: m[2], digest: null }
    }
  }
  return null
}

/**
 * Any name distribution stored: what reading a volume takes as it is. A
 * manifest or layer a repository holds is its link file, not its directory:
 * distribution's DELETE of a manifest removes the link and leaves the
 * directory (seen on v3.1.1), so a directory alone is something deleted.
 */
const LISTED = anchored(filePatterns('.+?', '[^/]+'))

export type ListedPath =
  | { kind: 'blob'; digest: string }
  | { kind: 'revision' | 'layer'; repository: string; digest: string }
  | { kind: 'tag'; repository: string; tag: string }

/** What a path a volume listing shows is, for reading what the registry stores (lenient: any stored name); null for the rest. */
export function classifyListed(path: string): ListedPath | null {
  let m: RegExpExecArray | null
  if ((m = LISTED.blob.exec(path))) return { kind: 'blob', digest: `sha256:${m[2]}` }
  for (const kind of ['revision', 'layer'] as const)
    if ((m = LISTED[kind].exec(path))) return { kind, repository: m[1], digest: `sha256:${m[2]}` }
  if ((m = LISTED.tag.exec(path))) return { kind: 'tag', repository: m[1], tag: m[2] }
  return null
}

/** The same patterns as EREs over a path as `find .` prints it (./PATH), for the shell. */
const SHELL = filePatterns('.+', '[^/]+')
const ere = (pattern: string) => `\\./${pattern}`

/**
 * What templates/read-storage.sh `list` picks out of its listing, in the
 * order it takes them: tag links, manifest revisions, the sed that turns a
 * revision into its blob's path, layer links.
 */
export const LISTING_ARGS = [
  ere(SHELL.tag),
  ere(SHELL.revision),
  `s#.*/([0-9a-f]{2})([0-9a-f]{62})/link$#./${blobFile('\\1', '\\1\\2')}#`,
  ere(SHELL.layer),
]

/**
 * The order templates/volume-files.sh `commit` links a stage in, as globs for
 * `find . -path` (a * matches across /): content before anything that names it.
 */
export const COMMIT_ORDER: string[] = [
  `./${BLOBS}/*/data`,
  `./${REPOSITORIES}/*/${LAYERS}/*/link`,
  `./${REPOSITORIES}/*/${REVISIONS}/*/link`,
  `./${REPOSITORIES}/*/${TAGS}/*/${TAG_INDEX}/*/link`,
  `./${REPOSITORIES}/*/${TAGS}/*/${CURRENT}`,
]
