// The machine's own Docker engine, wired to the caches: `registry-mirrors` in
// daemon.json for docker.io (any engine), and containerd hosts.toml files under
// /etc/docker/certs.d/<host>/ for every cached host where the engine reads them.
//
// Which engines read those hosts.toml files: only the containerd image store
// of Docker Engine 28.0 and later. There moby's Daemon.RegistryHosts
// (daemon/hosts.go, called by daemon/containerd/resolver.go for every pull)
// is containerd's hostconfig.ConfigureHosts with HostDir =
// HostDirFromRoot(registry.CertsDir()), i.e. /etc/docker/certs.d, read on each
// pull (moby commit 8b4cb6f5 "Update host resolver to use containerd host
// config", first released in v28.0.0). Before 28 the same function handed
// BuildKit's resolver only the certificates of certs.d (TLSConfigDir), no
// mirrors; the classic image store never reads hosts.toml and consults
// registry-mirrors for docker.io only (registry/service.go lookupV2Endpoints).
// With a hosts.toml of two or more hosts for docker.io, the containerd store
// ignores registry-mirrors for it (mergeLegacyConfig), so both can coexist.
// registry-mirrors is reloaded on SIGHUP; 127.0.0.0/8 is an insecure (plain
// HTTP) registry by default, so a loopback cache needs no insecure-registries.
import { constants } from 'node:fs'
import { access, mkdir, readdir, readFile, rm, rmdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { confirm } from './cli.ts'
import type { Config, Registry } from './config.ts'
import { addMirror, DAEMON_JSON, daemonJsonMirrors, removeMirror } from './daemon-json.ts'
import * as docker from './docker.ts'
import { unifiedDiff, writeHostsFile } from './etc-hosts.ts'
import { ProgramNotFound, type Runner } from './exec.ts'
import { isLoopback } from './local-addresses.ts'
import { EXIT, log, UserError } from './log.ts'
import { hostsToml } from './render.ts'
import { type Route, registryRoutes } from './routes.ts'

export const DOCKER_CERTS_D = '/etc/docker/certs.d'
/** The copy of daemon.json as it was before devreg changed it, beside it. */
export const BACKUP_SUFFIX = '.devreg-backup'
/** The first Docker Engine whose containerd image store reads hosts.toml mirrors (see above). */
export const HOSTS_TOML_SINCE = 28

const HEADER = '# Written by devreg (dev-registry host-mirrors); `dev-registry host-mirrors --undo` removes it.'
export const isHostMirrorFile = (content: string) => content.startsWith(HEADER)

/** What `docker info --format '{{json .}}'` and `docker version --format '{{json .}}'` say, the fields devreg reads. */
export interface DockerInfo {
  ServerVersion?: string
  OperatingSystem?: string
  DriverStatus?: [string, string][] | null
  SecurityOptions?: string[] | null
  RegistryConfig?: { Mirrors?: string[] | null } | null
}
export interface DockerVersion {
  Server?: { Version?: string; Components?: { Name: string; Version?: string }[] | null } | null
}

export interface Engine {
  version: string | null
  major: number | null
  /** The containerd image store (docker info DriverStatus: driver-type io.containerd.snapshotter.v1). */
  containerdStore: boolean
  rootless: boolean
  desktop: boolean
  podman: boolean
  /** The registry-mirrors the engine uses now. */
  mirrors: string[]
}

export function engineFacts(info: DockerInfo, version: DockerVersion | null = null): Engine {
  const v = version?.Server?.Version ?? info.ServerVersion ?? null
  const major = v ? Number(/^(\d+)\./.exec(v)?.[1] ?? Number.NaN) : Number.NaN
  return {
    version: v,
    major: Number.isNaN(major) ? null : major,
    containerdStore: (info.DriverStatus ?? []).some(([k, val]) => k === 'driver-type' && val === 'io.containerd.snapshotter.v1'),
    rootless: (info.SecurityOptions ?? []).some((o) => o.split(',').includes('name=rootless')),
    desktop: /Docker Desktop/i.test(info.OperatingSystem ?? ''),
    podman: (version?.Server?.Components ?? []).some((c) => /podman/i.test(c.Name)),
    mirrors: info.RegistryConfig?.Mirrors ?? [],
  }
}

/** Asks the engine DOCKER_HOST points at; null when it does not answer (ProgramNotFound without the docker CLI). */
export async function probeEngine(run: Runner): Promise<Engine | null> {
  const [info, version] = await Promise.all([
    run.probe(['docker', 'info', '--format', '{{json .}}']),
    run.probe(['docker', 'version', '--format', '{{json .}}']),
  ])
  if (info.missing) throw new ProgramNotFound('docker')
  if (!info.ok) return null
  return engineFacts(JSON.parse(info.stdout) as DockerInfo, version.ok ? (JSON.parse(version.stdout) as DockerVersion) : null)
}

/** Why devreg leaves each mechanism alone on this engine; null where it applies. */
export function support(e: Engine): { daemonJson: string | null; hostsToml: string | null } {
  const all = (why: string) => ({ daemonJson: why, hostsToml: why })
  if (e.podman)
    return all(
      'Podman reads mirrors from registries.conf (containers-registries.conf(5)), not daemon.json or certs.d: add the caches there',
    )
  if (e.desktop)
    return all(
      "Docker Desktop's engine runs in a VM whose 127.0.0.1 is not this machine's, and its daemon.json is edited in Settings → Docker Engine",
    )
  if (e.rootless)
    return all(
      "a rootless engine runs in RootlessKit's network namespace, where 127.0.0.1 is not this machine's, and reads ~/.config/docker: devreg leaves it alone",
    )
  if (!e.containerdStore)
    return {
      daemonJson: null,
      hostsToml:
        'the engine uses the classic image store, which takes mirrors for docker.io only (registry-mirrors); hosts.toml files in certs.d are read by the containerd image store of Docker Engine 28 and later (features.containerd-snapshotter)',
    }
  if (e.major !== null && e.major < HOSTS_TOML_SINCE)
    return {
      daemonJson: null,
      hostsToml: `Docker Engine ${e.version} reads only certificates from certs.d; its containerd image store reads hosts.toml mirrors from 28.0 on`,
    }
  return { daemonJson: null, hostsToml: null }
}

/** Where the engine reads its config: --daemon-json/--certs-d, else DEVREG_DOCKER_DAEMON_JSON/DEVREG_DOCKER_CERTS_D, else /etc/docker. */
export function enginePaths(opts: { daemonJson?: string; certsD?: string }, env: NodeJS.ProcessEnv = process.env) {
  return {
    daemonJson: opts.daemonJson || env.DEVREG_DOCKER_DAEMON_JSON || DAEMON_JSON,
    certsD: opts.certsD || env.DEVREG_DOCKER_CERTS_D || DOCKER_CERTS_D,
  }
}

/**
 * A cache's URL in registry-mirrors: only on loopback, which the engine trusts
 * over plain HTTP; another address would also need insecure-registries.
 */
export const loopbackUrl = (r: Registry): string | null => (isLoopback(r.bind) ? r.address.url : null)

/** Whether a registry-mirrors entry is this cache (any loopback spelling, trailing slash or not). */
export function isCacheMirror(mirror: string, cache: Registry): boolean {
  try {
    const u = new URL(mirror)
    return Number(u.port) === cache.port && [cache.bind, '127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)
  } catch {
    return false
  }
}

/**
 * The hosts.toml of every cached host as the host engine reads it: host →
 * content. It is the route nodes get (routes.ts) with every devreg registry
 * at its loopback address instead of its name on the cluster network: the
 * cache, any remotes and a non-default upstream, then the upstream as server.
 */
export function hostMirrorFiles(config: Config): Map<string, string> {
  const caches = config.registries.filter((r) => r.role === 'cache')
  // hosts.toml says http:// itself, so a cache on a LAN address works there as well.
  const onHost = new Map(config.registries.map((r) => [r.address.inNetworkUrl, r.address.url]))
  const files = new Map<string, string>()
  for (const route of registryRoutes(config)) {
    if (!caches.some((c) => c.upstreamHost === route.host)) continue
    const local: Route = {
      ...route,
      endpoints: route.endpoints.map((e) => ({ ...e, url: onHost.get(e.url) ?? e.url })),
      description: `${route.host}: the cache on this machine's loopback, then the upstream`,
    }
    // render.ts's header says dev-up rewrites the file; this one is host-mirrors'.
    const body = hostsToml(local).split('\n').slice(1).join('\n')
    files.set(route.host, `${HEADER}\n${body}`)
  }
  return files
}

/** One file devreg would write (content) or remove (null). */
export interface FileChange {
  path: string
  before: string | null
  after: string | null
  what: 'daemon.json' | 'backup' | 'hosts.toml'
}

export interface Plan {
  changes: FileChange[]
  /** Hosts (or docker.io's registry-mirrors) devreg leaves alone, and why. */
  skipped: { hosts: string[]; why: string }[]
  notes: string[]
}

export interface Observed {
  daemonJson: string | null
  backup: string | null
  /** host → the hosts.toml in certs.d (null: none), for every host with a directory there or a cache. */
  hostsFiles: Map<string, string | null>
}

type Support = ReturnType<typeof support>
type EnginePaths = { daemonJson: string; certsD: string }

/** What host-mirrors (or --undo) changes, from the config, the engine and the files: pure. */
export function planHostMirrors(config: Config, engine: Engine, seen: Observed, paths: EnginePaths, undo: boolean): Plan {
  const plan: Plan = { changes: [], skipped: [], notes: [] }
  const hub = config.registries.filter((r) => r.role === 'cache').find((r) => r.upstreamHost === 'docker.io')
  const can = support(engine)
  // 1. daemon.json: registry-mirrors for docker.io.
  if (undo) planDaemonJsonUndo(plan, hub, seen, paths.daemonJson)
  else planDaemonJson(plan, hub, can, seen, paths.daemonJson)
  // 2. hosts.toml for every cached host, where the engine reads them; stale ones of devreg's go.
  planHostsTomls(plan, config, can, seen, paths.certsD, undo)
  return plan
}

/** Puts daemon.json back as it was: from the backup when devreg's edit is all that changed since, else by taking the mirror out. */
function planDaemonJsonUndo(plan: Plan, hub: Registry | undefined, seen: Observed, daemonJson: string): void {
  const url = hub ? loopbackUrl(hub) : null
  const backupPath = `${daemonJson}${BACKUP_SUFFIX}`
  const current = seen.daemonJson
  if (url && current !== null && daemonJsonMirrors(current, daemonJson).includes(url)) {
    let after: string | null | undefined
    if (seen.backup !== null) after = addMirror(seen.backup, url, daemonJson) === current ? seen.backup : removeMirror(current, url)
    else if (current === addMirror('', url)) after = null
    else plan.notes.push(`${daemonJson} lists ${url}, but not as devreg added it (no ${backupPath}): left alone`)
    if (after !== undefined) plan.changes.push({ path: daemonJson, before: current, after, what: 'daemon.json' })
  }
  if (seen.backup !== null) plan.changes.push({ path: backupPath, before: seen.backup, after: null, what: 'backup' })
}

/** Adds docker.io's cache to registry-mirrors, keeping a backup of the file as it was. */
function planDaemonJson(plan: Plan, hub: Registry | undefined, can: Support, seen: Observed, daemonJson: string): void {
  // can.daemonJson is said once, with the other hosts, by planHostsTomls.
  if (!hub || can.daemonJson) return
  const url = loopbackUrl(hub)
  const current = seen.daemonJson
  if (!url)
    plan.skipped.push({
      hosts: ['docker.io'],
      why: `${hub.name} listens on ${hub.bind}, not on loopback: registry-mirrors would also need "insecure-registries": ["${hub.bind}:${hub.port}"]; add both yourself`,
    })
  else if (daemonJsonMirrors(current, daemonJson).some((m) => isCacheMirror(m, hub)))
    plan.notes.push(`${daemonJson} already lists ${url} in registry-mirrors`)
  else {
    if (current !== null) plan.changes.push({ path: `${daemonJson}${BACKUP_SUFFIX}`, before: seen.backup, after: current, what: 'backup' })
    plan.changes.push({
      path: daemonJson,
      before: current,
      after: addMirror(current ?? '', url, daemonJson),
      what: 'daemon.json',
    })
  }
}

/** Writes the hosts.toml devreg wants, leaves files that are not devreg's alone, and removes devreg's that are no longer wanted. */
function planHostsTomls(plan: Plan, config: Config, can: Support, seen: Observed, certsD: string, undo: boolean): void {
  const hostsTomlPath = (host: string) => join(certsD, host, 'hosts.toml')
  const wanted = undo || can.hostsToml ? new Map<string, string>() : hostMirrorFiles(config)
  if (!undo && can.hostsToml) {
    const caches = config.registries.filter((r) => r.role === 'cache')
    const hosts = caches.map((c) => c.upstreamHost as string).filter((h) => h !== 'docker.io' || can.daemonJson)
    if (hosts.length) plan.skipped.push({ hosts, why: can.hostsToml })
  }
  for (const [host, content] of wanted) {
    const before = seen.hostsFiles.get(host) ?? null
    if (before === content) continue
    if (before !== null && !isHostMirrorFile(before)) {
      plan.skipped.push({ hosts: [host], why: `${hostsTomlPath(host)} is not devreg's: left alone (move it away to let devreg write it)` })
      continue
    }
    plan.changes.push({ path: hostsTomlPath(host), before, after: content, what: 'hosts.toml' })
  }
  for (const [host, before] of seen.hostsFiles)
    if (before !== null && isHostMirrorFile(before) && !wanted.has(host))
      plan.changes.push({ path: hostsTomlPath(host), before, after: null, what: 'hosts.toml' })
}

const readOrNull = (path: string) => readFile(path, 'utf8').catch(() => null)

/** Reads daemon.json, its backup, and the hosts.toml of every directory in certs.d and of every cached host. */
export async function observeFiles(config: Config, paths: EnginePaths): Promise<Observed> {
  const dirs = await readdir(paths.certsD).catch(() => [] as string[])
  const hosts = [...new Set([...dirs, ...config.registries.filter((r) => r.role === 'cache').map((r) => r.upstreamHost as string)])]
  const [daemonJson, backup, ...files] = await Promise.all([
    readOrNull(paths.daemonJson),
    readOrNull(`${paths.daemonJson}${BACKUP_SUFFIX}`),
    ...hosts.map((h) => readOrNull(join(paths.certsD, h, 'hosts.toml'))),
  ])
  return { daemonJson, backup, hostsFiles: new Map(hosts.map((h, i) => [h, files[i]])) }
}

const writable = (path: string) =>
  access(path, constants.W_OK).then(
    () => true,
    () => false,
  )

/** Runs a command as root when this process cannot do the thing itself; sudo asks only on a terminal. */
async function asRoot(run: Runner, argv: string[]): Promise<void> {
  await run.change(process.getuid?.() === 0 ? argv : ['sudo', ...(process.stdin.isTTY ? [] : ['--non-interactive']), ...argv])
}

const denied = (err: unknown) => ['EACCES', 'EPERM', 'EROFS'].includes((err as NodeJS.ErrnoException).code ?? '')

/** Writes or removes one file, elevating only that step when it is not ours to do (etc-hosts.ts does the write). */
async function apply(run: Runner, c: FileChange): Promise<void> {
  const dir = dirname(c.path)
  const orRoot = (argv: string[]) => (err: unknown) => {
    if (denied(err)) return asRoot(run, argv)
    if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw err
  }
  if (c.after === null) {
    await rm(c.path, { force: true }).catch(orRoot(['rm', '-f', c.path]))
    // A host directory left empty goes too; one with certificates in it stays.
    if (c.what === 'hosts.toml') await rmdir(dir).catch(orRoot(['rmdir', '--ignore-fail-on-non-empty', dir]))
    return
  }
  await mkdir(dir, { recursive: true }).catch(orRoot(['mkdir', '-p', dir]))
  if (c.before === null && (await writable(dir))) await run.writeFile(c.path, c.after, { mode: c.what === 'backup' ? 0o600 : 0o644 })
  else await writeHostsFile(run, c.path, c.after)
}

const hasMirrorsKey = (text: string | null) => text !== null && text.trim() !== '' && 'registry-mirrors' in JSON.parse(text)

export interface HostMirrorsOptions {
  undo: boolean
  yes: boolean
  json: boolean
  daemonJson?: string
  certsD?: string
  env?: NodeJS.ProcessEnv
}

/** `dev-registry host-mirrors [--undo]`: show, ask, write, and say how the engine takes it. */
export async function hostMirrors(run: Runner, config: Config, opts: HostMirrorsOptions): Promise<number> {
  const paths = enginePaths(opts, opts.env)
  // 1. The engine, and the caches it would pull through.
  const engine = await probeEngine(run)
  if (!engine) throw new UserError('`docker info` failed: is Docker running (and DOCKER_HOST right)?', EXIT.failed)
  if (!opts.undo) await requireCachesRunning(run, config)
  // 2. What would change.
  const plan = planHostMirrors(config, engine, await observeFiles(config, paths), paths, opts.undo)
  const reload = reloadAdvice(plan)
  if (opts.json) printPlanJson(run, opts, engine, paths, plan, reload)
  else printPlan(engine, plan)
  if (!plan.changes.length) {
    if (!opts.json)
      log.ok(opts.undo ? 'nothing to undo: devreg wrote nothing there' : 'nothing to do: the host engine already pulls through the caches')
    return 0
  }
  if (run.dryRun) return 0
  // 3. Ask, then write (each write elevated only when needed).
  if (!opts.yes && !process.stdin.isTTY)
    throw new UserError(
      "refusing to change the Docker engine's config without confirmation: no terminal to ask on; rerun with --yes",
      EXIT.usage,
    )
  if (!(await confirm(opts.undo ? 'undo these changes?' : 'apply these changes?', opts.yes))) {
    log.info('nothing changed')
    return EXIT.failed
  }
  await applyPlan(run, plan)
  if (!opts.json) {
    log.ok(
      `${opts.undo ? 'removed' : 'wrote'} ${plan.changes
        .filter((c) => c.what !== 'backup')
        .map((c) => c.path)
        .join(', ')}`,
    )
    if (reload) log.info(reload)
    if (plan.changes.some((c) => c.what === 'hosts.toml')) log.info('hosts.toml files are read on every pull: nothing to reload for them')
  }
  return 0
}

async function requireCachesRunning(run: Runner, config: Config): Promise<void> {
  const containers = await docker.listContainers(run)
  const down = config.registries.filter(
    (r) => r.role === 'cache' && !containers.some((c) => c.name === r.name && docker.isOwned(c) && c.state === 'running'),
  )
  if (down.length)
    throw new UserError(
      `no cache running for ${down.map((r) => `${r.upstreamHost} (${r.name})`).join(', ')}: run \`just dev-registry\` first, then host-mirrors`,
      EXIT.failed,
    )
}

/** How the engine takes a daemon.json change; null when daemon.json does not change. */
function reloadAdvice(plan: Plan): string | null {
  const daemonChange = plan.changes.find((c) => c.what === 'daemon.json')
  if (!daemonChange) return null
  return hasMirrorsKey(daemonChange.after)
    ? 'the engine reads registry-mirrors again on SIGHUP, no restart needed: `sudo systemctl reload docker` (or `sudo kill -HUP $(pidof dockerd)`)'
    : // moby daemon/reload.go replaces the mirrors only `if conf.IsValueSet("registry-mirrors")`.
      'SIGHUP does not drop registry-mirrors once daemon.json has no such key: restart the engine to stop using the cache (`sudo systemctl restart docker`), or leave it until then (with the cache gone, pulls fall back to Docker Hub)'
}

const changeDiff = (c: FileChange) =>
  c.after === null
    ? `# remove ${c.path}`
    : c.before === null
      ? `# new ${c.path}\n${c.after.trimEnd()}`
      : unifiedDiff(c.path, c.before, c.after)

function printPlanJson(run: Runner, opts: HostMirrorsOptions, engine: Engine, paths: EnginePaths, plan: Plan, reload: string | null): void {
  log.out(
    JSON.stringify(
      {
        engine,
        paths,
        undo: opts.undo,
        changes: plan.changes.map((c) => ({
          path: c.path,
          what: c.what,
          action: c.after === null ? 'remove' : 'write',
          diff: changeDiff(c),
        })),
        skipped: plan.skipped,
        notes: plan.notes,
        dryRun: run.dryRun,
        reload,
      },
      null,
      2,
    ),
  )
}

function printPlan(engine: Engine, plan: Plan): void {
  log.info(
    `engine: Docker ${engine.version ?? '?'}, ${engine.containerdStore ? 'containerd image store' : 'classic image store'}${engine.rootless ? ', rootless' : ''}${engine.desktop ? ', Docker Desktop' : ''}${engine.podman ? ', Podman' : ''}`,
  )
  for (const s of plan.skipped) log.warn(`skipped ${s.hosts.join(', ')}: ${s.why}`)
  for (const n of plan.notes) log.info(n)
  for (const c of plan.changes.filter((x) => x.what !== 'backup')) log.out(changeDiff(c))
  const backup = plan.changes.find((c) => c.what === 'backup' && c.after !== null)
  if (backup) log.info(`the file as it is now is kept in ${backup.path}`)
}

async function applyPlan(run: Runner, plan: Plan): Promise<void> {
  // The backup first, daemon.json after it; removals of the backup last.
  const order = (c: FileChange) => (c.what === 'backup' ? (c.after === null ? 2 : 0) : 1)
  for (const c of [...plan.changes].sort((a, b) => order(a) - order(b))) await apply(run, c)
}

/** One cached host as the host engine pulls it now. */
export interface HostRoute {
  host: string
  cache: string
  status: 'pass' | 'warn' | 'skip'
  detail: string
  fix: string | null
}

/**
 * Whether the host engine pulls each cached host through its cache: docker.io
 * by the engine's live registry-mirrors (or a hosts.toml of devreg's), the
 * others by their hosts.toml where the engine reads them.
 */
export function judgeHostRoutes(config: Config, engine: Engine, hostsFiles: Map<string, string | null>): HostRoute[] {
  const can = support(engine)
  const wanted = hostMirrorFiles(config)
  const fix = '`just host-mirrors` wires it (shows the change first)'
  return config.registries
    .filter((r) => r.role === 'cache')
    .map((r): HostRoute => {
      const host = r.upstreamHost as string
      const base = { host, cache: r.name }
      const file = hostsFiles.get(host) ?? null
      const viaFile = !can.hostsToml && file !== null && file === wanted.get(host)
      if (host === 'docker.io') {
        if (engine.mirrors.some((m) => isCacheMirror(m, r)))
          return { ...base, status: 'pass', detail: `registry-mirrors has ${r.address.url}`, fix: null }
        if (viaFile) return { ...base, status: 'pass', detail: 'hosts.toml in certs.d', fix: null }
        if (can.daemonJson) return { ...base, status: 'skip', detail: can.daemonJson, fix: null }
        return { ...base, status: 'warn', detail: `the host engine pulls docker.io directly, not through ${r.name}`, fix }
      }
      if (can.hostsToml) return { ...base, status: 'skip', detail: can.hostsToml, fix: null }
      if (viaFile) return { ...base, status: 'pass', detail: 'hosts.toml in certs.d', fix: null }
      return {
        ...base,
        status: 'warn',
        detail:
          file === null
            ? `no hosts.toml for ${host}: the host engine pulls it directly`
            : `the hosts.toml for ${host} is not what devreg writes`,
        fix,
      }
    })
}

/** judgeHostRoutes on the engine DOCKER_HOST points at and the files it reads; null when the engine does not answer. */
export async function hostEngineRoutes(run: Runner, config: Config, env: NodeJS.ProcessEnv = process.env): Promise<HostRoute[] | null> {
  const engine = await probeEngine(run)
  if (!engine) return null
  const seen = await observeFiles(config, enginePaths({}, env))
  return judgeHostRoutes(config, engine, seen.hostsFiles)
}
