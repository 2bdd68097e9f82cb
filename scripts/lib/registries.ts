// The registry containers devreg owns: compare what runs with what the config
// asks for, then do only what differs. Shared by dev-registry and dev-up.

import { createHmac, randomBytes } from 'node:crypto'
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { confirm } from './cli.ts'
import type { Config, Registry } from './config.ts'
import type { Container } from './docker.ts'
import * as docker from './docker.ts'
import { settings } from './exec.ts'
import { portFree } from './host.ts'
import { EXIT, type ExitCode, formatBytes, log, UserError } from './log.ts'
import { waitForV2 } from './registry.ts'
import { type ContainerSpec, credentialedContainer, LABEL, registryContainer } from './render.ts'

export type Action = 'create' | 'recreate' | 'start' | 'none'

export interface Step {
  registry: Registry
  spec: ContainerSpec
  current: Container | null
  action: Action
  /** Why, for the report: "settings changed", "stopped", ... */
  reason: string
}

/** Decides what each registry needs; refuses, before anything changes, when a step cannot be done. */
export async function planRegistries(
  config: Config,
  containers: Container[],
  env: Record<string, string | undefined> = process.env,
): Promise<Step[]> {
  const byName = new Map(containers.map((c) => [c.name, c]))
  // A missing credential variable is the user's setup to fix (usage, exit 2); a taken port or a foreign container is the machine's state (exit 1).
  const problems: { message: string; exitCode: ExitCode }[] = []
  const specs: ContainerSpec[] = []
  for (const r of config.registries) specs.push(await registrySpec(r, env, byName.get(r.name) ?? null))
  const steps = config.registries.map((registry, i): Step => {
    const spec = specs[i]
    const current = byName.get(registry.name) ?? null
    if (current && !docker.isOwned(current)) {
      problems.push({
        message:
          `a container named ${registry.name} exists but devreg did not create it, so devreg leaves it alone: ` +
          `run \`dev-registry adopt ${registry.name}\` to copy its images into devreg's volume and replace it, ` +
          `or set ${registry.path}.name to another name`,
        exitCode: EXIT.failed,
      })
      return { registry, spec, current, action: 'none', reason: 'not devreg’s' }
    }
    if (!current) return { registry, spec, current, action: 'create', reason: 'missing' }
    if (current.labels[LABEL.hash] !== spec.hash) return { registry, spec, current, action: 'recreate', reason: 'settings changed' }
    if (current.state !== 'running') return { registry, spec, current, action: 'start', reason: current.state }
    return { registry, spec, current, action: 'none', reason: 'up to date' }
  })
  for (const step of steps.filter((s) => s.action === 'create' || s.action === 'recreate' || s.action === 'start')) {
    for (const from of Object.values(step.spec.secretEnv))
      if (step.action !== 'start' && !env[from])
        problems.push({
          message: `${from} is not set: export it (credentials for ${step.registry.name}) or remove ${step.registry.path}.credentials`,
          exitCode: EXIT.usage,
        })
    const problem = await portProblem(step, containers)
    if (problem) problems.push({ message: problem, exitCode: EXIT.failed })
  }
  if (problems.length)
    throw new UserError(
      problems.map((p) => p.message).join('\n'),
      problems.some((p) => p.exitCode === EXIT.usage) ? EXIT.usage : EXIT.failed,
    )
  return steps
}

/**
 * The spec of one registry with its credentials folded into the hash as a
 * keyed digest. When the values are not set here the digest the container was
 * made with stands in: a shell without the token cannot tell a rotation, and
 * should not recreate a working cache for it.
 */
export async function registrySpec(
  registry: Registry,
  env: Record<string, string | undefined>,
  current: Container | null,
): Promise<ContainerSpec> {
  if (!registry.credentials) return registryContainer(registry)
  const values = [env[registry.credentials.usernameEnv], env[registry.credentials.passwordEnv]]
  if (values.some((v) => !v)) return credentialedContainer(registry, current?.labels[LABEL.credentials])
  return credentialedContainer(registry, credentialDigest(await hashKey(env), values as string[]))
}

/**
 * HMAC-SHA256 of the credential values under the machine's own key: it changes
 * when a token does, and a label holding it cannot be used to test guesses of a
 * short secret without the key (a plain SHA-256 could).
 */
export function credentialDigest(key: Buffer, values: string[]): string {
  return createHmac('sha256', key).update(JSON.stringify(values)).digest('hex')
}

/** Where the key lives: per user and machine, beside other configuration (XDG Base Directory). */
export function hashKeyPath(env: Record<string, string | undefined>): string {
  const base = env.XDG_CONFIG_HOME?.startsWith('/') ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config')
  return join(base, 'devreg', 'hash.key')
}

/** The key, created (32 random bytes, mode 0600) the first time credentials are hashed; never written under --dry-run. */
export async function hashKey(env: Record<string, string | undefined>): Promise<Buffer> {
  const path = hashKeyPath(env)
  const read = async () => {
    const key = await readFile(path)
    if (key.length < 32) throw new UserError(`${path} is not a devreg hash key (too short): delete it and run again`)
    return key
  }
  try {
    return await read()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // A key nobody stored: every container with credentials counts as changed, as it will when the key is written.
  if (settings.dryRun) return randomBytes(32)
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  // Written aside and linked into place, so a concurrent run reads a whole key or none.
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, randomBytes(32), { mode: 0o600 })
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  } finally {
    await unlink(tmp)
  }
  return read()
}

/** A port is taken when another container publishes it or something else on the host listens on it. */
async function portProblem(step: Step, containers: Container[]): Promise<string | null> {
  const { bind, port, name } = step.registry
  const holder = containers.find((c) => c.name !== name && c.state === 'running' && publishes(c, port))
  if (holder)
    return `port ${port} is already published by container ${holder.name}: stop it, or give ${step.registry.path}.port another port`
  if (step.current?.state === 'running' && publishes(step.current, port)) return null
  if (settings.dryRun) return null
  if (!(await portFree(bind, port)))
    return `port ${bind}:${port} is already in use by another process: free it (\`ss -ltnp 'sport = :${port}'\` shows which), or give ${step.registry.path}.port another port`
  return null
}

function publishes(c: Container, port: number): boolean {
  return c.ports.split(',').some((p) => new RegExp(`:${port}->`).test(p))
}

const APPLY: Record<Action, string> = { create: 'created', recreate: 'recreated', start: 'started', none: 'unchanged' }
const PLAN: Record<Action, string> = { create: 'would create', recreate: 'would recreate', start: 'would start', none: 'unchanged' }

/** Carries out a plan, attaches every registry to the cluster network, and waits for /v2/. */
export async function applyRegistries(
  steps: Step[],
  /** The cluster network when it exists. */
  network: string | null,
  env: Record<string, string | undefined> = process.env,
): Promise<{ changed: number }> {
  // A cache decides proxy or offline mode as it starts, so it must start on the
  // network its upstream is reached through, not be connected to it later.
  for (const step of steps) {
    const { registry, spec } = step
    if (step.action === 'create') {
      await docker.ensureVolume(registry.volume)
      await docker.runContainer(spec, env, network)
    } else if (step.action === 'recreate') {
      // The volume stays: the recreated container serves the same data.
      await docker.removeContainer(registry.name)
      await docker.runContainer(spec, env, network)
    } else if (step.action === 'start') {
      await docker.startContainer(registry.name)
    }
  }
  // Created and recreated containers started on the network already.
  const existing = steps.filter((s) => s.action === 'none' || s.action === 'start')
  if (network)
    await attachRegistries(
      existing.map((s) => s.registry),
      network,
      (name) => existing.find((s) => s.registry.name === name)?.current ?? null,
    )
  if (!settings.dryRun) {
    const answers = await Promise.all(steps.map(async (s) => ({ step: s, answer: await waitForV2(s.registry.address.url, 30_000) })))
    const down = answers.filter((a) => !a.answer.ok)
    if (down.length)
      throw new UserError(
        down
          .map(
            ({ step, answer }) =>
              `${step.registry.name} does not answer GET ${step.registry.address.url}/v2/ (${answer.error ?? `HTTP ${answer.status}`}): see \`docker logs ${step.registry.name}\``,
          )
          .join('\n'),
      )
  }
  for (const s of steps)
    (s.action === 'none' || settings.dryRun ? log.info : log.ok)(
      `${s.registry.name.padEnd(28)} ${s.registry.address.url.padEnd(24)} ${(settings.dryRun ? PLAN : APPLY)[s.action]}${s.action === 'none' ? '' : ` (${s.reason})`}`,
    )
  return { changed: steps.filter((s) => s.action !== 'none').length }
}

/**
 * Every registry joins the cluster network whenever it exists, on every
 * apply, not only at create (the other half of ctlptl #424). Returns how many
 * were connected.
 */
export async function attachRegistries(
  registries: Registry[],
  network: string,
  current: (name: string) => Container | null,
): Promise<number> {
  let attached = 0
  for (const r of registries) {
    if (current(r.name)?.networks.includes(network)) continue
    await docker.connectNetwork(network, r.name)
    attached++
  }
  return attached
}

/** Observes and ensures in one go: the `up` of dev-registry and the first phase of dev-up. */
export async function ensureRegistries(config: Config, env: Record<string, string | undefined> = process.env) {
  const [containers, networkExists] = await Promise.all([docker.listContainers(), docker.networkExists(config.network)])
  const steps = await planRegistries(config, containers, env)
  return applyRegistries(steps, networkExists ? config.network : null, env)
}

/**
 * Removes the registry containers of the given roles; with `purge` also their
 * volumes, after listing each with its size and asking (--yes skips it).
 * Returns false when the user said no.
 */
export async function removeRegistries(
  config: Config,
  { purge, yes, roles }: { purge: boolean; yes: boolean; roles: Registry['role'][] },
): Promise<boolean> {
  const chosen = config.registries.filter((r) => roles.includes(r.role))
  const containers = await docker.listContainers()
  const present = chosen.filter((r) => containers.some((c) => c.name === r.name && docker.isOwned(c)))
  const volumes = []
  if (purge)
    for (const r of chosen)
      if (await docker.volumeExists(r.volume)) {
        const what = r.role === 'local' ? 'images pushed to the local registry' : `cache of ${r.host}`
        volumes.push({ name: r.volume, what, bytes: await docker.volumeBytes(r.volume, r.image) })
      }
  if (volumes.length) {
    log.info('These volumes and everything in them would be deleted:')
    for (const v of volumes) log.info(`  ${v.name.padEnd(36)} ${v.bytes === null ? 'size unknown' : formatBytes(v.bytes)}  (${v.what})`)
    if (!settings.dryRun && !(await confirm('Delete them?', yes))) {
      log.info('nothing deleted')
      return false
    }
  }
  for (const r of present) {
    await docker.removeContainer(r.name)
    if (!settings.dryRun) log.ok(`${r.name} removed${purge ? '' : ` (volume ${r.volume} kept)`}`)
  }
  for (const v of volumes) {
    await docker.removeVolume(v.name)
    if (!settings.dryRun) log.ok(`volume ${v.name} deleted`)
  }
  return true
}
