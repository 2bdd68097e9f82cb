// Output conventions: progress and warnings to stderr, results to stdout,
// colour only on a TTY. Expected failures are UserErrors with a fix.
import { chalk } from 'zx/core'

/** Exit codes, the same for every script. */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** Failed at run time (a command, a registry, the cluster). */
  failed: 1,
  /** A usage or config error: nothing was changed. */
  usage: 2,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** An expected failure: the message names what is wrong and how to fix it. */
export class UserError extends Error {
  constructor(
    message: string,
    /** EXIT.usage for usage and config errors, EXIT.failed for failures of the work itself. */
    readonly exitCode: typeof EXIT.failed | typeof EXIT.usage = EXIT.failed,
  ) {
    super(message)
    this.name = 'UserError'
  }
}

/**
 * An external command that failed: the command as shown (secrets are never in
 * it), the tool's own message, and the fix where devreg knows it. Printed as
 * one line; the stack only with --verbose.
 */
export class CommandError extends Error {
  constructor(
    /** The command as `show()` prints it. */
    readonly command: string,
    /** The tool's own message: its last lines of stderr (or stdout), or its exit code. */
    readonly detail: string,
    /** What to do about it, when devreg knows. */
    readonly fix?: string,
    options?: ErrorOptions,
  ) {
    super(`${command} failed: ${detail}`, options)
    this.name = 'CommandError'
  }

  /** The one line `run()` prints. */
  summary(): string {
    return this.fix ? `${this.message} — ${this.fix}` : this.message
  }
}

const color = Boolean(process.stderr.isTTY) && !process.env.NO_COLOR
chalk.level = color ? chalk.level || 1 : 0

export const log = {
  step: (msg: string) => process.stderr.write(`${chalk.bold(msg)}\n`),
  info: (msg: string) => process.stderr.write(`${msg}\n`),
  ok: (msg: string) => process.stderr.write(`${chalk.green('✓')} ${msg}\n`),
  warn: (msg: string) => process.stderr.write(`${chalk.yellow('warning:')} ${msg}\n`),
  error: (msg: string) => process.stderr.write(`${chalk.red('error:')} ${msg}\n`),
  /** Results: the only thing written to stdout. */
  out: (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
}

export { chalk }

/** Renders rows as an aligned plain-text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}

/** A count with its noun: 1 tag, 2 tags, 3 registries. */
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`
