// This machine as a library meets it apart from commands, carried by the
// runner (exec.ts) so unit tests hand in fakes: the files devreg reads and
// changes itself (daemon.json, certs.d, /etc/hosts, its key, an archive), the
// clock polls wait on, and what the process was started with. Scripts get
// node:fs, unit tests a recording in-memory fake (test/kit/fake-files.ts).
// File failures are node's own (an Error with `code`: ENOENT, EACCES,
// ENOTEMPTY, EEXIST), so callers decide what each one means; under --dry-run
// nothing here prints instead of acting (Runner.writeFile does).
import { createWriteStream } from 'node:fs'
import { access, constants, link, mkdir, mkdtemp, readdir, readFile, rename, rm, rmdir, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Writable } from 'node:stream'

export interface Files {
  read(path: string): Promise<Buffer>
  readText(path: string): Promise<string>
  /** The names in a directory. */
  list(dir: string): Promise<string[]>
  /** Whether this process may write to path (a file, or a directory to create files in). */
  writable(path: string): Promise<boolean>
  /** A whole file; `mode` applies when it is new [default: 0o600]. */
  write(path: string, content: string | Uint8Array, opts?: { mode?: number }): Promise<void>
  /** A file too large to hold, written as it streams (mode 0600 when new). */
  writeStream(path: string): Writable
  /** A directory and its parents; one that exists is fine. */
  mkdir(dir: string, opts?: { mode?: number }): Promise<void>
  /** A file; none there is fine. */
  rm(path: string): Promise<void>
  /** An empty directory (ENOTEMPTY otherwise). */
  rmdir(dir: string): Promise<void>
  /** A second name for a file; EEXIST when the name is taken (so a file appears whole, or not at all). */
  link(existing: string, path: string): Promise<void>
  unlink(path: string): Promise<void>
  rename(from: string, to: string): Promise<void>
  /** A new empty directory under the system's temporary one. */
  mkdtemp(prefix: string): Promise<string>
}

/** The real file system. */
export const localFiles: Files = {
  read: (path) => readFile(path),
  readText: (path) => readFile(path, 'utf8'),
  list: (dir) => readdir(dir),
  writable: (path) =>
    access(path, constants.W_OK).then(
      () => true,
      () => false,
    ),
  write: (path, content, { mode = 0o600 } = {}) => writeFile(path, content, { mode }),
  writeStream: (path) => createWriteStream(path, { mode: 0o600 }),
  mkdir: async (dir, { mode } = {}) => void (await mkdir(dir, { recursive: true, mode })),
  rm: (path) => rm(path, { force: true }),
  rmdir: (dir) => rmdir(dir),
  link: (existing, path) => link(existing, path),
  unlink: (path) => unlink(path),
  rename: (from, to) => rename(from, to),
  mkdtemp: (prefix) => mkdtemp(join(tmpdir(), prefix)),
}

/** What this process was started with: read once, where a script builds its runner (cli.ts runnerFor). */
export interface Invocation {
  env: Readonly<Record<string, string | undefined>>
  /** stdin is a terminal (a question can be answered there); stderr is one (progress is redrawn in place). */
  tty: { stdin: boolean; stderr: boolean }
  /** The user this process runs as (0: root, nothing needs sudo); null where there are no uids (Windows). */
  uid: number | null
}

/** This process's environment, terminals and user. */
export function thisProcess(): Invocation {
  return {
    env: process.env,
    tty: { stdin: Boolean(process.stdin.isTTY), stderr: Boolean(process.stderr.isTTY) },
    uid: process.getuid?.() ?? null,
  }
}

/** Time as polls and waits read it. */
export interface Clock {
  now(): number
  sleep(ms: number): Promise<void>
}

export const systemClock: Clock = { now: () => Date.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) }

/** A file's text; null when it does not exist (any other failure is thrown). */
export async function readTextOrNull(files: Files, path: string): Promise<string | null> {
  try {
    return await files.readText(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}
