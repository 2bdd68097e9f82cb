// The archive `dev-registry export` writes and `import` reads, for carrying
// caches between machines. A plain tar (gzip when asked): devreg-export.json
// first (what it holds: repositories, tags, digests, sizes, versions), then
// for each registry the files of distribution's storage under
// registries/<key>/ (<key> is `local` or the registry domain a cache mirrors, so an archive made
// with one config lands in the registries of another), blobs before links,
// and devreg-export.end.json last (the manifest's own digest and the file
// count, so a cut between two entries is told from an end). Only what a tag
// reaches is in it: its manifest, an index's platform manifests, configs and
// layers, and the link files distribution resolves them by.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { createGunzip, createGzip } from 'node:zlib'
import type { Registry } from '../core/config.ts'
import type { Files } from '../core/machine.ts'
import { TarWriter } from '../core/tar.ts'

export const FORMAT = 'devreg-export/1'
export const MANIFEST = 'devreg-export.json'
export const TRAILER = 'devreg-export.end.json'

export interface ArchiveRepository {
  name: string
  /** tag → manifest digest */
  tags: Record<string, string>
  /** Manifests (indexes and images) the tags reach. */
  manifests: string[]
  /** Configs and layers linked into the repository. */
  layers: string[]
}

export interface ArchiveRegistry {
  /** `local`, or the registry domain the cache mirrors: where import puts it. */
  key: string
  role: 'local' | 'cache'
  name: string
  /** The registry domain the cache mirrors (docker.io); null for the local registry. Archives made before have only `host`. */
  upstreamDomain?: string | null
  /** upstreamDomain's old name, still written until the next release. Import goes by `key`, so neither is needed to import. */
  host: string | null
  upstream: string | null
  volume: string
  image: string
  /** What `registry --version` says in the image, e.g. 2.8.2+ds1 or v3.0.0. */
  distribution: string | null
  repositories: ArchiveRepository[]
  /** Every blob exported (manifests, configs, layers): digest → bytes. */
  blobs: Record<string, number>
  files: number
  bytes: number
}

export interface ArchiveManifest {
  format: string
  devreg: string
  created: string
  registries: ArchiveRegistry[]
}

/** Where an archive files a registry's content: `local`, or the registry domain it caches. */
export const registryKey = (r: Pick<Registry, 'role' | 'upstreamDomain'>) => (r.role === 'local' ? 'local' : (r.upstreamDomain as string))

/** An archive entry's name for a file of a registry's storage. */
export const entryPath = (key: string, path: string) => `registries/${key}/${path}`

/** The registry key and storage path an entry's name gives; null for an entry that is no registry's file. */
export function parseEntryPath(name: string): { key: string; path: string } | null {
  const m = /^registries\/([^/]+)\/(.+)$/.exec(name)
  return m ? { key: m[1], path: m[2] } : null
}

export const sha256 = () => createHash('sha256')

/** Chunks as they pass, each shown to `see` first. */
export async function* tap(body: AsyncIterable<Buffer>, see: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    see(chunk)
    yield chunk
  }
}

/** Writes an archive beside its final name and moves it there only when complete. */
export class ArchiveWriter {
  private readonly tmp: string
  private readonly out: Writable
  private readonly head: Writable
  private readonly tar: TarWriter

  constructor(
    private readonly files: Files,
    private readonly file: string,
    gzip: boolean,
  ) {
    this.tmp = `${file}.partial-${process.pid}`
    this.out = files.writeStream(this.tmp)
    this.head = gzip ? createGzip() : this.out
    if (gzip) this.head.pipe(this.out)
    this.tar = new TarWriter((chunk) => writeTo(this.head, chunk))
  }

  /** One file of the archive; a body of many chunks streams through. */
  entry(path: string, mtime: number, size: number, body: Buffer | AsyncIterable<Buffer>): Promise<void> {
    return this.tar.add({ path, size, mtime, mode: 0o644 }, body)
  }

  async close(): Promise<void> {
    await this.tar.finish()
    this.head.end()
    await finished(this.out)
    await this.files.rename(this.tmp, this.file)
  }

  async abort(): Promise<void> {
    this.tar.abort(new Error('export aborted'))
    this.head.destroy()
    this.out.destroy()
    await this.files.rm(this.tmp)
  }
}

/** Writes to a file stream, waiting while it is full; its error (a full disk) fails the write. */
async function writeTo(w: Writable, chunk: Buffer): Promise<void> {
  if (w.write(chunk)) return
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      w.off('drain', onDrain)
      w.off('error', done)
      if (err) reject(err)
      else resolve()
    }
    const onDrain = () => done()
    w.once('drain', onDrain)
    w.once('error', done)
  })
}

/** The archive's bytes, unzipped when it is gzip (told by its magic number, not its name). */
export async function openArchive(file: string): Promise<Readable> {
  const fd = await open(file, 'r')
  const magic = Buffer.alloc(2)
  try {
    await fd.read(magic, 0, 2, 0)
  } finally {
    await fd.close()
  }
  const raw = createReadStream(file, { highWaterMark: 1 << 20 })
  if (magic[0] !== 0x1f || magic[1] !== 0x8b) return raw
  const gunzip = createGunzip()
  raw.on('error', (err) => gunzip.destroy(err))
  return raw.pipe(gunzip)
}
