// Command-line conventions shared by every script: strict minimist parsing,
// the entry-point check, and turning errors into exit codes.
import { realpathSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { fileURLToPath } from 'node:url'
import minimist from 'minimist'
import { settings } from './exec.ts'
import { log, UserError } from './log.ts'

export interface FlagSpec {
  string?: string[]
  boolean?: string[]
  alias?: Record<string, string>
  default?: Record<string, unknown>
}

/** Parses argv; an unknown flag is a usage error (exit 2) naming the flag. */
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
  if (unknown.length) throw new UserError(`unknown option ${unknown.join(', ')}\n\n${usage}`, 2)
  for (const name of spec.string ?? []) {
    if (Array.isArray(args[name])) throw new UserError(`--${name} given more than once`, 2)
  }
  return args
}

/**
 * The opening every script shares: parse strictly, answer --help (returns
 * null), refuse stray positional arguments beyond `positional`, and apply
 * --dry-run and --verbose.
 */
export function openScript(argv: string[], spec: FlagSpec, usage: string, positional = 0): minimist.ParsedArgs | null {
  const args = parseArgs(argv, spec, usage)
  if (args.help) {
    log.out(usage)
    return null
  }
  if (args._.length > positional) throw new UserError(`unexpected argument ${args._[positional]}\n\n${usage}`, 2)
  settings.dryRun = Boolean(args['dry-run'])
  settings.verbose = Boolean(args.verbose)
  return args
}

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

/** Runs a script's main, mapping UserError to its exit code and a one-line message. */
export async function run(main: (argv: string[]) => Promise<number>): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2))
  } catch (err) {
    if (err instanceof UserError) {
      log.error(err.message)
      process.exitCode = err.exitCode
    } else {
      console.error(err)
      process.exitCode = 1
    }
  }
}

/** Asks on a TTY; without one, only --yes may go ahead (unattended runs must not delete by accident). */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!process.stdin.isTTY) throw new UserError('refusing to delete without confirmation: no terminal to ask on; rerun with --yes', 2)
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim())
  } finally {
    rl.close()
  }
}
