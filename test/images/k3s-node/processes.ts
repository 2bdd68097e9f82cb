// What /bin/k3s (./k3s.ts) runs, and how it logs: k3s's logrus lines on
// stderr (k3d waits for some of them), the programs it starts as long-running
// children with their output in a log file each (k3s runs them in its own
// process; their logs would bury the lines k3d reads), and one-shot commands
// that must succeed.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, openSync } from 'node:fs'
import { join } from 'node:path'

/** Where each child's output goes, one file per program. */
export const LOGS = '/var/lib/rancher/k3s/logs'

/** A log line as k3s's logrus writes them; k3d retries a node whose last line before exiting is level=fatal. */
export function log(level: 'info' | 'fatal', msg: string) {
  process.stderr.write(`time="${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}" level=${level} msg=${JSON.stringify(msg)}\n`)
}

export function fatal(msg: string): never {
  log('fatal', msg)
  stopAll()
  process.exit(1)
}

const children: ChildProcess[] = []
let stopping = false

/** Starts a long-running program; its exit, unless k3s is stopping, is fatal, as a crashed component is for k3s. */
export function daemon(name: string, argv: string[], env: Record<string, string> = {}): ChildProcess {
  mkdirSync(LOGS, { recursive: true })
  const out = openSync(join(LOGS, `${name}.log`), 'a')
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', out, out], env: { ...process.env, ...env } })
  child.on('exit', (code, signal) => {
    if (!stopping) fatal(`${name} exited (${signal ?? code}): see ${join(LOGS, `${name}.log`)}`)
  })
  children.push(child)
  return child
}

/** Stops every child, newest first. */
export function stopAll() {
  stopping = true
  for (const child of [...children].reverse()) if (child.exitCode === null) child.kill('SIGTERM')
}

/** Runs a command to completion; its failure is fatal. Returns its stdout. */
export function run(argv: string[], opts: { input?: string; env?: Record<string, string> } = {}): string {
  const r = spawnSync(argv[0], argv.slice(1), { input: opts.input, encoding: 'utf8', env: { ...process.env, ...opts.env } })
  if (r.status !== 0)
    fatal(`${argv.slice(0, 4).join(' ')} failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-2).join(' ')}`)
  return r.stdout
}

/** Runs a command; whether it succeeded, and its stdout. */
export function attempt(argv: string[]): { ok: boolean; stdout: string } {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' })
  return { ok: r.status === 0, stdout: r.stdout ?? '' }
}

/** Tries `check` every 200 ms until it holds; fatal after timeoutMs. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) fatal(`${what} within ${timeoutMs / 1000} s`)
    await new Promise((r) => setTimeout(r, 200))
  }
}
