// Progress on stderr while bytes move (warm, export, import): on a terminal a
// few lines redrawn in place, at most ten frames a second; elsewhere nothing,
// the lines that stay are the record.
import { chalk, formatBytes, log } from './log.ts'

export interface LiveLines {
  /** Replaces what was drawn with the frame's lines; skipped while the last frame is younger than 100 ms, unless forced. */
  draw(frame: () => string[], force?: boolean): void
  /** Removes what was drawn, so that a line that stays can be written in its place. */
  clear(): void
}

/** Lines redrawn in place on a terminal, each cut to its width: a wrapped line would break the redraw, which moves up one row per line. */
export function liveLines(stream: NodeJS.WriteStream): LiveLines {
  let drawn = 0
  // The first frame always draws: performance.now() counts from process start, not from this call.
  let last = Number.NEGATIVE_INFINITY
  return {
    draw(frame, force = false) {
      if (!force && performance.now() - last < 100) return
      last = performance.now()
      const lines = frame()
      const width = (stream.columns || 80) - 1
      stream.write(`${drawn ? `\x1b[${drawn}A` : ''}\x1b[0J${lines.map((l) => l.slice(0, width)).join('\n')}\n`)
      drawn = lines.length
    },
    clear() {
      if (drawn) stream.write(`\x1b[${drawn}A\x1b[0J`)
      drawn = 0
    },
  }
}

/** Bytes done of a total, as progress shows them: 1.0 KiB / 2.0 KiB. */
export const bytesOf = (done: number, total: number) => `${formatBytes(done)} / ${formatBytes(total)}`

/** Bytes against a total on one line, drawn on a terminal only (export, import); `line` writes one that stays. */
export function byteProgress(verb: string, stream: NodeJS.WriteStream = process.stderr) {
  const live = stream.isTTY ? liveLines(stream) : null
  return {
    update(what: string, done: number, total: number) {
      const pct = total ? Math.floor((done / total) * 100) : 100
      live?.draw(() => [`${chalk.bold(verb)} ${what}: ${bytesOf(done, total)} (${pct}%)`])
    },
    line(text: string) {
      live?.clear()
      log.ok(text)
    },
  }
}
