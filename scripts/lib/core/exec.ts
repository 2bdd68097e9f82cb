// Every external command devreg runs goes through a Runner: each script's main
// builds one from its flags and passes it down, so --dry-run can print a
// command instead of running it, --verbose can echo it, and unit tests can hand
// in a recording fake (test/kit/fake-runner.ts). The runner also carries the
// rest of the outside world a library touches (machine.ts): HTTP (the
// registries' API), this machine's files, the clock polls wait on, and what
// the process was started with (its environment, terminals and user), read
// once by the script. A command is an argv array handed to the program
// itself, no shell in between: nothing in it is ever interpreted, and a
// program that is not installed is named as such (zx's quote only shows
// commands). No command string is ever built by hand.
import { type ChildProcess, spawn as spawnChild } from 'node:child_process'
import { dirname } from 'node:path'
import { quote } from 'zx/core'
import { CommandError, EXIT, log, UserError } from './log.ts'
import { type Clock, type Files, type Invocation, localFiles, systemClock, thisProcess } from './machine.ts'

export interface ExecSettings {
  /** Print changing commands instead of running them. */
  dryRun: boolean
  /** Echo every command, probes included, to stderr. */
  verbose: boolean
}

/** The one way devreg reaches the outside world; see createRunner for what each method does. */
export interface Runner extends Readonly<ExecSettings>, Readonly<Invocation> {
  /** A read-only command, also run under --dry-run; never throws (not even for a program that is not installed: `missing`). */
  probe(argv: string[], opts?: CommandOptions): Promise<Result>
  /** A command that changes something: printed, not run, under --dry-run; a failure throws a CommandError, a missing program ProgramNotFound. */
  change(argv: string[], opts?: CommandOptions): Promise<string>
  /** `from | to` as one changing step. */
  pipe(from: string[], to: string[]): Promise<void>
  /** A command the user watches, on this process's stdio; its exit code. */
  passthrough(argv: string[]): Promise<number>
  /** A file devreg generates (mode 0600 unless asked, when it is new); printed with its content under --dry-run. */
  writeFile(path: string, content: string, opts?: { mode?: number }): Promise<void>
  /** A command whose stdout (and stdin) are byte streams too large to hold. */
  stream(argv: string[], opts?: { stdin?: boolean }): Streamed
  /** An HTTP request, as fetch makes it (the registries' API); run under --dry-run too: callers decide. */
  fetch(url: string, init?: RequestInit): Promise<Response>
  /** This machine's files, read and changed directly (writeFile is the step --dry-run prints). */
  files: Files
  clock: Clock
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
  /** null: killed by a signal, or never started. */
  exitCode: number | null
  /** The program is not installed (not on PATH); stderr says so, with how to install it. */
  missing?: boolean
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

/** How to get each program devreg runs; anything else gets a generic hint. */
const INSTALL: Record<string, string> = {
  docker: 'install Docker (https://docs.docker.com/engine/install/) and start it, then run this again',
  kind: 'install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation',
  k3d: 'install k3d: https://k3d.io/stable/#installation',
  kubectl: 'install kubectl: https://kubernetes.io/docs/tasks/tools/',
  sudo: 'install sudo, or run this as root',
}

/** The one message for a program that is not installed: "docker not found on PATH: install Docker (…)". */
export function notFound(program: string): string {
  return `${program} not found on PATH: ${INSTALL[program] ?? `install ${program}, or put the directory that holds it on PATH`}`
}

/** A program devreg needs is not installed; exit code 1 (the run failed; no argument was wrong). */
export class ProgramNotFound extends UserError {
  constructor(readonly program: string) {
    super(notFound(program), EXIT.failed)
    this.name = 'ProgramNotFound'
  }
}

type Stdio = 'pipe' | 'ignore' | 'inherit'

/**
 * Starts argv[0] with the rest as its arguments, no shell in between (a
 * missing program is then ENOENT, not a shell's exit 127).
 */
function launch(
  argv: string[],
  env: Record<string, string> = {},
  stdio: [Stdio, Stdio, Stdio] = ['ignore', 'pipe', 'pipe'],
  detached = false,
): ChildProcess {
  const [cmd, ...args] = argv
  return spawnChild(cmd, args, { env: { ...process.env, ...env }, stdio, detached })
}

/** Why a process could not start: not installed, or the system's own reason. */
function startFailure(argv: string[], err: NodeJS.ErrnoException): UserError | CommandError {
  return err.code === 'ENOENT' ? new ProgramNotFound(argv[0]) : new CommandError(show(argv), err.message)
}

/** Settles once the process is gone and its output is read: its exit code (null: a signal), or why it could not start. */
function exited(child: ChildProcess, argv: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(startFailure(argv, err)))
    child.once('close', (code) => resolve(code))
  })
}

async function collect(stream: NodeJS.ReadableStream | null): Promise<string> {
  const parts: Buffer[] = []
  if (stream) for await (const b of stream) parts.push(Buffer.from(b))
  return Buffer.concat(parts).toString('utf8')
}

async function spawn(argv: string[], opts: CommandOptions): Promise<Result> {
  const stdio: [Stdio, Stdio, Stdio] = [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']
  // Under a time limit, a session of its own: no terminal to prompt on, and one process group to kill.
  const child = launch(argv, { ...opts.env, ...opts.secretEnv }, stdio, opts.timeout !== undefined)
  // The whole input is handed over at once; a command that exits without reading it (a credential
  // helper that fails at once) closes the pipe, and its exit code says how it went: not an error here.
  child.stdin?.on('error', () => {})
  child.stdin?.end(opts.input)
  let timedOut = false
  const timer =
    opts.timeout === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true
          killGroup(child.pid)
        }, opts.timeout)
  try {
    const [stdout, stderr, exitCode] = await Promise.all([collect(child.stdout), collect(child.stderr), exited(child, argv)])
    return { ok: exitCode === 0 && !timedOut, exitCode, stdout, stderr, ...(timedOut ? { timedOut } : {}) }
  } catch (err) {
    if (!(err instanceof UserError || err instanceof CommandError)) throw err
    return { ok: false, exitCode: null, missing: err instanceof ProgramNotFound, stdout: '', stderr: err.message }
  } finally {
    clearTimeout(timer)
  }
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

/** Runs a read-only command, also under --dry-run; never throws (a program not installed is `missing`, its stderr says so). */
async function probe(settings: ExecSettings, argv: string[], opts: CommandOptions = {}): Promise<Result> {
  if (settings.verbose) log.info(`$ ${show(argv, opts)}`)
  return spawn(argv, opts)
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
  if (r.missing) throw new ProgramNotFound(argv[0])
  if (!r.ok) {
    // Named without its stdin: the input is file content, not part of the command's identity.
    const command = show(argv, { env: opts.env })
    throw new CommandError(command, toolMessage(r, Object.values(opts.secretEnv ?? {})), opts.fix)
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
  return (await exited(launch(argv, {}, ['inherit', 'inherit', 'inherit']), argv)) ?? 1
}

/** Runs `from | to` as one changing step (e.g. docker cp ... - | docker run -i ... tar -x). */
async function pipe(settings: ExecSettings, from: string[], to: string[]): Promise<void> {
  const line = `${show(from)} | ${show(to)}`
  if (settings.dryRun) {
    log.out(line)
    return
  }
  if (settings.verbose) log.info(`$ ${line}`)
  const left = launch(from, {}, ['ignore', 'pipe', 'pipe'])
  const right = launch(to, {}, ['pipe', 'ignore', 'pipe'])
  // A right side that dies breaks the pipe; its exit says why. Either side gone ends the other's end of it.
  right.stdin?.on('error', () => {})
  for (const event of ['error', 'close']) {
    left.once(event, () => right.stdin?.end())
    right.once(event, () => left.stdout?.destroy())
  }
  left.stdout?.pipe(right.stdin as NodeJS.WritableStream)
  const [l, r] = await Promise.all([finish(left, from), finish(right, to)])
  if (l.exitCode !== 0) throw new CommandError(show(from), toolMessage(l))
  if (r.exitCode !== 0) throw new CommandError(show(to), toolMessage(r))
}

/** A process's exit code and stderr (its stdout goes elsewhere); a start failure is thrown. */
async function finish(child: ChildProcess, argv: string[]): Promise<Pick<Result, 'exitCode' | 'stdout' | 'stderr'>> {
  const [stderr, exitCode] = await Promise.all([collect(child.stderr), exited(child, argv)])
  return { exitCode, stdout: '', stderr }
}

/** Writes a file devreg generates; under --dry-run its path and content are printed instead. */
async function writeFile(settings: ExecSettings, path: string, content: string, { mode = 0o600 } = {}): Promise<void> {
  if (settings.dryRun) {
    log.out(`# would write ${path}:\n${content.trimEnd()}`)
    return
  }
  if (settings.verbose) log.info(`# write ${path}`)
  await localFiles.mkdir(dirname(path))
  await localFiles.write(path, content, { mode })
}

export interface Streamed {
  /** Its stdout. */
  stdout: NodeJS.ReadableStream
  /**
   * Writes to its stdin (asked for with `stdin: true`): settles once the pipe
   * takes the bytes, or fails as soon as the process is gone, with its own
   * message; never waits on a process that no longer runs.
   */
  write(chunk: Buffer | string): Promise<void>
  /** Closes its stdin, after `chunk`. */
  end(chunk?: Buffer | string): void
  /** Settles when it exits: a failure is a CommandError with its stderr (ProgramNotFound when it is not installed). */
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
  return streamed(launch(argv, {}, [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe']), argv)
}

/** The Streamed of a started process (test/kit/fake-runner.ts hands in a fake one). */
export function streamed(child: ChildProcess, argv: string[]): Streamed {
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
  })
  let gone = false
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => {
      gone = true
      reject(startFailure(argv, err))
    })
    child.once('close', (code) => {
      gone = true
      if (code === 0) resolve()
      else reject(new CommandError(show(argv), toolMessage({ exitCode: code, stdout: '', stderr })))
    })
  })
  // Callers await it when they are ready to; a failure meanwhile is theirs, not unhandled.
  done.catch(() => {})
  // The pipe breaks (EPIPE) when the process stops reading; why it stopped is what its exit says.
  child.stdin?.on('error', () => {})
  /** Why a write cannot go on: the process's own failure, or that it ended before reading everything. */
  const ended = () =>
    done.then(() => {
      throw new CommandError(show(argv), 'it exited before it read all of its input')
    })
  const write = async (chunk: Buffer | string): Promise<void> => {
    const stdin = child.stdin
    if (!stdin) throw new Error(`${show(argv)}: started without stdin`)
    if (gone || stdin.destroyed) return ended()
    if (stdin.write(chunk)) return
    await new Promise<void>((resolve, reject) => {
      const settle = (fn: () => void) => () => {
        stdin.off('drain', onDrain)
        stdin.off('close', onGone)
        child.off('close', onGone)
        fn()
      }
      const onDrain = settle(resolve)
      const onGone = settle(() => ended().catch(reject))
      stdin.once('drain', onDrain)
      stdin.once('close', onGone)
      child.once('close', onGone)
    })
  }
  return {
    stdout: child.stdout as NodeJS.ReadableStream,
    write,
    end: (chunk) => {
      if (child.stdin && !child.stdin.destroyed) child.stdin.end(chunk)
    },
    done,
    kill: () => child.kill(),
  }
}

/** The runner a script's main builds from its flags (--dry-run, --verbose) and passes down. */
export function createRunner(settings: ExecSettings = { dryRun: false, verbose: false }, invocation = thisProcess()): Runner {
  const frozen = Object.freeze({ ...settings })
  return {
    ...frozen,
    ...invocation,
    fetch: (url, init) => fetch(url, init),
    files: localFiles,
    clock: systemClock,
    probe: (argv, opts) => probe(frozen, argv, opts),
    change: (argv, opts) => change(frozen, argv, opts),
    pipe: (from, to) => pipe(frozen, from, to),
    passthrough: (argv) => passthrough(frozen, argv),
    writeFile: (path, content, opts) => writeFile(frozen, path, content, opts),
    stream: (argv, opts) => stream(frozen, argv, opts),
  }
}
