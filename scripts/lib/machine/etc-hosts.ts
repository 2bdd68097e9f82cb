// /etc/hosts as devreg reads and edits it: pure functions over its text, and
// one write step that elevates only the write. devreg's entries live between
// two marker lines; every other line is kept byte for byte.
import { join } from 'node:path'
import { structuredPatch } from 'diff'
import { quote } from 'zx/core'
import { PUBLIC_REGISTRIES } from '../core/config.ts'
import { type Runner, show } from '../core/exec.ts'
import { EXIT, UserError } from '../core/log.ts'
import { isLocalAddress } from './local-addresses.ts'

export const HOSTS_FILE = '/etc/hosts'
export const BEGIN_MARKER = '# BEGIN devreg: the hosts of config/devreg.yaml (preflight-dns --fix-hosts rewrites this block)'
export const END_MARKER = '# END devreg'

export interface HostsEntry {
  /** 1-based line number. */
  line: number
  address: string
  names: string[]
}

export interface Shadow {
  line: number
  address: string
  name: string
}

export interface HostsConflict {
  name: string
  /** What the file maps the name to, outside devreg's block. */
  address: string
  line: number
  /** What the config says. */
  expected: string
}

export interface HostsFix {
  text: string
  added: string[]
  removed: string[]
  conflicts: HostsConflict[]
}

/** The address-to-names lines of a hosts file; comments and blank lines are skipped. */
export function parseHostsFile(text: string): HostsEntry[] {
  return text.split('\n').flatMap((raw, i) => {
    const [address, ...names] = raw.replace(/#.*/, '').trim().split(/\s+/)
    return address && names.length ? [{ line: i + 1, address, names: names.map((n) => n.toLowerCase()) }] : []
  })
}

/**
 * Lines that send a public registry to this machine (`127.0.0.1 docker.io`):
 * pulls from that registry on the host then go nowhere.
 */
export function shadowedRegistries(entries: HostsEntry[], isLocal: (address: string) => boolean = isLocalAddress): Shadow[] {
  return entries.flatMap((e) =>
    isLocal(e.address)
      ? e.names.filter((n) => PUBLIC_REGISTRIES.includes(n)).map((name) => ({ line: e.line, address: e.address, name }))
      : [],
  )
}

/** Where devreg's block is: [begin, end] line indexes, or null. */
function findBlock(lines: string[], path: string): [number, number] | null {
  const begin = lines.findIndex((l) => l.trimEnd() === BEGIN_MARKER)
  if (begin < 0) return null
  const end = lines.findIndex((l, i) => i > begin && l.trimEnd() === END_MARKER)
  if (end < 0)
    throw new UserError(
      `${path}:${begin + 1}: devreg's block has no "${END_MARKER}" line: add it after devreg's entries, or remove the block`,
    )
  return [begin, end]
}

/**
 * The hosts file with one `ADDRESS NAME` line in devreg's block for each entry
 * of the config's `hosts` the rest of the file does not already map to its address. Idempotent: a
 * second run returns the text unchanged. A name the rest of the file maps
 * elsewhere is a conflict, left alone: a second line for it would only make
 * resolution ambiguous, and devreg edits no line it did not write.
 */
export function fixHostsFile(text: string, hosts: readonly { name: string; address: string }[], path = HOSTS_FILE): HostsFix {
  const lines = text.split('\n')
  const block = findBlock(lines, path)
  const outside = parseHostsFile(text).filter((e) => !block || e.line - 1 < block[0] || e.line - 1 > block[1])
  const conflicts: HostsConflict[] = []
  const wanted: string[] = []
  for (const h of hosts) {
    const mapped = outside.filter((e) => e.names.includes(h.name))
    if (mapped.some((e) => e.address === h.address)) continue
    if (mapped.length) conflicts.push({ name: h.name, address: mapped[0].address, line: mapped[0].line, expected: h.address })
    else wanted.push(`${h.address} ${h.name}`)
  }
  const current = block ? lines.slice(block[0] + 1, block[1]) : []
  const added = wanted.filter((l) => !current.includes(l))
  const removed = current.filter((l) => !wanted.includes(l))
  if (!added.length && !removed.length && (wanted.length || !block)) return { text, added, removed, conflicts }
  const newBlock = wanted.length ? [BEGIN_MARKER, ...wanted, END_MARKER] : []
  let out: string[]
  if (block) out = [...lines.slice(0, block[0]), ...newBlock, ...lines.slice(block[1] + 1)]
  else {
    // Append after the last line, terminating it first if it was not.
    const body = lines.at(-1) === '' ? lines.slice(0, -1) : lines
    out = [...body, ...newBlock, '']
  }
  return { text: out.join('\n'), added, removed, conflicts }
}

/**
 * A unified diff with three lines of context, as `diff -u` prints it (jsdiff's
 * hunks). Both texts count as ending in a newline: what devreg writes always
 * does, and a file that did not is not worth a "\\ No newline" line.
 */
export function unifiedDiff(path: string, before: string, after: string): string {
  if (before === after) return ''
  const terminated = (s: string) => (s === '' || s.endsWith('\n') ? s : `${s}\n`)
  const { hunks } = structuredPatch(path, path, terminated(before), terminated(after), undefined, undefined, { context: 3 })
  // An empty range names the line before it, as diff -u does.
  const range = (start: number, count: number) => `${count ? start : start - 1},${count}`
  return [
    `--- ${path}`,
    `+++ ${path}`,
    ...hunks.flatMap((h) => [`@@ -${range(h.oldStart, h.oldLines)} +${range(h.newStart, h.newLines)} @@`, ...h.lines]),
    '',
  ].join('\n')
}

/** The hosts file's text; a usage error when it cannot be read, except a missing file when `missingIsEmpty`. */
export async function readHostsFile(run: Runner, path: string, missingIsEmpty = false): Promise<string> {
  try {
    return await run.files.readText(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && missingIsEmpty) return ''
    throw new UserError(`cannot read ${path} (${code}): check the path given to --hosts-file`, EXIT.usage)
  }
}

/**
 * Writes the hosts file in place (in containers /etc/hosts is a bind mount,
 * which a rename would not replace). Without permission only the write is
 * elevated, with `sudo tee`, which may ask for a password on a terminal and
 * never without one; when it cannot run, the command to run is printed.
 */
export async function writeHostsFile(run: Runner, path: string, content: string): Promise<void> {
  if (await run.files.writable(path)) {
    await run.writeFile(path, content)
    return
  }
  const tee = ['sudo', 'tee', path]
  try {
    await run.change(run.tty.stdin ? tee : ['sudo', '--non-interactive', 'tee', path], { input: content })
  } catch (err) {
    const staged = join(await run.files.mkdtemp('devreg-hosts-'), 'hosts')
    await run.files.write(staged, content, { mode: 0o644 })
    const why = (err as Error).message.replace(/^.*? failed: /, '').split('\n')[0]
    throw new UserError(
      `no permission to write ${path}, and sudo could not (${why}): apply the change with \`${show(tee)} < ${quote(staged)} > /dev/null\``,
    )
  }
}
