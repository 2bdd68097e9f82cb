// What a warm prints: a line per image as it finishes, on a terminal the
// images in flight redrawn in place meanwhile (progress.ts), and the tally.
import { chalk, formatBytes, log, plural } from '../core/log.ts'
import { bytesOf, liveLines } from '../core/progress.ts'
import type { ImageResult, Progress, WarmSummary } from './warm.ts'

/** One line per image as it finishes: for logs and CI. */
export function plainProgress(): Progress {
  return {
    resolved: () => {},
    bytes: () => {},
    done: (r) => log.info(imageLine(r)),
    note: (m) => log.info(m),
    finish: () => {},
  }
}

export function imageLine(r: ImageResult): string {
  const platforms = r.platforms.length ? ` (${r.platforms.join(', ')})` : ''
  if (r.error) return `${chalk.red('✗')} ${r.name}${platforms}: ${r.error}`
  return `${chalk.green('✓')} ${r.name}${platforms}: ${formatBytes(r.fetchedBytes)} fetched, ${formatBytes(r.cachedBytes)} already cached, ${r.seconds.toFixed(1)}s`
}

/** On a terminal: a line per image in flight with its bytes, and the overall bytes, redrawn in place. */
export function ttyProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const totals = new Map<string, number>()
  const got = new Map<string, number>()
  const live = liveLines(stream)
  let note = ''
  const frame = () => {
    const active = [...totals].filter(([image, total]) => (got.get(image) ?? 0) < total)
    const all = [...totals.values()].reduce((a, b) => a + b, 0)
    const sum = [...got.values()].reduce((a, b) => a + b, 0)
    return [
      ...active.slice(0, 8).map(([image, total]) => `  ${image.padEnd(40)} ${bytesOf(got.get(image) ?? 0, total)}`),
      `${chalk.bold('warming')} ${plural(totals.size, 'image')}: ${bytesOf(sum, all)} fetched ${note}`.trimEnd(),
    ]
  }
  return {
    resolved: (image, total) => {
      totals.set(image, total)
      live.draw(frame)
    },
    bytes: (image, n) => {
      got.set(image, (got.get(image) ?? 0) + n)
      live.draw(frame)
    },
    done: (r) => {
      live.clear()
      stream.write(`${imageLine(r)}\n`)
    },
    note: (m) => {
      note = `(${m})`
      live.draw(frame, true)
    },
    finish: () => live.clear(),
  }
}

/** The tally that ends a warm. */
export function summaryLines(s: WarmSummary): string[] {
  const lines = [
    `${s.warmed} warmed, ${s.failed} failed: ${formatBytes(s.fetchedBytes)} fetched from the upstreams, ${formatBytes(s.cachedBytes)} already cached`,
  ]
  if (s.doubleFetch.length && s.fetchedBytes)
    lines.push(
      `(distribution 2.8 in ${s.doubleFetch.join(', ')} downloads each fetched blob twice, once to answer and once to store: the upstream sent up to ${formatBytes(2 * s.fetchedBytes)})`,
    )
  for (const r of s.images.filter((x) => x.error)) lines.push(`  ${r.image}: ${r.error}`)
  return lines
}
