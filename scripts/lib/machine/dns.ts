// Name resolution where devreg needs names to work: on the host (the system
// resolver, as `docker push` sees it), in a short-lived container on the
// cluster network (Docker's embedded DNS) and inside each node.
import { lookup } from 'node:dns/promises'
import type { Runner } from '../core/exec.ts'
import { template } from '../core/templates.ts'

export interface Lookup {
  /** Every address the name resolves to; empty when it does not resolve. */
  addresses: string[]
  error: string | null
}

/** Resolves through getaddrinfo, so /etc/hosts, nsswitch and DNS all count, as they do for the docker CLI. */
export async function resolveOnHost(name: string, timeoutMs = 5000): Promise<Lookup> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEOUT' })), timeoutMs)
  })
  try {
    const found = await Promise.race([lookup(name, { all: true }), timeout])
    return { addresses: [...new Set(found.map((a) => a.address))], error: null }
  } catch (err) {
    return { addresses: [], error: (err as NodeJS.ErrnoException).code ?? String(err) }
  } finally {
    clearTimeout(timer)
  }
}

/** Prints `NAME ADDRESS...` for each name given as an argument. */
const RESOLVE_SCRIPT = template('resolve-names.sh')

export function parseResolved(names: string[], stdout: string): Map<string, Lookup> {
  const found = new Map(
    stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [name, ...addresses] = line.trim().split(/\s+/)
        return [name, addresses] as const
      }),
  )
  return new Map(names.map((n) => [n, { addresses: found.get(n) ?? [], error: null }]))
}

export interface InContainer {
  resolved: Map<string, Lookup> | null
  /** Why the names could not be resolved there at all. */
  error: string | null
}

/**
 * Resolves names in a container, in one command: `shell` runs sh there, e.g.
 * [docker, exec, NODE, sh] or [docker, run, ..., --entrypoint, sh, IMAGE].
 */
export async function resolveIn(run: Runner, shell: string[], names: string[]): Promise<InContainer> {
  if (!names.length) return { resolved: new Map(), error: null }
  const r = await run.probe([...shell, '-c', RESOLVE_SCRIPT, 'resolve-names', ...names])
  return r.ok
    ? { resolved: parseResolved(names, r.stdout), error: null }
    : { resolved: null, error: firstLine(r.stderr) || `exit code ${r.exitCode}` }
}

export const firstLine = (s: string) => s.trim().split('\n')[0] ?? ''
