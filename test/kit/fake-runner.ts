// A Runner that runs nothing: it answers each command from a list of canned
// replies and records every call, so unit tests can assert what devreg's
// orchestration would run, in order, without Docker, kind or kubectl.
import { type CommandOptions, notFound, ProgramNotFound, type Result, type Runner, type Streamed, show } from '../../scripts/lib/exec.ts'
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
}

/** A reply to every command whose argv starts with `prefix` (strings match exactly, RegExps test one argument). */
export interface Reply {
  prefix: (string | RegExp)[]
  /** stdout (exit 0), or a whole result; a function sees the argv. */
  result: string | Partial<Result> | ((argv: string[], opts?: CommandOptions) => string | Partial<Result>)
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

/**
 * A fake runner. A probe nothing answers fails (exit 1, "no reply"); a change
 * nothing answers succeeds with empty output; a change answered with a
 * non-zero exit throws a CommandError as the real one does.
 */
export function fakeRunner(replies: Reply[] = [], { dryRun = false, verbose = false } = {}): FakeRunner {
  const list = [...replies].map((r) => ({ ...r }))
  const calls: Call[] = []
  const answer = (argv: string[], opts?: CommandOptions): Result | null => {
    const hit = list.find((r) => matches(r.prefix, argv) && (r.times === undefined || r.times > 0))
    if (!hit) return null
    if (hit.times !== undefined) hit.times--
    const raw = typeof hit.result === 'function' ? hit.result(argv, opts) : hit.result
    const partial = typeof raw === 'string' ? { stdout: raw } : raw
    // As the real runner says it: the program is not installed.
    if (partial.missing) return { ok: false, exitCode: null, missing: true, stdout: '', stderr: notFound(argv[0]) }
    const exitCode = partial.exitCode === undefined ? (partial.ok === false ? 1 : 0) : partial.exitCode
    return { ok: exitCode === 0, exitCode, stdout: partial.stdout ?? '', stderr: partial.stderr ?? '' }
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
    async writeFile(path, content) {
      record({ kind: 'writeFile', argv: [path], line: `# write ${path}`, content })
    },
    stream(argv): Streamed {
      record({ kind: 'stream', argv, line: show(argv) })
      throw new Error(`fake runner: stream is not faked (${show(argv)})`)
    },
  }
}
