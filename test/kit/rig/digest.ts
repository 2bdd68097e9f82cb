// Short content digests that tag what the rig builds: a changed input gives a
// new tag, so a stale image or archive is never reused.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export const digest = (...parts: string[]) => createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 12)

/** A file of this machine's, by content: a program an image copies from it (busybox, openssl) changes with an upgrade. */
export const fileDigest = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 12)

/** Every file of a build context, names and contents: a changed script rebuilds the image. */
export function contextDigest(context: string): string {
  const files: string[] = []
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else files.push(p.slice(context.length), readFileSync(p, 'utf8'))
    }
  }
  walk(context)
  return digest(...files)
}
