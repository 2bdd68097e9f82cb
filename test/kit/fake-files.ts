// The files a unit test's devreg sees (scripts/lib/core/machine.ts Files): held in
// memory, so host-mirrors, etc-hosts and the key file are tested without a
// real /etc or $HOME, or, for tests that read what was written with node:fs,
// the real disk. `recorded` tells every change as the line a test asserts
// (`# write PATH`, `# remove PATH`, ...); a directory made for a file is part
// of writing it and is not told.
import { dirname, join } from 'node:path'
import { Writable } from 'node:stream'
import type { Files } from '../../scripts/lib/core/machine.ts'

/** An Error as node's fs throws it, with its code, syscall and path. */
function fsError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, syscall, path })
}

export interface MemoryFiles extends Files {
  /** Every file held: path → content. */
  readonly contents: Map<string, Buffer>
  /** A file's text, or null; for assertions. */
  text(path: string): string | null
}

/** Files held in memory, seeded with `initial`; `readOnly` paths (and everything under them) refuse changes with EACCES. */
export function memoryFiles(initial: Record<string, string | Buffer> = {}, readOnly: string[] = []): MemoryFiles {
  const contents = new Map(Object.entries(initial).map(([p, c]) => [p, Buffer.from(c)]))
  const dirs = new Set<string>()
  const addDirs = (path: string) => {
    for (let d = dirname(path); d !== dirname(d); d = dirname(d)) dirs.add(d)
  }
  for (const p of contents.keys()) addDirs(p)
  const isDir = (d: string) => dirs.has(d) || [...contents.keys()].some((p) => p.startsWith(`${d}/`))
  const denied = (path: string) => readOnly.some((r) => path === r || path.startsWith(`${r}/`))
  const get = (path: string) => {
    const c = contents.get(path)
    if (!c) throw fsError(isDir(path) ? 'EISDIR' : 'ENOENT', 'open', path)
    return c
  }
  const put = (path: string, content: string | Uint8Array, syscall = 'open') => {
    if (denied(path)) throw fsError('EACCES', syscall, path)
    addDirs(path)
    contents.set(path, Buffer.from(content))
  }
  const files: MemoryFiles = {
    contents,
    text: (path) => contents.get(path)?.toString('utf8') ?? null,
    read: async (path) => get(path),
    readText: async (path) => get(path).toString('utf8'),
    list: async (dir) => {
      if (!isDir(dir)) throw fsError('ENOENT', 'scandir', dir)
      const names = [...contents.keys(), ...dirs].filter((p) => dirname(p) === dir).map((p) => p.slice(dir.length + 1))
      return [...new Set(names)].sort()
    },
    writable: async (path) => !denied(path),
    write: async (path, content) => {
      put(path, content)
    },
    writeStream: (path) => {
      put(path, '')
      const parts: Buffer[] = []
      return new Writable({
        write(chunk: Buffer, _encoding, done) {
          parts.push(chunk)
          done()
        },
        final(done) {
          contents.set(path, Buffer.concat(parts))
          done()
        },
      })
    },
    mkdir: async (dir) => {
      if (isDir(dir)) return
      if (denied(dir)) throw fsError('EACCES', 'mkdir', dir)
      dirs.add(dir)
      addDirs(join(dir, 'x'))
    },
    rm: async (path) => {
      if (!contents.has(path)) return
      if (denied(path)) throw fsError('EACCES', 'unlink', path)
      contents.delete(path)
    },
    rmdir: async (dir) => {
      if (!isDir(dir)) throw fsError('ENOENT', 'rmdir', dir)
      if ([...contents.keys(), ...dirs].some((p) => dirname(p) === dir)) throw fsError('ENOTEMPTY', 'rmdir', dir)
      if (denied(dir)) throw fsError('EACCES', 'rmdir', dir)
      dirs.delete(dir)
    },
    link: async (existing, path) => {
      if (contents.has(path)) throw fsError('EEXIST', 'link', path)
      put(path, get(existing), 'link')
    },
    unlink: async (path) => {
      get(path)
      contents.delete(path)
    },
    rename: async (from, to) => {
      put(to, get(from), 'rename')
      contents.delete(from)
    },
    mkdtemp: async (prefix) => {
      let n = 0
      while (isDir(`/tmp/${prefix}${n}`)) n++
      dirs.add(`/tmp/${prefix}${n}`)
      return `/tmp/${prefix}${n}`
    },
  }
  return files
}

/** `files` with every change told to `record`; a file that was not there is not removed, and not told. */
export function recorded(files: Files, record: (line: string) => void): Files {
  const told =
    <A extends unknown[]>(fn: (...a: A) => Promise<void>, line: (...a: A) => string) =>
    async (...a: A) => {
      await fn(...a)
      record(line(...a))
    }
  return {
    ...files,
    write: told(files.write, (path) => `# write ${path}`),
    writeStream: (path) => {
      record(`# write ${path}`)
      return files.writeStream(path)
    },
    rm: async (path) => {
      const there = await files.read(path).then(
        () => true,
        () => false,
      )
      await files.rm(path)
      if (there) record(`# remove ${path}`)
    },
    rmdir: told(files.rmdir, (dir) => `# remove ${dir}/`),
    link: told(files.link, (existing, path) => `# link ${existing} ${path}`),
    unlink: told(files.unlink, (path) => `# remove ${path}`),
    rename: told(files.rename, (from, to) => `# rename ${from} ${to}`),
  }
}
