// What every `just bench` section shares: the section contract, a workspace of
// uniquely named docker objects removed afterwards, timing, and the machine
// the numbers were measured on. Node APIs and zx only, so the bench runs under
// Bun and tsx alike.
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { createRunner } from '../scripts/lib/core/exec.ts'
import { hostUrl, waitForV2 } from '../scripts/lib/registries/distribution.ts'
import { writeConfig } from '../test/kit/config-file.ts'
import { NODE_IMAGE, REGISTRY_IMAGE } from '../test/kit/images.ts'

export { freePort } from '../test/kit/net.ts'

export const ROOT = join(import.meta.dirname, '..')
/** Scripts are timed under Bun, as `just` runs them. */
export const BUN = join(ROOT, 'node_modules/.bin/bun')

/** A goal the bench checks; `just bench` exits 1 when one is not met. */
export interface Check {
  target: string
  measured: string
  met: boolean
}

export interface SectionResult {
  /** Markdown for bench/results.md (also printed). */
  markdown: string
  checks: Check[]
}

/**
 * One part of `just bench`. A section creates what it measures in its
 * workspace (`ctx.id` prefixes every docker object) and leaves cleanup to it.
 */
export interface Section {
  name: string
  title: string
  run(ctx: BenchContext): Promise<SectionResult>
}

export interface BenchContext {
  /** Prefix of every container, volume and network of this section. */
  id: string
  root: string
  bun: string
  ws: Workspace
}

const q = () => $({ quiet: true, nothrow: true })

/** Docker objects named `${id}-...` and a scratch directory, all removed by cleanup(). */
export class Workspace {
  readonly dir = mkdtempSync(join(tmpdir(), 'devreg-bench-'))
  private networks: string[] = []

  constructor(readonly id: string) {}

  name(base: string): string {
    return `${this.id}-${base}`
  }

  async network(base = 'net'): Promise<string> {
    const name = this.name(base)
    await $({ quiet: true })`docker network create ${name}`
    this.networks.push(name)
    return name
  }

  /**
   * A registry:3 container on `network` (the fake "internet"), published on
   * 127.0.0.1:port when a port is given; returns once it answers /v2/.
   */
  async upstream(network: string, port?: number, base = 'upstream'): Promise<string> {
    const name = this.name(base)
    const publish = port ? ['-p', `127.0.0.1:${port}:5000`] : []
    await $({ quiet: true })`docker run -d --name ${name} --network ${network} ${publish} ${REGISTRY_IMAGE}`
    if (port && !(await waitForV2(createRunner(), hostUrl('127.0.0.1', port), 60_000)).ok)
      throw new Error(`${name} did not answer /v2/ on 127.0.0.1:${port} within 60 s`)
    return name
  }

  /** Writes a devreg config; its path. */
  config(doc: unknown, file = 'devreg.yaml'): string {
    return writeConfig(this.dir, doc, file)
  }

  async cleanup(): Promise<void> {
    const own = (out: string) => out.split('\n').filter((n) => n.startsWith(`${this.id}-`))
    for (const c of own((await q()`docker ps -a --format {{.Names}}`).stdout)) await q()`docker rm -f -v ${c}`
    for (const v of own((await q()`docker volume ls --format {{.Name}}`).stdout)) await q()`docker volume rm -f ${v}`
    for (const n of this.networks) await q()`docker network rm ${n}`
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Runs scripts/NAME.ts under Bun; throws with its stderr when it fails. */
export async function script(name: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const p = await $({
    quiet: true,
    nothrow: true,
    env: { ...process.env, NO_COLOR: '1', ...env },
  })`${BUN} ${join(ROOT, 'scripts', `${name}.ts`)} ${args}`
  if (p.exitCode !== 0) throw new Error(`${name} ${args.join(' ')} failed (exit ${p.exitCode}): ${p.stderr.trim()}`)
  return p.stdout
}

/** Milliseconds fn takes. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
export const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`

/** What the numbers were measured on, for bench/results.md. */
export async function machine(): Promise<string[]> {
  const out = async (p: Promise<{ stdout: string; stderr: string }>) => {
    const r = await p
    return (r.stdout.trim() || r.stderr.trim()).split('\n')[0]
  }
  const [docker, registry, containerd] = await Promise.all([
    out(q()`docker version --format {{.Server.Version}}`),
    out(q()`docker run --rm ${REGISTRY_IMAGE} --version`),
    out(q()`docker run --rm --entrypoint containerd ${NODE_IMAGE} --version`),
  ])
  const cpu = cpus()
  return [
    `- machine: ${cpu.length} CPUs (${cpu[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB memory, Linux ${release()}`,
    `- Docker ${docker}; registries: ${registry} (${REGISTRY_IMAGE}); nodes: ${containerd}`,
    `- scripts under Bun ${(await out(q()`${BUN} --version`)) || '?'}; date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
  ]
}
