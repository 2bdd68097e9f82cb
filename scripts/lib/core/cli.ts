// Command-line conventions shared by every script: strict minimist parsing,
// the entry-point check, and turning errors into exit codes (EXIT in log.ts).
import { realpathSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { fileURLToPath } from 'node:url'
import minimist from 'minimist'
import { bypassProxyForThisMachine } from '../machine/proxy.ts'
import { RegistryError } from '../registries/distribution.ts'
import { createRunner, type Runner } from './exec.ts'
import { CommandError, EXIT, type ExitCode, log, UserError } from './log.ts'
import { thisProcess } from './machine.ts'

export interface FlagSpec {
  string?: string[]
  boolean?: string[]
  alias?: Record<string, string>
  default?: Record<string, unknown>
}

/**
 * Parses argv; an unknown flag, a string flag given twice, and a string flag
 * without its value are usage errors (exit 2) naming the flag.
 */
export function parseArgs(argv: string[], spec: FlagSpec, usage: string): minimist.ParsedArgs {
  const known = new Set([
    ...(spec.string ?? []),
    ...(spec.boolean ?? []),
    ...Object.keys(spec.alias ?? {}),
    ...Object.values(spec.alias ?? {}),
  ])
  const unknown: string[] = []
  const args = minimist(argv, {
    string: spec.string,
    boolean: spec.boolean,
    alias: spec.alias,
    default: spec.default,
    unknown: (arg) => {
      if (arg.startsWith('-') && arg !== '-') {
        const name = arg.replace(/^--?(no-)?/, '').split('=')[0]
        if (!known.has(name)) unknown.push(arg)
      }
      return true
    },
  })
  if (unknown.length) throw new UserError(`unknown option ${unknown.join(', ')}\n\n${usage}`, EXIT.usage)
  for (const name of spec.string ?? []) {
    if (Array.isArray(args[name])) throw new UserError(`--${name} given more than once`, EXIT.usage)
    // minimist gives '' for `--name` at the end, `--name=`, `--name ''`, and
    // `--name --other` (where --other is still parsed as a flag): never a value.
    if (args[name] === '' && spec.default?.[name] !== '') throw new UserError(`${missingValue(name, usage)}\n\n${usage}`, EXIT.usage)
  }
  return args
}

/** "--config needs a value (--config PATH)", the placeholder taken from the usage text when it has one. */
function missingValue(name: string, usage: string): string {
  const flag = name.length === 1 ? `-${name}` : `--${name}`
  const escaped = flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const shown = new RegExp(`(?:^|\\s)${escaped}[ =]([A-Z][A-Z0-9_.-]*)`, 'm').exec(usage)
  return `${flag} needs a value${shown ? ` (${flag} ${shown[1]})` : ''}`
}

/**
 * The opening every script shares: parse strictly, answer --help (returns
 * null), refuse stray positional arguments beyond `positional`.
 */
export function openScript(argv: string[], spec: FlagSpec, usage: string, positional = 0): minimist.ParsedArgs | null {
  const args = parseArgs(argv, spec, usage)
  if (args.help) {
    log.out(usage)
    return null
  }
  if (args._.length > positional) throw new UserError(`unexpected argument ${args._[positional]}\n\n${usage}`, EXIT.usage)
  return args
}

/** The runner a script passes down, from its --dry-run and --verbose and this process's environment, terminals and user. */
export const runnerFor = (args: minimist.ParsedArgs): Runner =>
  createRunner({ dryRun: Boolean(args['dry-run']), verbose: Boolean(args.verbose) }, thisProcess())

/** True when the module at importMetaUrl is the script being run (zx's isMain idea). */
export function isMain(importMetaUrl: string): boolean {
  const entry = process.argv[1]
  if (!entry) return false
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(importMetaUrl))
  } catch {
    return false
  }
}

/** Runs a script's main, turning what it throws into a message and an exit code (see `report`). */
export async function runMain(main: (argv: string[]) => Promise<number>): Promise<void> {
  bypassProxyForThisMachine(process.env)
  const argv = process.argv.slice(2)
  try {
    process.exitCode = await main(argv)
  } catch (err) {
    process.exitCode = report(err, { verbose: argv.includes('--verbose') || argv.includes('-v') })
  }
}

/**
 * Prints an error the way every script does and returns its exit code: a
 * UserError is its message; a CommandError is one line, `<command> failed:
 * <message> — <fix>`, and so is a known failure (knownFailure: a registry's
 * HTTP API, the file system, the network), each with its stack only under
 * --verbose. Context added with `new Error('creating kind cluster', { cause })`
 * is kept in front. Anything else is a bug in devreg and keeps its stack.
 */
export function report(err: unknown, { verbose = false }: { verbose?: boolean } = {}): ExitCode {
  const context: string[] = []
  let inner = err
  while (inner instanceof Error && !(inner instanceof UserError) && !(inner instanceof CommandError) && inner.cause instanceof Error) {
    context.push(inner.message)
    inner = inner.cause
  }
  const prefix = context.map((c) => `${c}: `).join('')
  if (inner instanceof UserError) {
    log.error(prefix + inner.message)
    if (verbose && context.length) console.error(err)
    return inner.exitCode
  }
  if (inner instanceof CommandError) {
    log.error(prefix + inner.summary())
    if (verbose) console.error(err)
    return EXIT.failed
  }
  const known = knownFailure(inner)
  if (known) {
    log.error(`${prefix}${known.what} — ${known.fix}`)
    if (verbose) console.error(err)
    return EXIT.failed
  }
  console.error(err)
  return EXIT.failed
}

/** What Node's error codes mean, and what to do about each, for the file system and the network. */
const SYSTEM: Record<string, [string, string]> = {
  ENOENT: ['no such file or directory', 'check the path'],
  EACCES: ['permission denied', 'check its permissions, or use a path you may write to'],
  EPERM: ['operation not permitted', 'check its permissions, or use a path you may write to'],
  EROFS: ['read-only file system', 'use a path on a writable file system'],
  ENOSPC: ['no space left on the device', 'free some disk space (`just registry-gc --stats` shows what the registries hold)'],
  EDQUOT: ['disk quota exceeded', 'free some disk space'],
  EEXIST: ['it exists already', 'remove it, or choose another path'],
  EISDIR: ['it is a directory', 'give a file'],
  ENOTDIR: ['a part of the path is not a directory', 'check the path'],
  EMFILE: ['too many open files', 'raise the open-file limit (`ulimit -n`)'],
  ECONNREFUSED: ['connection refused', 'check that it runs (`just dev-registry status` for the registries)'],
  ECONNRESET: ['connection reset', 'check that it runs and try again'],
  ETIMEDOUT: ['timed out', 'check that it runs and is reachable, and try again'],
  EHOSTUNREACH: ['host unreachable', 'check the network and the address'],
  ENETUNREACH: ['network unreachable', 'check the network'],
  ENOTFOUND: ['name not found', 'check the name (`just preflight` checks the configured ones)'],
  EAI_AGAIN: ['name lookup failed for now', 'check DNS and try again'],
  EPIPE: ['the other side closed the connection', 'try again'],
}

/**
 * A failure devreg expects and can name in one line, with what to do: a
 * registry's HTTP API (RegistryError), a system error of the file system or
 * the network (Node's `code`, `syscall`, `path`, `address`), a timeout, a
 * damaged gzip stream. Null for anything else: a bug in devreg.
 */
export function knownFailure(err: unknown): { what: string; fix: string } | null {
  if (err instanceof RegistryError) return { what: err.message, fix: err.fix }
  if (!(err instanceof Error)) return null
  if (err.name === 'TimeoutError') return { what: err.message, fix: 'check that it runs and answers, and try again' }
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string }
  if (typeof e.code === 'string' && e.code.startsWith('Z_'))
    return { what: `gzip: ${err.message}`, fix: 'the data is damaged: make it again' }
  const known = typeof e.code === 'string' ? SYSTEM[e.code] : undefined
  if (!known || !e.syscall) return null
  const where = e.path ?? (e.address ? `${e.address}${e.port ? `:${e.port}` : ''}` : e.hostname)
  return { what: `${e.syscall}${where ? ` ${where}` : ''}: ${known[0]}`, fix: known[1] }
}

/** Asks on a TTY; without one, only --yes may go ahead (unattended runs must not delete by accident). */
export async function confirm(run: Pick<Runner, 'tty'>, question: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!run.tty.stdin) throw new UserError('refusing to delete without confirmation: no terminal to ask on; rerun with --yes', EXIT.usage)
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim())
  } finally {
    rl.close()
  }
}
