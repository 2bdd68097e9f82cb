// Tar archives, read and written as streams through tar-stream
// (mafintosh/tar-stream): a blob of gigabytes never sits in memory, and the
// format's corners are the library's, not devreg's: sizes of any length
// (GNU base-256 from 8 GiB on, which busybox and GNU tar read), ustar
// prefixes, pax and GNU long names (busybox tar writes the latter), and
// several tars one after another (`xargs tar -c`) read as one stream.
import { extract, type Header, pack } from 'tar-stream'

export interface TarHeader {
  path: string
  size: number
  /** Seconds since the epoch. */
  mtime: number
  mode: number
  /** 'file', 'directory', …: readers that only want files pass over the rest. */
  type: Header['type']
}

export interface TarEntry extends TarHeader {
  /** The entry's bytes, in chunks; drain it or leave it (what is left is skipped). */
  body: AsyncIterable<Buffer>
}

/** A malformed or cut-short tar stream. */
export class TarError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TarError'
  }
}

/** tar-stream's messages, as devreg says them. */
function tarError(err: Error): TarError {
  if (/Unexpected end of data/.test(err.message)) return new TarError('cut short: the stream ends inside an entry')
  if (/Invalid tar header/.test(err.message))
    return new TarError('a header does not check out (bad checksum or not tar): the archive is corrupt')
  return new TarError(err.message)
}

/** Resolves once a stream that refused a write takes more; rejects when it fails or closes first. */
function drained(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      stream.off('drain', onDrain)
      stream.off('close', onClose)
      stream.off('error', onError)
      if (err) reject(err)
      else resolve()
    }
    const onDrain = () => done()
    const onClose = () => done(new Error('the stream closed before it took everything'))
    const onError = (err: Error) => done(err)
    stream.once('drain', onDrain)
    stream.once('close', onClose)
    stream.once('error', onError)
  })
}

/**
 * The entries of a tar stream. Zero blocks between tars are passed over, so
 * concatenated tars are one stream; an end is not required (devreg's archives
 * carry their own end record). A bad header or a stream cut inside an entry is
 * a TarError; an error of the source itself (gzip) is thrown as it is.
 */
export async function* readTar(
  source: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array>,
): AsyncGenerator<TarEntry> {
  const ex = extract()
  let sourceError: unknown = null
  const why = (err: unknown) => (err === sourceError || err instanceof TarError ? err : tarError(err as Error))
  const feeding = (async () => {
    for await (const chunk of source) if (!ex.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) await drained(ex)
    ex.end(null)
  })().catch((err) => {
    sourceError = err
    ex.destroy(err)
  })
  try {
    for await (const e of ex) {
      const h = e.header
      yield {
        path: h.name,
        size: h.size ?? 0,
        mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
        mode: h.mode ?? 0o644,
        type: h.type,
        body: (async function* () {
          try {
            for await (const chunk of e) yield chunk as Buffer
          } catch (err) {
            throw why(err)
          }
        })(),
      }
      // What the reader left unread is skipped.
      e.resume()
    }
    await feeding
  } catch (err) {
    throw why(err)
  } finally {
    ex.destroy()
  }
}

/**
 * A tar written entry by entry into `sink`, which takes each chunk in turn
 * and may fail (a pipe to a process that died, a full disk): the write in
 * progress then fails with the sink's error at once, as does every later one.
 */
export class TarWriter {
  private readonly pack = pack()
  private readonly pumped: Promise<void>
  /** Why the sink stopped taking chunks. */
  private failure: unknown = null

  constructor(sink: (chunk: Buffer) => Promise<void>) {
    this.pumped = (async () => {
      for await (const chunk of this.pack) await sink(chunk as Buffer)
    })()
    this.pumped.catch((err) => {
      this.failure ??= err
      this.pack.destroy()
    })
    // A failed pack is what failure or an entry's callback says.
    this.pack.on('error', () => {})
  }

  /** Waits for p, or fails as soon as the sink does, with the sink's error. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    const stopped = this.pumped.then(() => {
      throw new Error('the tar stream ended while an entry was written')
    })
    stopped.catch(() => {})
    try {
      return await Promise.race([p, stopped])
    } catch (err) {
      throw this.failure ?? err
    }
  }

  /** One file: `body` must be exactly `size` bytes. */
  async add(h: Omit<TarHeader, 'type'>, body: Buffer | AsyncIterable<Buffer>): Promise<void> {
    let settle: (err?: Error | null) => void = () => {}
    const written = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve())
    })
    written.catch(() => {})
    if (this.failure) throw this.failure
    const header = { name: h.path, size: h.size, mode: h.mode, mtime: new Date(h.mtime * 1000), type: 'file' as const }
    const entry = this.pack.entry(header, (err) => settle(err))
    // Its errors (a size mismatch) reach the callback above; the event would otherwise go unhandled.
    entry.on('error', () => {})
    for await (const chunk of Buffer.isBuffer(body) ? [body] : body) if (!entry.write(chunk)) await this.guard(drained(entry))
    entry.end(null)
    await this.guard(written)
  }

  /** Ends the tar and waits until the sink took all of it. */
  async finish(): Promise<void> {
    this.pack.finalize()
    await this.pumped
  }

  /** Stops writing: the sink gets nothing more. */
  abort(err: Error): void {
    this.failure ??= err
    this.pack.destroy(err)
  }
}

/** A whole tar of small files, in memory. */
export async function tarOf(files: { path: string; body: Buffer; mtime?: number }[]): Promise<Buffer> {
  const parts: Buffer[] = []
  const w = new TarWriter(async (chunk) => {
    parts.push(chunk)
  })
  for (const f of files) await w.add({ path: f.path, size: f.body.length, mtime: f.mtime ?? 0, mode: 0o644 }, f.body)
  await w.finish()
  return Buffer.concat(parts)
}
