// Output conventions: progress and warnings to stderr, results to stdout,
// colour only on a TTY. Expected failures are UserErrors with a fix.
import { chalk } from 'zx'

/** An expected failure: the message names what is wrong and how to fix it. */
export class UserError extends Error {
  constructor(
    message: string,
    /** 2 for usage and config errors, 1 for failures of the work itself. */
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message)
    this.name = 'UserError'
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
