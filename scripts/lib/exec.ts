// Every external command devreg runs goes through a Runner: each script's main
// builds one from its flags and passes it down, so --dry-run can print a
// command instead of running it, --verbose can echo it, and unit tests can hand
// in a recording fake (test/kit/fake-runner.ts). Arguments are values or
// arrays that zx quotes; no command string is ever built by hand.
import { spawn as spawnChild } from 'node:child_process'
import { writeFile as fsWriteFile, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { $, quote } from 'zx'
import { CommandError, log } from './log.ts'

export interface ExecSettings {
  /** Print changing commands instead of running them. */
  dryRun: boolean
  /** Echo every command, probes included, to stderr. */
  verbose: boolean
}

/** The one way devreg reaches the outside world; see createRunner for what each method does. */
export interface Runner extends Readonly<ExecSettings> {
  /** A read-only command, also run under --dry-run; never throws on a non-zero exit. */
  probe(argv: string[], opts?: CommandOptions): Promise<Result>
  /** A command that changes something: printed, not run, under --dry-run; a failure throws a CommandError. */
  change(argv: string[], opts?: CommandOptions): Promise<string>
  /** `from | to` as one changing step. */
  pipe(from: string[], to: string[]): Promise<void>
  /** A command the user watches, on this process's stdio; its exit code. */
  passthrough(argv: string[]): Promise<number>
  /** A file devreg generates; printed with its content under --dry-run. */
  writeFile(path: string, content: string): Promise<void>
  /** A command whose stdout (and stdin) are byte streams too large to hold. */
  stream(argv: string[], opts?: { stdin?: boolean }): Streamed
}

export interface CommandOptions {
  /** Content for the command's stdin (files for containers travel this way). */
  input?: string
  /** Extra environment, printed with the command (KIND_EXPERIMENTAL_DOCKER_NETWORK=kind-net kind ...). */
  env?: Record<string, string>
  /** Secrets the command reads from its environment (`docker run -e NAME`); never printed. */
  secretEnv?: Record<string, string>
  /** What to do when the command fails, shown after its message. */
  fix?: string
  /**
   * Milliseconds before it is killed, with everything it started (Result.timedOut).
   * It runs in a session of its own, so it has no terminal to prompt on either.
   */
  timeout?: number
}

export interface Result {
  ok: boolean
  exitCode: number | null
  stdout: string
  stderr: string
  /** Killed when its CommandOptions.timeout ran out. */
  timedOut?: boolean
}

/** How a command is shown: shell-quoted, with any stdin noted. */
export function show(argv: string[], opts: CommandOptions = {}): string {
  const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${quote(v)} `)
  const line = env.join('') + argv.map((a) => quote(a)).join(' ')
  return opts.input === undefined ? line : `${line} <<'EOF'\n${opts.input.trimEnd()}\nEOF`
}

/**
 * node's spawn, but a command that exits without reading its input (a
 * credential helper that fails at once) closes the pipe: not an error of its
 * own, and its exit code says how it went. Unhandled, the EPIPE would end devreg.
 */
const spawnIgnoringClosedStdin = ((...args: Parameters<typeof spawnChild>) => {
  const child = spawnChild(...args)
  child.stdin?.on('error', () => {})
  return child
}) as typeof spawnChild

async function spawn(argv: string[], opts: CommandOptions): Promise<Result> {
  const [cmd, ...args] = argv
  const child = $({
    nothrow: true,
    quiet: true,
    verbose: false,
    spawn: spawnIgnoringClosedStdin,
    input: opts.input,
    env: { ...process.env, ...opts.env, ...opts.secretEnv },
    // A new session: no controlling terminal, and one process group to kill.
    detached: opts.timeout !== undefined,
  })`${cmd} ${args}`
  let timedOut = false
  const timer =
    opts.timeout === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true
          killGroup(child.pid)
        }, opts.timeout)
  const p = await child.finally(() => clearTimeout(timer))
  return { ok: p.exitCode === 0 && !timedOut, exitCode: p.exitCode, stdout: p.stdout, stderr: p.stderr, ...(timedOut ? { timedOut } : {}) }
}

/** Kills a detached child's process group: a shell script's children hold its output open after it dies. */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // Gone already.
  }
}

/** Runs a read-only command, also under --dry-run; never throws on a non-zero exit. */
async function probe(settings: ExecSettings, argv: string[], opts: CommandOptions = {}): Promise<Result> {
  if (settings.verbose) log.info(`$ ${show(argv, opts)}`)
  try {
    return await spawn(argv, opts)
  } catch (err) {
    // The binary itself is missing.
    return { ok: false, exitCode: null, stdout: '', stderr: String((err as Error).message) }
  }
}

// Lines a tool adds after its message that say nothing about this failure.
const NOISE = [/^See '.*--help'\.?$/, /^Run '.*--help' for more information\.?$/]
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, 'g')

/**
 * The tool's own message, on one line: the last few non-empty lines of its
 * stderr (else its stdout), else its exit code; any secret it was given is
 * masked.
 */
export function toolMessage(r: Pick<Result, 'exitCode' | 'stdout' | 'stderr'>, secrets: string[] = [], lines = 3): string {
  const mask = (text: string) => secrets.filter((x) => x.length >= 4).reduce((t, x) => t.split(x).join('***'), text)
  const tail = (text: string) =>
    mask(text)
      .replace(ANSI, '')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !NOISE.some((re) => re.test(l)))
      .slice(-lines)
      .map((l) => (l.length > 300 ? `${l.slice(0, 299)}…` : l))
      .join('; ')
  return tail(r.stderr) || tail(r.stdout) || `exit code ${r.exitCode ?? 'unknown (killed by a signal)'}`
}

/** The fix devreg knows for any command: one that is not installed. */
function knownFix(argv: string[], r: Pick<Result, 'exitCode' | 'stderr'>): string | undefined {
  if (r.exitCode === 127 && /not found/i.test(r.stderr)) return `${argv[0]} is not installed: install it or put it on PATH`
  return undefined
}

/**
 * Runs a command that changes something. Under --dry-run it is printed to
 * stdout and not run. A failure throws a CommandError: the command, its own
 * message, and opts.fix when given.
 */
async function change(settings: ExecSettings, argv: string[], opts: CommandOptions = {}): Promise<string> {
  const line = show(argv, opts)
  if (settings.dryRun) {
    log.out(line)
    return ''
  }
  if (settings.verbose) log.info(`$ ${line}`)
  const r = await spawn(argv, opts)
  if (!r.ok) {
    // Named without its stdin: the input is file content, not part of the command's identity.
    const command = show(argv, { env: opts.env })
    throw new CommandError(command, toolMessage(r, Object.values(opts.secretEnv ?? {})), opts.fix ?? knownFix(argv, r))
  }
  return r.stdout
}

/**
 * Runs a command the user watches (a docker build) with this process's
 * stdin, stdout and stderr; returns its exit code. Under --dry-run it is
 * printed to stdout and not run.
 */
async function passthrough(settings: ExecSettings, argv: string[]): Promise<number> {
  const line = show(argv)
  if (settings.dryRun) {
    log.out(line)
    return 0
  }
  if (settings.verbose) log.info(`$ ${line}`)
  const [cmd, ...args] = argv
  const p = await $({ nothrow: true, stdio: 'inherit', verbose: false })`${cmd} ${args}`
  return p.exitCode ?? 1
}

/** Runs `from | to` as one changing step (e.g. docker cp ... - | docker run -i ... tar -x). */
async function pipe(settings: ExecSettings, from: string[], to: string[]): Promise<void> {
  const line = `${show(from)} | ${show(to)}`
  if (settings.dryRun) {
    log.out(line)
    return
  }
  if (settings.verbose) log.info(`$ ${line}`)
  const [a, ...aArgs] = from
  const [b, ...bArgs] = to
  const left = $({ quiet: true, nothrow: true })`${a} ${aArgs}`
  const right = $({ quiet: true, nothrow: true })`${b} ${bArgs}`
  const out = await left.pipe(right)
  const l = await left
  if (l.exitCode !== 0) throw new CommandError(show(from), toolMessage(l), knownFix(from, l))
  if (out.exitCode !== 0) throw new CommandError(show(to), toolMessage(out), knownFix(to, out))
}

/** Writes a file devreg generates; under --dry-run its path and content are printed instead. */
async function writeFile(settings: ExecSettings, path: string, content: string): Promise<void> {
  if (settings.dryRun) {
    log.out(`# would write ${path}:\n${content.trimEnd()}`)
    return
  }
  if (settings.verbose) log.info(`# write ${path}`)
  await mkdir(dirname(path), { recursive: true })
  await fsWriteFile(path, content, { mode: 0o600 })
}

export interface Streamed {
  /** Its stdin, when asked for; its stdout, always. */
  stdin: NodeJS.WritableStream | null
  stdout: NodeJS.ReadableStream
  /** Settles when it exits: a failure is a CommandError with its stderr. */
  done: Promise<void>
  /** Stops it (an aborted stream). */
  kill: () => void
}

/**
 * Runs a command whose stdout (and stdin) are byte streams too large to hold
 * (a tar of a registry volume). Echoed under --verbose; callers decide what
 * --dry-run does, as nothing here is printed instead of run.
 */
function stream(settings: ExecSettings, argv: string[], opts: { stdin?: boolean } = {}): Streamed {
  if (settings.verbose) log.info(`$ ${show(argv)}`)
  const [cmd, ...args] = argv
  const child = spawnChild(cmd, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
  })
  // A reader that stops early closes the pipe: not an error of its own.
  child.stdin?.on('error', () => {})
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => reject(new CommandError(show(argv), err.message, knownFix(argv, { exitCode: 127, stderr: 'not found' }))))
    child.on('close', (code) => {
      if (code === 0) resolve()
      else
        reject(
          new CommandError(show(argv), toolMessage({ exitCode: code, stdout: '', stderr }), knownFix(argv, { exitCode: code, stderr })),
        )
    })
  })
  return { stdin: child.stdin, stdout: child.stdout as NodeJS.ReadableStream, done, kill: () => child.kill() }
}

/** The runner a script's main builds from its flags (--dry-run, --verbose) and passes down. */
export function createRunner(settings: ExecSettings = { dryRun: false, verbose: false }): Runner {
  const frozen = Object.freeze({ ...settings })
  return {
    ...frozen,
    probe: (argv, opts) => probe(frozen, argv, opts),
    change: (argv, opts) => change(frozen, argv, opts),
    pipe: (from, to) => pipe(frozen, from, to),
    passthrough: (argv) => passthrough(frozen, argv),
    writeFile: (path, content) => writeFile(frozen, path, content),
    stream: (argv, opts) => stream(frozen, argv, opts),
  }
}
