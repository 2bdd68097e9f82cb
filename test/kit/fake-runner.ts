// A Runner that runs nothing: it answers each command and HTTP request from a
// list of canned replies and records every call and file change, so unit
// tests can assert what devreg's orchestration would do, in order, without
// Docker, kind, kubectl, a socket or a real /etc. Its files are in memory
// (test/kit/fake-files.ts), its clock jumps instead of waiting, and its
// environment is empty and has no terminal unless a test says otherwise. A
// streamed command is a fake process behind the real runner's own Streamed
// (exec.ts `streamed`): it reads its stdin through a pipe of a pipe's size,
// answers on stdout, and can die halfway through its input as a helper
// container does.
import type { ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import {
  type CommandOptions,
  notFound,
  ProgramNotFound,
  type Result,
  type Runner,
  type Streamed,
  show,
  streamed,
} from '../../scripts/lib/core/exec.ts'
import { CommandError } from '../../scripts/lib/core/log.ts'
import { type Clock, type Files, type Invocation, localFiles } from '../../scripts/lib/core/machine.ts'
import { type MemoryFiles, memoryFiles, recorded } from './fake-files.ts'

/** `file`: a change the code made through run.files directly (write, remove, link, rename). */
export type CallKind = 'probe' | 'change' | 'pipe' | 'passthrough' | 'writeFile' | 'stream' | 'http' | 'file'

export interface Call {
  kind: CallKind
  /** http: [METHOD, url]. */
  argv: string[]
  /** How the real runner would show it (`docker rm --force …`, `a | b`, `# write PATH`, `GET http://…`). */
  line: string
  opts?: CommandOptions
  /** writeFile: the content. */
  content?: string
  /** stream: the bytes the process read from its stdin, once it is gone. */
  stdin?: Buffer
}

/** What a streamed command does. */
export interface StreamAnswer {
  /** Its stdout, written once its stdin is closed (at once without stdin); a function sees what it read. */
  stdout?: Buffer | string | ((stdin: Buffer) => Buffer | string | Promise<Buffer | string>)
  stderr?: string
  exitCode?: number
  /** Dies (exitCode, default 1) after reading this many bytes of its stdin, leaving the rest in the pipe: a helper that crashed. */
  readsOnly?: number
  missing?: boolean
}

type Answer = Partial<Result> | StreamAnswer

/** A reply to every command whose argv starts with `prefix` (strings match exactly, RegExps test one argument). */
export interface Reply {
  prefix: (string | RegExp)[]
  /** stdout (exit 0), or a whole result (a stream: a StreamAnswer); a function sees the argv. */
  result: string | Answer | ((argv: string[], opts?: CommandOptions) => string | Answer)
  /** Answer only this many times (then the next matching reply is used). */
  times?: number
}

/** What an HTTP request gets: a response, or no connection at all (as when nothing listens). */
export type HttpAnswer = { status?: number; headers?: Record<string, string>; body?: string | Uint8Array; json?: unknown } | 'refused'

/** A reply to every request of `method` whose URL is `url` (a RegExp tests it); a function sees the URL and init. */
export interface HttpReply {
  method: string
  url: string | RegExp
  answer: HttpAnswer | ((url: string, init?: RequestInit) => HttpAnswer | Promise<HttpAnswer>)
  times?: number
}

export interface FakeRunner extends Runner {
  calls: Call[]
  /** The lines of the calls that change something (change, pipe, passthrough, writeFile, file, HTTP but GET), in order. */
  readonly changes: string[]
  /** Adds replies at the front (they win over earlier ones). */
  reply(...replies: (Reply | HttpReply)[]): void
  /** A file's text as the code left it, or null; for assertions. */
  text(path: string): string | null
}

export interface FakeOptions extends Partial<Invocation> {
  dryRun?: boolean
  verbose?: boolean
  /** The files there are (path → content), in memory; or memory files shared with other runners. */
  files?: Record<string, string | Buffer> | MemoryFiles
  /** Paths (and all under them) this process may not change: EACCES, as for a user's /etc. */
  readOnly?: string[]
  /** The real disk instead of memory (for tests that read what was written with node:fs). */
  disk?: boolean
  /** Running as root: uid 0 unless `uid` says otherwise. */
  root?: boolean
}

const matches = (prefix: Reply['prefix'], argv: string[]) =>
  prefix.length <= argv.length && prefix.every((p, i) => (typeof p === 'string' ? p === argv[i] : p.test(argv[i])))

/** `on(['docker', 'ps'], stdout)`: a reply in one line. */
export const on = (prefix: Reply['prefix'], result: Reply['result'], times?: number): Reply => ({ prefix, result, times })

/** `notInstalled('kubectl')`: every command of that program answers as the real runner does when it is not on PATH. */
export const notInstalled = (program: string): Reply => on([program], { missing: true })

/** `http('GET', url, { status: 200 })`: an HTTP reply in one line. */
export const http = (method: string, url: HttpReply['url'], answer: HttpReply['answer'], times?: number): HttpReply => ({
  method,
  url,
  answer,
  times,
})

/** GET /v2/ as distribution answers it: the registry is up. */
export const v2Up = (base: string, times?: number): HttpReply =>
  http('GET', `${base}/v2/`, { json: {}, headers: { 'docker-distribution-api-version': 'registry/2.0' } }, times)

/** What fetch throws when nothing listens: a TypeError whose cause has the system's code. */
const refused = (url: string) =>
  Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error(`connect ECONNREFUSED ${url}`), { code: 'ECONNREFUSED' }) })

function response(url: string, a: HttpAnswer): Response {
  if (a === 'refused') throw refused(url)
  const headers = { ...(a.json === undefined ? {} : { 'content-type': 'application/json' }), ...a.headers }
  const body = a.json === undefined ? a.body : JSON.stringify(a.json)
  return new Response((body ?? null) as BodyInit | null, { status: a.status ?? 200, headers })
}

/** A clock that never waits: sleeping moves it on at once, so a poll's deadline passes in no time. */
function jumpingClock(): Clock {
  let now = Date.UTC(2025, 0, 1)
  return {
    now: () => now,
    sleep: async (ms) => {
      now += ms
      await new Promise((r) => setImmediate(r))
    },
  }
}

const PIPE_BYTES = 64 * 1024

/** A process that reads its stdin as a pipe would, then answers; or dies after readsOnly bytes. */
function fakeProcess(call: Call, answer: StreamAnswer, stdin: boolean): ChildProcess {
  const child = new EventEmitter() as ChildProcess
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const read: Buffer[] = []
  let taken = 0
  let gone = false
  const exit = (code: number) => {
    if (gone) return
    gone = true
    const input = Buffer.concat(read)
    call.stdin = input
    stderr.end(answer.stderr ?? '')
    const close = () => setImmediate(() => child.emit('close', code))
    Promise.resolve(typeof answer.stdout === 'function' ? answer.stdout(input) : (answer.stdout ?? '')).then((out) => {
      // Gone once its output is read; with none, at once (as a process whose stdout nobody reads).
      if (out.length) stdout.once('end', close)
      else close()
      stdout.end(out)
    })
  }
  const epipe = () => Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })
  Object.assign(child, {
    stdout,
    stderr,
    stdin: stdin
      ? new Writable({
          highWaterMark: PIPE_BYTES,
          write(chunk: Buffer, _encoding, done) {
            if (gone) return done(epipe())
            const room = answer.readsOnly === undefined ? chunk.length : answer.readsOnly - taken
            read.push(chunk.subarray(0, room))
            taken += Math.min(room, chunk.length)
            if (room >= chunk.length) return done()
            // Died with this chunk half read: the write fails, as a write to a pipe whose reader is gone does.
            exit(answer.exitCode ?? 1)
            done(epipe())
          },
          final(done) {
            exit(answer.exitCode ?? 0)
            done()
          },
        })
      : null,
    kill: () => exit(143),
  })
  if (answer.missing) setImmediate(() => child.emit('error', Object.assign(new Error('spawn ENOENT'), { code: 'ENOENT' })))
  else if (!stdin) setImmediate(() => exit(answer.exitCode ?? 0))
  return child
}

/**
 * A fake runner. A probe nothing answers fails (exit 1, "no reply"); a change
 * nothing answers succeeds with empty output; a change answered with a
 * non-zero exit throws a CommandError as the real one does; an HTTP request
 * nothing answers finds nothing listening. writeFile writes (except under
 * dryRun) into its files, in memory unless `disk`.
 */
export function fakeRunner(replies: (Reply | HttpReply)[] = [], opts: FakeOptions = {}): FakeRunner {
  const { dryRun = false, verbose = false } = opts
  const list = replies.filter((r): r is Reply => 'prefix' in r).map((r) => ({ ...r }))
  const httpList = replies.filter((r): r is HttpReply => 'url' in r).map((r) => ({ ...r }))
  const calls: Call[] = []
  const shared = opts.files && typeof opts.files.readText === 'function' ? (opts.files as MemoryFiles) : null
  const memory = opts.disk ? null : (shared ?? memoryFiles(opts.files as Record<string, string | Buffer>, opts.readOnly))
  const store: Files = memory ?? localFiles
  const find = (argv: string[], opts?: CommandOptions): Answer | null => {
    const hit = list.find((r) => matches(r.prefix, argv) && (r.times === undefined || r.times > 0))
    if (!hit) return null
    if (hit.times !== undefined) hit.times--
    const raw = typeof hit.result === 'function' ? hit.result(argv, opts) : hit.result
    return typeof raw === 'string' ? { stdout: raw } : raw
  }
  const answer = (argv: string[], opts?: CommandOptions): Result | null => {
    const partial = find(argv, opts) as Partial<Result> | null
    if (!partial) return null
    // As the real runner says it: the program is not installed.
    if (partial.missing) return { ok: false, exitCode: null, missing: true, stdout: '', stderr: notFound(argv[0]) }
    const exitCode = partial.exitCode === undefined ? (partial.ok === false ? 1 : 0) : partial.exitCode
    const timedOut = partial.timedOut ? { timedOut: true } : {}
    return { ok: exitCode === 0 && !partial.timedOut, exitCode, stdout: partial.stdout ?? '', stderr: partial.stderr ?? '', ...timedOut }
  }
  const record = (call: Call) => calls.push(call)
  const fetchAnswer = async (url: string, init?: RequestInit): Promise<Response> => {
    const method = init?.method ?? 'GET'
    record({ kind: 'http', argv: [method, url], line: `${method} ${url}` })
    const hit = httpList.find(
      (r) => r.method === method && (typeof r.url === 'string' ? r.url === url : r.url.test(url)) && (r.times === undefined || r.times > 0),
    )
    if (!hit) throw refused(url)
    if (hit.times !== undefined) hit.times--
    return response(url, typeof hit.answer === 'function' ? await hit.answer(url, init) : hit.answer)
  }
  return {
    dryRun,
    verbose,
    env: opts.env ?? {},
    tty: opts.tty ?? { stdin: false, stderr: false },
    // No user unless a test says so: code that checks a file's owner against it then checks nothing.
    uid: opts.uid ?? (opts.root ? 0 : null),
    calls,
    get changes() {
      const reads = (c: Call) => c.kind === 'http' && (c.argv[0] === 'GET' || c.argv[0] === 'HEAD')
      return calls.filter((c) => c.kind !== 'probe' && c.kind !== 'stream' && !reads(c)).map((c) => c.line)
    },
    reply(...more) {
      list.unshift(...more.filter((r): r is Reply => 'prefix' in r).map((r) => ({ ...r })))
      httpList.unshift(...more.filter((r): r is HttpReply => 'url' in r).map((r) => ({ ...r })))
    },
    text: (path) => (memory ? memory.text(path) : existsSync(path) ? readFileSync(path, 'utf8') : null),
    fetch: fetchAnswer,
    files: recorded(store, (line) => record({ kind: 'file', argv: [line.split(' ').pop() as string], line })),
    clock: jumpingClock(),
    async probe(argv, opts) {
      record({ kind: 'probe', argv, line: show(argv, opts), opts })
      return answer(argv, opts) ?? { ok: false, exitCode: 1, stdout: '', stderr: `fake runner: no reply for ${show(argv)}` }
    },
    async change(argv, opts) {
      record({ kind: 'change', argv, line: show(argv, { env: opts?.env }), opts })
      if (dryRun) return ''
      const r = answer(argv, opts) ?? { ok: true, exitCode: 0, stdout: '', stderr: '' }
      if (r.missing) throw new ProgramNotFound(argv[0])
      if (!r.ok) throw new CommandError(show(argv, { env: opts?.env }), r.stderr || `exit code ${r.exitCode}`, opts?.fix)
      return r.stdout
    },
    async pipe(from, to) {
      record({ kind: 'pipe', argv: [...from, '|', ...to], line: `${show(from)} | ${show(to)}` })
    },
    async passthrough(argv) {
      record({ kind: 'passthrough', argv, line: show(argv) })
      return dryRun ? 0 : (answer(argv)?.exitCode ?? 0)
    },
    async writeFile(path, content, o) {
      record({ kind: 'writeFile', argv: [path], line: `# write ${path}`, content })
      if (dryRun) return
      await store.mkdir(dirname(path))
      await store.write(path, content, o)
    },
    stream(argv, opts): Streamed {
      const call: Call = { kind: 'stream', argv, line: show(argv) }
      record(call)
      const a = find(argv) as StreamAnswer | null
      if (!a) throw new Error(`fake runner: no reply for the stream ${show(argv)}`)
      return streamed(fakeProcess(call, a, Boolean(opts?.stdin)), argv)
    },
  }
}
