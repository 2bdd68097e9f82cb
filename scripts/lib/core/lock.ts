// One run at a time per config: commands that change containers, volumes or
// clusters hold a lock file for every Docker object of the config they touch,
// in the user's runtime directory. Keys are those names, not the config's path: two
// files that name the same registries (config/devreg.yaml and a k3d config,
// or a copy under another path) fight over the same containers, and a lock
// per name also covers configs that share only some of them. Files are taken
// in sorted order, so two runs never hold one each of two.
import { randomBytes } from 'node:crypto'
import { linkSync, lstatSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import type { Config, Registry } from './config.ts'
import type { Runner } from './exec.ts'
import { log, UserError } from './log.ts'

/** What a lock file holds: who has it, since when. */
export interface Holder {
  pid: number
  /** The run as the waiting line names it: dev-up, dev-registry up. */
  what: string
  /** The script and its arguments; devreg takes no secret on the command line (credentials are env variable names). */
  command: string
  /** ISO time the lock was taken. */
  started: string
}

/** What locking reads of the runner: --dry-run (no lock), and this process's environment and user (where the locks live). */
export type LockRunner = Pick<Runner, 'dryRun' | 'env' | 'uid'>

export interface LockOptions {
  /** Where the lock files live [default: lockDir(run)]. */
  dir?: string
  /** How often a waiting run looks again. */
  pollMs?: number
  /** How often a waiting run says it still waits. */
  remindMs?: number
  /** Where the waiting line goes [default: stderr]. */
  say?: (line: string) => void
  /** 'registries' for runs that leave the cluster alone (dev-registry, registry-gc) [default: 'config', everything]. */
  scope?: Scope
}

export type Scope = 'config' | 'registries'

/** $XDG_RUNTIME_DIR/devreg (per user, cleared at logout), else a per-uid directory under the temp dir. */
export function lockDir({ env, uid }: Pick<Runner, 'env' | 'uid'>): string {
  return env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'devreg') : join(tmpdir(), `devreg-${uid ?? 'user'}`)
}

const registryLock = (r: Pick<Registry, 'name'>) => `registry-${r.name}`

/** The lock names of a config, sorted: every registry container, and unless only those, its cluster and network. */
export function lockNames(config: Pick<Config, 'cluster' | 'network' | 'registries'>, scope: Scope = 'config'): string[] {
  const names = config.registries.map(registryLock)
  if (scope === 'config') names.push(`cluster-${config.cluster.provider}-${config.cluster.name}`, `network-${config.network}`)
  return [...new Set(names)].sort()
}

/** Whether this process holds the lock file already (a nested withLock): its holder is this pid. */
const heldHere = (file: string) => parseHolder(readOrNull(file) ?? '')?.pid === process.pid

/**
 * Runs fn holding the config's locks, waiting (without limit) for another run
 * that holds any of them; releases them when fn ends, throws, or the process
 * gets SIGINT, SIGTERM or SIGHUP. Under --dry-run nothing changes, so no lock.
 */
export function withLock<T>(
  run: LockRunner,
  config: Pick<Config, 'cluster' | 'network' | 'registries'>,
  what: string,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  return holding(run, lockNames(config, opts.scope), what, fn, opts)
}

/**
 * Runs fn holding the locks of these registries alone, as withLock does: every
 * write into a registry's volume takes them (import, verify's probe image),
 * also when the command around it took none (verify) or all (dev-up).
 */
export function withRegistryLocks<T>(
  run: LockRunner,
  registries: Pick<Registry, 'name'>[],
  what: string,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  return holding(run, [...new Set(registries.map(registryLock))].sort(), what, fn, opts)
}

async function holding<T>(run: LockRunner, names: string[], what: string, fn: () => Promise<T>, opts: LockOptions): Promise<T> {
  if (run.dryRun) return fn()
  const dir = opts.dir ?? lockDir(run)
  const files = names.map((n) => join(dir, `${n}.lock`)).filter((f) => !heldHere(f))
  if (!files.length) return fn()
  ensureDir(dir, run.uid)
  const mine: { file: string; holder: string }[] = []
  const release = () => {
    for (const { file, holder } of mine.splice(0).reverse()) {
      // Only our own holder: never remove a file someone else wrote.
      if (readOrNull(file) === holder) unlinkQuietly(file)
    }
  }
  const onSignal = (signal: NodeJS.Signals) => {
    release()
    removeHandlers()
    process.kill(process.pid, signal)
  }
  const removeHandlers = () => {
    for (const s of SIGNALS) process.removeListener(s, onSignal)
    process.removeListener('exit', release)
  }
  for (const s of SIGNALS) process.once(s, onSignal)
  process.once('exit', release)
  try {
    const holder = JSON.stringify({
      pid: process.pid,
      what,
      command: [basename(process.argv[1] ?? what), ...process.argv.slice(2)].join(' '),
      started: new Date().toISOString(),
    } satisfies Holder)
    const say = opts.say ?? log.info
    const waiting = waiter(say, opts.remindMs ?? 30_000)
    for (const file of files) {
      await acquire(file, holder, { waiting, say, pollMs: opts.pollMs ?? 200 })
      mine.push({ file, holder })
    }
    return await fn()
  } finally {
    release()
    removeHandlers()
  }
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

/** The runtime directory, created private; one another user owns is refused (a shared /tmp). */
function ensureDir(dir: string, uid: number | null): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  if (!st.isDirectory() || (uid !== null && st.uid !== uid))
    throw new UserError(`${dir} is not a directory of yours, so devreg cannot keep its locks there: remove it, or set XDG_RUNTIME_DIR`)
}

type Waiting = (holder: Holder, file: string) => void

/** Says once whom a run waits for, then again every remindMs. */
function waiter(say: (line: string) => void, remindMs: number): Waiting {
  let last = 0
  return (h, file) => {
    const now = Date.now()
    if (last && now - last < remindMs) return
    const since = new Date(h.started).toTimeString().slice(0, 8)
    // registry-kind-registry.lock: "registry kind-registry"
    const name = basename(file, '.lock').replace('-', ' ')
    say(`${last ? 'still ' : ''}waiting for ${h.what} (pid ${h.pid}, since ${since}) to finish with this config (${name}) …`)
    last = now
  }
}

async function acquire(
  file: string,
  holder: string,
  { waiting, say, pollMs }: { waiting: Waiting; say: (line: string) => void; pollMs: number },
): Promise<void> {
  for (;;) {
    if (createExclusive(file, holder)) return
    const text = readOrNull(file)
    if (text === null) continue // released between our two looks
    const h = parseHolder(text)
    if (h && alive(h.pid)) waiting(h, file)
    else if (takeOver(file, text)) {
      say(
        h
          ? `${h.what} (pid ${h.pid}) left its lock behind without running any more: taking it over`
          : `${file} is not a devreg lock: replacing it`,
      )
      continue
    }
    await new Promise((r) => setTimeout(r, pollMs))
  }
}

/** Creates path holding text, or returns false when it exists; a link is atomic and never shows a half-written file. */
function createExclusive(path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(tmp, text, { mode: 0o600 })
  try {
    linkSync(tmp, path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  } finally {
    unlinkQuietly(tmp)
  }
}

/**
 * Removes a dead holder's file. Two waiters may see the same dead holder at
 * once: only the one that creates the `.takeover` claim removes it, and only
 * while it still holds that same text, so a lock a third run took meanwhile
 * stays. A claim whose taker died is cleared for the next look.
 */
export function takeOver(file: string, staleText: string): boolean {
  const claim = `${file}.takeover`
  if (!createExclusive(claim, String(process.pid))) {
    const by = Number(readOrNull(claim))
    if (Number.isInteger(by) && by > 0 && !alive(by)) unlinkQuietly(claim)
    return false
  }
  try {
    if (readOrNull(file) !== staleText) return false
    unlinkQuietly(file)
    return true
  } finally {
    unlinkQuietly(claim)
  }
}

function parseHolder(text: string): Holder | null {
  try {
    const h = JSON.parse(text) as Partial<Holder>
    return Number.isInteger(h.pid) && typeof h.what === 'string' && typeof h.started === 'string' ? (h as Holder) : null
  } catch {
    return null
  }
}

/** Signal 0 checks that a process exists; EPERM means it does, under another user. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}
