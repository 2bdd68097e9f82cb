// The registry containers devreg owns: the `docker run` settings and hash of
// each, then compare what runs with what the config asks for and do only what
// differs (plan, apply, attach). Shared by dev-registry and dev-up; removing
// them is registry-removal.ts, adopting a foreign one registry-adoption.ts.

import { createHash, createHmac, randomBytes } from 'node:crypto'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import type { Config, Registry } from '../core/config.ts'
import type { Container, RunSpec } from '../core/docker.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { LABEL } from '../core/labels.ts'
import { EXIT, type ExitCode, log, UserError } from '../core/log.ts'
import { template } from '../core/templates.ts'
import { portFree } from '../machine/local-addresses.ts'
import { waitForV2 } from './distribution.ts'
import { ANONYMOUS, type CacheLogin, cacheLogins, PROXY_LOGIN_ENV, proxyLoginEnv } from './login.ts'
import { REGISTRY_DATA } from './registry-layout.ts'

/** The cache entrypoint: serves read-only while the upstream is unreachable (distribution #4038). */
export const CACHE_ENTRYPOINT = template('cache-entrypoint.sh')

/** Registries run for months: their logs rotate at 10 MiB x 3 (report reads what is kept). */
const LOG_ROTATION = ['--log-driver', 'json-file', '--log-opt', 'max-size=10m', '--log-opt', 'max-file=3']

export interface ContainerSpec extends RunSpec {
  /** Hash of every setting devreg chooses; stored as a label to detect drift. */
  hash: string
}

/** The `docker run` settings for one registry pulling anonymously; a change to any of them recreates the container. */
export const registryContainer = (r: Registry): ContainerSpec => containerSpec(r, null)

/** The environment distribution gets: the same for every registry of a role, never a secret. */
function registryEnv(r: Registry): string[] {
  return [
    // The official registry:3 config logs at debug, which fills the 30 MiB
    // rotation below within days and shortens `report`'s window; every line
    // `report` reads (response completed, scheduler entries) is info.
    'REGISTRY_LOG_LEVEL=info',
    // distribution 3 exports traces to localhost:4318 unless told otherwise
    // (its docs, "Disable traces export"; the official image sets this too).
    'OTEL_TRACES_EXPORTER=none',
    ...(r.role === 'local'
      ? // GC deletes manifests through the API, which needs storage delete.
        ['REGISTRY_STORAGE_DELETE_ENABLED=true']
      : [
          `REGISTRY_PROXY_REMOTEURL=${r.upstream}`,
          // With delete disabled distribution 2.8's proxy scheduler cannot expire
          // content (its 168h TTL deletes through the storage API); v3 reads
          // proxy.ttl and 0 means never. Eviction is registry-gc's job.
          'REGISTRY_STORAGE_DELETE_ENABLED=false',
          'REGISTRY_PROXY_TTL=0',
          // distribution 3.1 stores a fetched blob under a deadline of its own
          // (proxy.cachewritetimeout, 5m by default): a layer that takes longer
          // on a slow link is served but never stored, and fetched again next
          // time. 2.8 and 3.0 ignore the variable (2.8 warns once at start).
          'REGISTRY_PROXY_CACHEWRITETIMEOUT=1h',
        ]),
  ]
}

/**
 * The settings of a cache that pulls with a login: the proxy's user name and
 * password by name only, and `credentialDigest`, a keyed digest of the values
 * (credentialDigest below), folded into the hash: a rotated token recreates
 * the cache while the values stay out of the spec.
 */
export const credentialedContainer = (r: Registry, credentialDigest: string | undefined): ContainerSpec =>
  containerSpec(r, { digest: credentialDigest })

function containerSpec(r: Registry, login: { digest: string | undefined } | null): ContainerSpec {
  const env = registryEnv(r)
  const secretEnv: string[] = login ? [...PROXY_LOGIN_ENV] : []
  const labels = [
    `${LABEL.managed}=true`,
    `${LABEL.role}=${r.role}`,
    ...(r.upstreamDomain ? [`${LABEL.upstreamDomain}=${r.upstreamDomain}`] : []),
  ]
  const settings = [
    '--restart=always',
    ...labels.flatMap((l) => ['--label', l]),
    '--publish',
    r.address.publish,
    '--volume',
    `${r.volume}:${REGISTRY_DATA}`,
    ...LOG_ROTATION,
    ...env.flatMap((e) => ['--env', e]),
    ...secretEnv.flatMap((name) => ['--env', name]),
    ...(r.role === 'cache' ? ['--init', '--entrypoint', '/bin/sh'] : []),
    r.image,
    // No config path: the entrypoint finds the image's own (registry:2 and registry:3 keep it in different places).
    ...(r.role === 'cache' ? ['-c', CACHE_ENTRYPOINT, 'devreg-cache'] : []),
  ]
  const digest = login?.digest
  // Without credentials the hash is what it was before digests existed, so an upgrade recreates nothing.
  const hasher = createHash('sha256').update(JSON.stringify(settings))
  if (digest) hasher.update(digest)
  const hash = hasher.digest('hex').slice(0, 16)
  return {
    name: r.name,
    args: [
      '--name',
      r.name,
      '--label',
      `${LABEL.hash}=${hash}`,
      // Kept to compare with when a later run lacks the values (see registrySpec).
      ...(digest ? ['--label', `${LABEL.credentials}=${digest}`] : []),
      ...settings,
    ],
    secretEnv,
    hash,
  }
}

export type Action = 'create' | 'recreate' | 'start' | 'none'

export interface Step {
  registry: Registry
  spec: ContainerSpec
  current: Container | null
  action: Action
  /** Why, for the report: "settings changed", "stopped", ... */
  reason: string
  /** What the cache pulls as; `docker run` gets the values of a login. */
  login: CacheLogin
}

/**
 * Decides what each registry needs; refuses, before anything changes, when a
 * step cannot be done. Logins come from the runner's environment and the
 * Docker client's config (lib/registries/login.ts).
 */
export async function planRegistries(run: Runner, config: Config, containers: Container[]): Promise<Step[]> {
  const byName = new Map(containers.map((c) => [c.name, c]))
  const logins = await cacheLogins(run, config.registries)
  const loginOf = (r: Registry) => logins.get(r.name) ?? ANONYMOUS
  // A missing credential variable is the user's setup to fix (usage, exit 2); a taken port or a foreign container is the machine's state (exit 1).
  const problems: { message: string; exitCode: ExitCode }[] = []
  const specs: ContainerSpec[] = []
  for (const r of config.registries) specs.push(await registrySpec(run, r, loginOf(r), byName.get(r.name) ?? null))
  const steps = config.registries.map((registry, i): Step => {
    const spec = specs[i]
    const current = byName.get(registry.name) ?? null
    const step = { registry, spec, current, login: loginOf(registry) }
    if (current && !docker.isOwned(current)) {
      problems.push({
        message:
          `a container named ${registry.name} exists but devreg did not create it, so devreg leaves it alone: ` +
          `run \`dev-registry adopt ${registry.name}\` to copy its images into devreg's volume and replace it, ` +
          `or set ${registry.path}.name to another name`,
        exitCode: EXIT.failed,
      })
      return { ...step, action: 'none', reason: 'not devreg’s' }
    }
    if (!current) return { ...step, action: 'create', reason: 'missing' }
    if (current.labels[LABEL.hash] !== spec.hash) return { ...step, action: 'recreate', reason: 'settings changed' }
    if (current.state !== 'running') return { ...step, action: 'start', reason: current.state }
    return { ...step, action: 'none', reason: 'up to date' }
  })
  warnUnreadableLogins(steps)
  for (const step of steps.filter((s) => s.action === 'create' || s.action === 'recreate' || s.action === 'start')) {
    // Only an env login is unavailable with its names in the spec (registrySpec): the user's to export.
    if (step.action !== 'start' && step.spec.secretEnv.length && step.login.state === 'unavailable')
      problems.push({ message: step.login.problem, exitCode: EXIT.usage })
    const problem = await portProblem(run, step, containers)
    if (problem) problems.push({ message: problem, exitCode: EXIT.failed })
  }
  if (problems.length)
    throw new UserError(
      problems.map((p) => p.message).join('\n'),
      problems.some((p) => p.exitCode === EXIT.usage) ? EXIT.usage : EXIT.failed,
    )
  return steps
}

/** One warning per reason a docker login could not be read, naming the caches it leaves without one. */
export function warnUnreadableLogins(caches: Pick<Step, 'registry' | 'login' | 'spec'>[]): void {
  const byProblem = new Map<string, { kept: string[]; anonymous: string[] }>()
  for (const { login, spec, registry } of caches) {
    if (login.state !== 'unavailable' || login.source.kind !== 'docker') continue
    const entry = byProblem.get(login.problem) ?? { kept: [], anonymous: [] }
    ;(spec.secretEnv.length ? entry.kept : entry.anonymous).push(registry.name)
    byProblem.set(login.problem, entry)
  }
  for (const [problem, { kept, anonymous }] of byProblem) {
    const outcomes = [
      ...(anonymous.length ? [`pulling anonymously: ${anonymous.join(', ')}`] : []),
      ...(kept.length ? [`unchanged, with the login it was created with: ${kept.join(', ')}`] : []),
    ]
    log.warn(`your docker login cannot be used: ${problem}; ${outcomes.join('; ')}`)
  }
}

/**
 * The spec of one registry with its login folded into the hash as a keyed
 * digest. When the login cannot be had here, the digest the container was
 * made with stands in: a shell without the token, or with a locked keychain,
 * cannot tell a rotation, and should not recreate a working cache for it. A
 * docker login that cannot be read leaves a cache to be made anonymous.
 */
export async function registrySpec(run: Runner, registry: Registry, login: CacheLogin, current: Container | null): Promise<ContainerSpec> {
  if (login.state === 'anonymous') return registryContainer(registry)
  if (login.state === 'login')
    return credentialedContainer(registry, credentialDigest(await hashKey(run), [login.login.username, login.login.secret]))
  const kept = credentialedContainer(registry, current?.labels[LABEL.credentials])
  return login.source.kind === 'env' || current?.labels[LABEL.hash] === kept.hash ? kept : registryContainer(registry)
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
export function hashKeyPath(env: Readonly<Record<string, string | undefined>>): string {
  const base = env.XDG_CONFIG_HOME?.startsWith('/') ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config')
  return join(base, 'devreg', 'hash.key')
}

/** The key, created (32 random bytes, mode 0600) the first time credentials are hashed; never written under --dry-run. */
export async function hashKey(run: Runner): Promise<Buffer> {
  const path = hashKeyPath(run.env)
  const read = async () => {
    const key = await run.files.read(path)
    if (key.length < 32) throw new UserError(`${path} is not a devreg hash key (too short): delete it and run again`)
    return key
  }
  try {
    return await read()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // A key nobody stored: every container with credentials counts as changed, as it will when the key is written.
  if (run.dryRun) return randomBytes(32)
  await run.files.mkdir(dirname(path), { mode: 0o700 })
  // Written aside and linked into place, so a concurrent run reads a whole key or none.
  const tmp = `${path}.${process.pid}.tmp`
  await run.files.write(tmp, randomBytes(32), { mode: 0o600 })
  try {
    await run.files.link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  } finally {
    await run.files.unlink(tmp)
  }
  return read()
}

/** A port is taken when another container publishes it or something else on the host listens on it. */
async function portProblem(run: Runner, step: Step, containers: Container[]): Promise<string | null> {
  const { bind, port, name } = step.registry
  const holder = containers.find((c) => c.name !== name && c.state === 'running' && publishes(c, port))
  if (holder)
    return `port ${port} is already published by container ${holder.name}: stop it, or give ${step.registry.path}.port another port`
  if (step.current?.state === 'running' && publishes(step.current, port)) return null
  if (run.dryRun) return null
  if (!(await portFree(bind, port)))
    return `port ${bind}:${port} is already in use by another process: free it (\`ss -ltnp 'sport = :${port}'\` shows which), or give ${step.registry.path}.port another port`
  return null
}

function publishes(c: Container, port: number): boolean {
  return c.ports.split(',').some((p) => new RegExp(`:${port}->`).test(p))
}

const APPLY: Record<Action, string> = { create: 'created', recreate: 'recreated', start: 'started', none: 'unchanged' }
const PLAN: Record<Action, string> = { create: 'would create', recreate: 'would recreate', start: 'would start', none: 'unchanged' }

/** How long a registry has to answer GET /v2/ once it is up. */
const READY_MS = 30_000

/**
 * Carries out a plan, attaches every registry to the cluster network (when it
 * exists), and waits for /v2/; says how many registries it changed, and how
 * many it attached besides.
 */
export async function applyRegistries(run: Runner, steps: Step[], network: string | null): Promise<{ changed: number; attached: number }> {
  // A cache decides proxy or offline mode as it starts, so it must start on the
  // network its upstream is reached through, not be connected to it later.
  for (const step of steps) {
    const { registry, spec } = step
    const secrets = step.login.state === 'login' ? proxyLoginEnv(step.login.login) : {}
    if (step.action === 'create') {
      await docker.ensureVolume(run, registry.volume)
      await docker.runContainer(run, spec, secrets, network)
    } else if (step.action === 'recreate') {
      // The volume stays: the recreated container serves the same data.
      await docker.removeContainer(run, registry.name)
      await docker.runContainer(run, spec, secrets, network)
    } else if (step.action === 'start') {
      await docker.startContainer(run, registry.name)
    }
  }
  // Created and recreated containers started on the network already.
  const existing = steps.filter((s) => s.action === 'none' || s.action === 'start')
  const attached = network
    ? await attachRegistries(
        run,
        existing.map((s) => s.registry),
        network,
        (name) => existing.find((s) => s.registry.name === name)?.current ?? null,
      )
    : 0
  if (!run.dryRun) {
    const answers = await Promise.all(steps.map(async (s) => ({ step: s, answer: await waitForV2(run, s.registry.address.url, READY_MS) })))
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
    (s.action === 'none' || run.dryRun ? log.info : log.ok)(
      `${s.registry.name.padEnd(28)} ${s.registry.address.url.padEnd(24)} ${(run.dryRun ? PLAN : APPLY)[s.action]}${s.action === 'none' ? '' : ` (${s.reason})`}`,
    )
  return { changed: steps.filter((s) => s.action !== 'none').length, attached }
}

/**
 * Every registry joins the cluster network whenever it exists, on every
 * apply, not only at create (the other half of ctlptl #424). Returns how many
 * were connected.
 */
export async function attachRegistries(
  run: Runner,
  registries: Registry[],
  network: string,
  current: (name: string) => Container | null,
): Promise<number> {
  let attached = 0
  for (const r of registries) {
    if (current(r.name)?.networks.includes(network)) continue
    await docker.connectNetwork(run, network, r.name)
    attached++
  }
  return attached
}

/** Observes and ensures in one go: the `up` of dev-registry and the first phase of dev-up. */
export async function ensureRegistries(run: Runner, config: Config) {
  const [containers, networkExists] = await Promise.all([docker.listContainers(run), docker.networkExists(run, config.network)])
  const steps = await planRegistries(run, config, containers)
  return applyRegistries(run, steps, networkExists ? config.network : null)
}
