// A Runner that runs nothing: it answers each command from a list of canned
// replies and records every call, so unit tests can assert what devreg's
// orchestration would run, in order, without Docker, kind or kubectl. A
// streamed command is a fake process behind the real runner's own Streamed
// (exec.ts `streamed`): it reads its stdin through a pipe of a pipe's size,
// answers on stdout, and can die halfway through its input as a helper
// container does.
import type { ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { mkdir, writeFile } from 'node:fs/promises'
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
} from '../../scripts/lib/exec.ts'
import { CommandError } from '../../scripts/lib/log.ts'

export type CallKind = 'probe' | 'change' | 'pipe' | 'passthrough' | 'writeFile' | 'stream'

export interface Call {
  kind: CallKind
  argv: string[]
  /** How the real runner would show it (`docker rm --force …`, `a | b`, `# write PATH`). */
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

export interface FakeRunner extends Runner {
  calls: Call[]
  /** The lines of the calls that change something (change, pipe, passthrough, writeFile), in order. */
  readonly changes: string[]
  /** Adds replies at the front (they win over earlier ones). */
  reply(...replies: Reply[]): void
}

const matches = (prefix: Reply['prefix'], argv: string[]) =>
  prefix.length <= argv.length && prefix.every((p, i) => (typeof p === 'string' ? p === argv[i] : p.test(argv[i])))

/** `on(['docker', 'ps'], stdout)`: a reply in one line. */
export const on = (prefix: Reply['prefix'], result: Reply['result'], times?: number): Reply => ({ prefix, result, times })

/** `notInstalled('kubectl')`: every command of that program answers as the real runner does when it is not on PATH. */
export const notInstalled = (program: string): Reply => on([program], { missing: true })

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
 * non-zero exit throws a CommandError as the real one does. With
 * `writeFiles`, writeFile also writes (for tests that read the files back).
 */
export function fakeRunner(replies: Reply[] = [], { dryRun = false, verbose = false, writeFiles = false } = {}): FakeRunner {
  const list = [...replies].map((r) => ({ ...r }))
  const calls: Call[] = []
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
  return {
    dryRun,
    verbose,
    calls,
    get changes() {
      return calls.filter((c) => c.kind !== 'probe' && c.kind !== 'stream').map((c) => c.line)
    },
    reply(...more) {
      list.unshift(...more.map((r) => ({ ...r })))
    },
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
    async writeFile(path, content, opts) {
      record({ kind: 'writeFile', argv: [path], line: `# write ${path}`, content })
      if (!writeFiles || dryRun) return
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, content, { mode: opts?.mode ?? 0o600 })
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
