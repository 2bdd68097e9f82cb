// What integration tests share: whether Docker is here, unique names, ports,
// configs, running the scripts as a user would, and cleanup that always runs.
// A whole devreg world (network, upstreams, registries, cluster) is world.ts's.
// Ports (net.ts) and script runs (scripts.ts) need no Docker: re-exported here,
// and imported from there by the CLI and unit tests, which must not probe it.

import { describe } from 'bun:test'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { writeConfig } from './config-file.ts'
import { REGISTRY_IMAGE } from './images.ts'
import { freePort } from './net.ts'

export { freePort, waitHttp } from './net.ts'
export { NO_DOCKER_LOGIN, ROOT, runScript, type ScriptResult } from './scripts.ts'

const daemon = await $({ nothrow: true, quiet: true })`docker version --format {{.Server.Version}}`
export const dockerAvailable = daemon.exitCode === 0
if (!dockerAvailable) {
  if (process.env.DEVREG_REQUIRE_DOCKER === '1')
    throw new Error('DEVREG_REQUIRE_DOCKER=1 but no Docker daemon answers `docker version`: start dockerd')
  console.error('SKIPPING integration tests: no Docker daemon reachable (set DEVREG_REQUIRE_DOCKER=1 to make this a failure)')
}

/** describe() for tests that need a real Docker daemon. */
export const integration = (name: string, fn: () => void) => describe.skipIf(!dockerAvailable)(name, fn)

/** Docker objects one test file creates, removed afterwards whatever happened. */
export class Fixture {
  readonly id = randomBytes(3).toString('hex')
  private containers = new Set<string>()
  private volumes = new Set<string>()
  private networks = new Set<string>()
  readonly dir = mkdtempSync(join(tmpdir(), 'devreg-test-'))

  /** Everything this fixture's names start with. */
  get prefix(): string {
    return `dt${this.id}-`
  }

  /** A name unique to this fixture; registered for cleanup as a container, volume or network. */
  name(base: string, kind: 'container' | 'volume' | 'network' = 'container'): string {
    const name = `dt${this.id}-${base}`
    ;({ container: this.containers, volume: this.volumes, network: this.networks })[kind].add(name)
    return name
  }

  async network(base: string): Promise<string> {
    const name = this.name(base, 'network')
    await $({ quiet: true })`docker network create ${name}`
    return name
  }

  /** Writes a config file for the scripts; every test config overrides the upstreams. */
  config(doc: unknown, file = 'devreg.yaml'): string {
    return writeConfig(this.dir, doc, file)
  }

  async cleanup(): Promise<void> {
    const q = $({ nothrow: true, quiet: true })
    // Volumes named after registries devreg derived (name-data) are covered by the prefix.
    const prefix = `dt${this.id}-`
    const leftovers = (await q`docker ps -a --format {{.Names}}`).stdout.split('\n').filter((n) => n.startsWith(prefix))
    for (const c of new Set([...this.containers, ...leftovers])) await q`docker rm -f -v ${c}`
    const vols = (await q`docker volume ls --format {{.Name}}`).stdout.split('\n').filter((n) => n.startsWith(prefix))
    for (const v of new Set([...this.volumes, ...vols])) await q`docker volume rm -f ${v}`
    for (const n of this.networks) await q`docker network rm ${n}`
    // Configs, kubeconfigs and archives the test wrote: nothing in them outlives the test.
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/**
 * Container IDs and states, volumes and networks whose names start with
 * `prefix`: what "changes no docker object" is checked against (test files run
 * in parallel, so only this file's own objects are compared).
 */
export async function dockerSnapshot(prefix: string): Promise<string> {
  const q = $({ quiet: true })
  const [c, v, n] = await Promise.all([
    q`docker ps -a --no-trunc --format ${'{{.ID}} {{.Names}} {{.State}}'}`,
    q`docker volume ls --format {{.Name}}`,
    q`docker network ls --format {{.Name}}`,
  ])
  const own = (s: string) =>
    s
      .split('\n')
      .filter((l) => l.split(' ').some((w) => w.startsWith(prefix)))
      .sort()
      .join('\n')
  return [c.stdout, v.stdout, n.stdout].map(own).join('\n--\n')
}

/** A registry section for a test config with fixture-unique names and free ports. */
export async function testRegistry(fx: Fixture) {
  return {
    name: fx.name('registry'),
    port: await freePort(),
    image: REGISTRY_IMAGE,
    volume: fx.name('registry-data', 'volume'),
  }
}

/**
 * The rig's kind node images, one per containerd line (test/run.ts passes
 * them in DEVREG_RIG_NODE_IMAGES). The e2e tests run only inside the rig.
 */
export function rigNodeImages(): { line: string; image: string }[] {
  const value = process.env.DEVREG_RIG_NODE_IMAGES
  if (!value)
    throw new Error('DEVREG_RIG_NODE_IMAGES is not set: run the e2e tests through `just test` (test/run.ts), which starts the rig')
  return value.split(',').map((pair) => {
    const [line, image] = pair.split('=')
    return { line, image }
  })
}

/** The rig's k3s-like node image for the real k3d CLI (test/kit/rig/k3d-images.ts; test/run.ts passes it in DEVREG_RIG_K3S_IMAGE). */
export function rigK3sImage(): string {
  const image = process.env.DEVREG_RIG_K3S_IMAGE
  if (!image) throw new Error('DEVREG_RIG_K3S_IMAGE is not set: run the e2e tests through `just test` (test/run.ts), which starts the rig')
  return image
}

/**
 * Environment for dev-up on the real kind or k3d CLI: a kubeconfig of the
 * test's own, which kind and k3d write their context into and the real
 * kubectl (first on the rig's PATH) reads.
 */
export function kindEnv(fx: Fixture): Record<string, string> {
  return { KUBECONFIG: join(fx.dir, 'kubeconfig') }
}
