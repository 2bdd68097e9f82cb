// Import's first read of an archive: everything is checked before anything is
// touched (its manifest, every path against distribution's layout, every
// blob's sha256 and size, every link against the manifest, the end record).
// A damaged archive is a UserError saying what is wrong.
import { existsSync } from 'node:fs'
import { EXIT, UserError } from '../core/log.ts'
import { readTar, type TarEntry, TarError } from '../core/tar.ts'
import { classifyPath, type StorageFile, tagLinkPath } from '../registries/registry-layout.ts'
import { type ArchiveManifest, type ArchiveRegistry, FORMAT, MANIFEST, openArchive, parseEntryPath, sha256, TRAILER } from './archive.ts'

export interface ArchiveFile extends StorageFile {
  key: string
  size: number
}

export interface VerifiedArchive {
  manifest: ArchiveManifest
  files: ArchiveFile[]
}

class Corrupt extends Error {}

const DIGEST = /^sha256:[0-9a-f]{64}$/

function checkManifest(value: unknown): ArchiveManifest {
  const m = value as ArchiveManifest
  if (!m || typeof m !== 'object' || m.format !== FORMAT)
    throw new Corrupt(`it is not a devreg export (format ${JSON.stringify((m as { format?: unknown })?.format)}, expected ${FORMAT})`)
  if (!Array.isArray(m.registries)) throw new Corrupt('its manifest lists no registries')
  const keys = new Set<string>()
  for (const r of m.registries) {
    const ok =
      r &&
      typeof r.key === 'string' &&
      (r.key === 'local' || /^[a-z0-9.-]+(:[0-9]{1,5})?$/.test(r.key)) &&
      Array.isArray(r.repositories) &&
      r.blobs &&
      typeof r.blobs === 'object' &&
      Object.entries(r.blobs).every(([d, n]) => DIGEST.test(d) && Number.isSafeInteger(n) && n >= 0) &&
      r.repositories.every(
        (x) =>
          typeof x.name === 'string' &&
          x.tags &&
          typeof x.tags === 'object' &&
          Object.values(x.tags).every((d) => typeof d === 'string' && d in r.blobs),
      )
    if (!ok || keys.has(r.key)) throw new Corrupt(`its manifest's entry for ${JSON.stringify(r?.key)} is malformed`)
    keys.add(r.key)
  }
  return m
}

/**
 * Reads the whole archive and checks it, touching nothing: its manifest,
 * every path (distribution's layout only), every blob's sha256 and size,
 * every link's content, the trailer and the end. Any problem is a UserError
 * saying what is wrong.
 */
export async function verifyArchive(file: string, onBytes: (n: number) => void = () => {}): Promise<VerifiedArchive> {
  if (!existsSync(file)) throw new UserError(`${file}: no such file`, EXIT.usage)
  const read = await readArchive(file, onBytes)
  const manifest = checkComplete(file, read)
  return { manifest, files: read.files }
}

/** What one pass over an archive found, before the checks that need all of it. */
interface ArchiveRead {
  manifest: ArchiveManifest | null
  manifestDigest: string
  trailer: { manifestSha256?: string; files?: number } | null
  files: ArchiveFile[]
  /** `<key>/<path>` of every file read. */
  seen: Set<string>
  /** Blobs whose digest checked out, by registry key. */
  blobsSeen: Map<string, Set<string>>
}

/** Reads every entry, checking each on its own; a damaged archive is a UserError. */
async function readArchive(file: string, onBytes: (n: number) => void): Promise<ArchiveRead> {
  const read: ArchiveRead = { manifest: null, manifestDigest: '', trailer: null, files: [], seen: new Set(), blobsSeen: new Map() }
  let bytes = 0
  const addBytes = (n: number) => {
    bytes += n
    onBytes(bytes)
  }
  try {
    for await (const entry of readTar(await openArchive(file))) {
      if (read.trailer) throw new Corrupt(`${entry.path} follows the end record`)
      if (!read.manifest) {
        if (entry.path !== MANIFEST || entry.size > 64 << 20) throw new Corrupt(`it does not start with ${MANIFEST}`)
        const body = await collect(entry.body)
        read.manifestDigest = `sha256:${sha256().update(body).digest('hex')}`
        read.manifest = parseManifestEntry(body)
        continue
      }
      if (entry.path === TRAILER) {
        read.trailer = await readTrailerEntry(entry)
        continue
      }
      if (entry.type === 'directory') continue
      read.files.push(await checkStorageEntry(entry, read.manifest, read, addBytes))
    }
  } catch (err) {
    if (err instanceof Corrupt || err instanceof TarError) throw new UserError(`${file} is damaged: ${err.message}; nothing was imported`)
    if (String((err as NodeJS.ErrnoException).code).startsWith('Z_'))
      throw new UserError(`${file} is damaged: gzip: ${(err as Error).message}; nothing was imported`)
    throw err
  }
  return read
}

function parseManifestEntry(body: Buffer): ArchiveManifest {
  try {
    return checkManifest(JSON.parse(body.toString('utf8')))
  } catch (err) {
    throw err instanceof Corrupt ? err : new Corrupt(`its ${MANIFEST} is not JSON`)
  }
}

async function readTrailerEntry(entry: TarEntry): Promise<ArchiveRead['trailer']> {
  try {
    return JSON.parse((await collect(entry.body)).toString('utf8'))
  } catch {
    throw new Corrupt(`its ${TRAILER} is not JSON`)
  }
}

/** One file of a registry: where it goes, and that its content is what the manifest says. */
async function checkStorageEntry(
  entry: TarEntry,
  manifest: ArchiveManifest,
  read: Pick<ArchiveRead, 'seen' | 'blobsSeen'>,
  addBytes: (n: number) => void,
): Promise<ArchiveFile> {
  const at = parseEntryPath(entry.path)
  const record = at ? manifest.registries.find((r) => r.key === at.key) : undefined
  const f = at ? classifyPath(at.path) : null
  if (!record || !f || entry.type !== 'file') throw new Corrupt(`it holds ${entry.path}, which is no file of a registry it lists`)
  const id = `${record.key}/${f.path}`
  if (read.seen.has(id)) throw new Corrupt(`it holds ${entry.path} twice`)
  read.seen.add(id)
  if (f.kind === 'blob') {
    await checkBlobEntry(entry, record, f.digest as string, addBytes)
    const set = read.blobsSeen.get(record.key) ?? new Set()
    set.add(f.digest as string)
    read.blobsSeen.set(record.key, set)
  } else {
    if (entry.size > 100) throw new Corrupt(`link ${entry.path} is ${entry.size} bytes long`)
    const content = (await collect(entry.body)).toString('utf8')
    const repo = record.repositories.find((r) => r.name === f.repository)
    const want = f.kind === 'tag' ? repo?.tags[f.tag as string] : f.digest
    if (!want || content !== want)
      throw new Corrupt(`link ${entry.path} says ${JSON.stringify(content)}, its manifest ${want ?? 'nothing'}`)
    f.digest = content
  }
  return { ...f, key: record.key, size: entry.size }
}

async function checkBlobEntry(entry: TarEntry, record: ArchiveRegistry, digest: string, addBytes: (n: number) => void): Promise<void> {
  const expected = record.blobs[digest]
  if (expected === undefined) throw new Corrupt(`blob ${digest} of ${record.key} is not in its manifest`)
  if (entry.size !== expected) throw new Corrupt(`blob ${digest} of ${record.key} has ${entry.size} bytes, its manifest says ${expected}`)
  const hash = sha256()
  for await (const chunk of entry.body) {
    hash.update(chunk)
    addBytes(chunk.length)
  }
  const actual = `sha256:${hash.digest('hex')}`
  if (actual !== digest) throw new Corrupt(`blob ${digest} of ${record.key} does not match its digest (it hashes to ${actual})`)
}

/** The checks that need the whole archive: its end record, and every blob and tag its manifest lists. */
function checkComplete(file: string, read: ArchiveRead): ArchiveManifest {
  const { manifest, trailer, files } = read
  const fail = (what: string) => new UserError(`${file} is damaged: ${what}; nothing was imported`)
  if (!manifest) throw fail('it is empty')
  if (!trailer) throw fail(`it is cut short: ${TRAILER} is missing`)
  if (trailer.manifestSha256 !== read.manifestDigest) throw fail(`its ${MANIFEST} does not match the digest its end record gives`)
  if (trailer.files !== files.length) throw fail(`it holds ${files.length} files, its end record says ${trailer.files}`)
  for (const r of manifest.registries) {
    const have = read.blobsSeen.get(r.key) ?? new Set()
    const missing = Object.keys(r.blobs).filter((d) => !have.has(d))
    if (missing.length) throw fail(`${missing.length} blobs of ${r.key} are missing (e.g. ${missing[0]})`)
    for (const repo of r.repositories)
      for (const tag of Object.keys(repo.tags))
        if (!read.seen.has(`${r.key}/${tagLinkPath(repo.name, tag)}`)) throw fail(`the tag ${repo.name}:${tag} of ${r.key} is missing`)
  }
  return manifest
}

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const b of body) parts.push(b)
  return Buffer.concat(parts)
}
