// The tar format, as much of it as devreg's archives need: regular files and
// directories, ustar names with a prefix, GNU long names (busybox tar writes
// them for names over 100 bytes) and pax path records. Streaming both ways,
// so a blob of gigabytes never sits in memory. Format: POSIX.1-1988 ustar and
// pax (IEEE 1003.1-2001), GNU tar's manual "Basic Tar Format".

export const BLOCK = 512

export interface TarHeader {
  path: string
  size: number
  /** Seconds since the epoch. */
  mtime: number
  mode: number
  /** '0' file, '5' directory; others are passed over by readers that only want files. */
  type: string
}

export interface TarEntry extends TarHeader {
  /** The entry's bytes, in chunks; must be drained (or left: the reader skips what is left). */
  body: AsyncGenerator<Buffer>
}

/** A malformed or cut-short tar stream. */
export class TarError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TarError'
  }
}

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  private chunks: Buffer[] = []
  private length = 0
  private ended = false
  /** Bytes handed out so far: where in the stream a problem is. */
  offset = 0
  private readonly it: AsyncIterator<Buffer | Uint8Array | string>

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    this.it = source[Symbol.asyncIterator]()
  }

  private async fill(n: number): Promise<void> {
    while (this.length < n && !this.ended) {
      const r = await this.it.next()
      if (r.done) this.ended = true
      else {
        const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value)
        if (b.length) {
          this.chunks.push(b)
          this.length += b.length
        }
      }
    }
  }

  /** Exactly n bytes, or null at a clean end of stream; a partial read is truncation. */
  async read(n: number): Promise<Buffer | null> {
    await this.fill(n)
    if (this.length === 0) return null
    if (this.length < n) throw new TarError(`cut short at byte ${this.offset + this.length}: expected ${n - this.length} more bytes`)
    return this.take(n)
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)
    const out = all.subarray(0, n)
    const rest = all.subarray(n)
    this.chunks = rest.length ? [rest] : []
    this.length = rest.length
    this.offset += n
    return out
  }

  /** n bytes as they arrive, without collecting them. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n
    while (left > 0) {
      if (this.length === 0) await this.fill(1)
      if (this.length === 0) throw new TarError(`cut short at byte ${this.offset}: expected ${left} more bytes`)
      const first = this.chunks[0]
      const part = first.length <= left ? first : first.subarray(0, left)
      if (part === first) this.chunks.shift()
      else this.chunks[0] = first.subarray(left)
      this.length -= part.length
      this.offset += part.length
      left -= part.length
      yield part
    }
  }
}

const text = (b: Buffer, start: number, len: number) => {
  const field = b.subarray(start, start + len)
  const nul = field.indexOf(0)
  return field.subarray(0, nul < 0 ? len : nul).toString('utf8')
}

function octal(b: Buffer, start: number, len: number, what: string, at: number): number {
  // GNU base-256 for numbers too large for the octal field.
  if (b[start] & 0x80) {
    let n = b[start] & 0x7f
    for (let i = 1; i < len; i++) n = n * 256 + b[start + i]
    return n
  }
  const s = text(b, start, len).trim()
  if (!/^[0-7]*$/.test(s)) throw new TarError(`bad ${what} field in the header at byte ${at}`)
  return s ? Number.parseInt(s, 8) : 0
}

const checksum = (b: Buffer) => {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : b[i]
  return sum
}

const isZero = (b: Buffer) => b.every((x) => x === 0)

export interface ReadOptions {
  /**
   * Read on past end-of-archive blocks (GNU tar's --ignore-zeros): several
   * tars written one after another, as `xargs tar -c` does, are one stream.
   * Without it the archive must end with its end blocks: a stream that stops
   * before them is cut short.
   */
  concatenated?: boolean
}

/** The entries of a tar stream; a bad header checksum, a cut-short stream or a missing end is a TarError. */
export async function* readTar(source: AsyncIterable<Buffer | Uint8Array | string>, opts: ReadOptions = {}): AsyncGenerator<TarEntry> {
  const r = new ByteReader(source)
  let longName: string | null = null
  let paxPath: string | null = null
  for (;;) {
    const at = r.offset
    const block = await r.read(BLOCK)
    if (!block) {
      if (opts.concatenated) return
      throw new TarError(`cut short at byte ${at}: the archive has no end`)
    }
    if (isZero(block)) {
      if (opts.concatenated) continue
      const second = await r.read(BLOCK)
      if (!second || !isZero(second)) throw new TarError(`a lone end block at byte ${at}`)
      return
    }
    const sum = octal(block, 148, 8, 'checksum', at)
    if (sum !== checksum(block)) throw new TarError(`header checksum mismatch at byte ${at}: the archive is corrupt`)
    const size = octal(block, 124, 12, 'size', at)
    const type = String.fromCharCode(block[156] || 48)
    const padded = Math.ceil(size / BLOCK) * BLOCK
    if (type === 'L' || type === 'x') {
      const data = await r.read(padded)
      if (!data) throw new TarError(`cut short at byte ${r.offset}`)
      const body = data.subarray(0, size)
      if (type === 'L') longName = text(body, 0, size)
      else paxPath = paxRecords(body).path ?? paxPath
      continue
    }
    const magic = text(block, 257, 6)
    const prefix = magic.startsWith('ustar') ? text(block, 345, 155) : ''
    const path = paxPath ?? longName ?? (prefix ? `${prefix}/${text(block, 0, 100)}` : text(block, 0, 100))
    longName = null
    paxPath = null
    const header: TarHeader = {
      path,
      size: type === '0' || type === '7' ? size : 0,
      mtime: octal(block, 136, 12, 'mtime', at),
      mode: octal(block, 100, 8, 'mode', at),
      type: type === '7' ? '0' : type,
    }
    let consumed = 0
    const body = (async function* () {
      for await (const part of r.stream(size)) {
        consumed += part.length
        yield part
      }
    })()
    yield { ...header, body }
    // What the reader left unread is skipped.
    for await (const part of r.stream(size - consumed)) consumed += part.length
    if (padded > size && !(await r.read(padded - size))) throw new TarError(`cut short at byte ${r.offset}: padding missing`)
  }
}

function paxRecords(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let i = 0
  while (i < body.length) {
    const sp = body.indexOf(32, i)
    if (sp < 0) break
    const len = Number.parseInt(body.subarray(i, sp).toString(), 10)
    if (!len) break
    const record = body.subarray(sp + 1, i + len - 1).toString('utf8')
    const eq = record.indexOf('=')
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1)
    i += len
  }
  return out
}

function headerBlock(name: string, prefix: string, h: Omit<TarHeader, 'path'>): Buffer {
  const b = Buffer.alloc(BLOCK)
  const put = (s: string, start: number, len: number) => b.write(s, start, len, 'utf8')
  const num = (n: number, start: number, len: number) => put(`${n.toString(8).padStart(len - 1, '0')}\0`, start, len)
  put(name, 0, 100)
  num(h.mode, 100, 8)
  num(0, 108, 8)
  num(0, 116, 8)
  num(h.size, 124, 12)
  num(Math.max(0, Math.floor(h.mtime)), 136, 12)
  put(h.type, 156, 1)
  put('ustar\0', 257, 6)
  put('00', 263, 2)
  put(prefix, 345, 155)
  put(`${checksum(b).toString(8).padStart(6, '0')}\0 `, 148, 8)
  return b
}

/**
 * The header of one entry: a plain ustar header when the path fits name and
 * prefix, else a GNU long-name entry first (which GNU and busybox tar read).
 */
export function tarHeader(h: TarHeader): Buffer {
  const bytes = Buffer.byteLength(h.path)
  if (bytes <= 100) return headerBlock(h.path, '', h)
  for (let i = h.path.indexOf('/'); i >= 0; i = h.path.indexOf('/', i + 1)) {
    const prefix = h.path.slice(0, i)
    const name = h.path.slice(i + 1)
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name) return headerBlock(name, prefix, h)
  }
  const long = Buffer.from(`${h.path}\0`)
  const pad = Buffer.alloc(Math.ceil(long.length / BLOCK) * BLOCK - long.length)
  return Buffer.concat([
    headerBlock('././@LongLink', '', { size: long.length, mtime: 0, mode: 0o644, type: 'L' }),
    long,
    pad,
    headerBlock(h.path.slice(0, 100), '', h),
  ])
}

/** Zero bytes after an entry of `size` bytes, up to the next block. */
export const tarPadding = (size: number) => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK)

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK)
