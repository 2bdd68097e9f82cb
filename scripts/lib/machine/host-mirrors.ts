// `dev-registry host-mirrors [--undo]`: wires this machine's Docker engine to
// the caches where it reads them (host-engine.ts says which engine reads what):
// `registry-mirrors` in daemon.json for docker.io, a hosts.toml under certs.d
// for every cached registry domain. It plans every file as data (before → after), shows
// the change, asks, keeps a backup of daemon.json, and elevates only the
// writes it may not do itself; --undo puts back exactly what it wrote.
import { dirname, join } from 'node:path'
import { confirm } from '../core/cli.ts'
import type { Config, Registry } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { EXIT, log, UserError } from '../core/log.ts'
import { withOldKeys } from '../core/old-keys.ts'
import { addMirror, daemonJsonMirrors, removeMirror } from './daemon-json.ts'
import { unifiedDiff, writeHostsFile } from './etc-hosts.ts'
import {
  BACKUP_SUFFIX,
  type Engine,
  type EnginePaths,
  enginePaths,
  hostMirrorFiles,
  isHostMirrorFile,
  loopbackUrl,
  type Observed,
  observeFiles,
  probeEngine,
  pullsThroughCache,
  support,
} from './host-engine.ts'

/** One file devreg would write (content) or remove (null). */
export interface FileChange {
  path: string
  before: string | null
  after: string | null
  what: 'daemon.json' | 'backup' | 'hosts.toml'
}

export interface Plan {
  changes: FileChange[]
  /** Registry domains (docker.io: its registry-mirrors) devreg leaves alone, and why. */
  skipped: { domains: string[]; why: string }[]
  notes: string[]
}

type Support = ReturnType<typeof support>

/** What host-mirrors (or --undo) changes, from the config, the engine and the files: pure. */
export function planHostMirrors(config: Config, engine: Engine, seen: Observed, paths: EnginePaths, undo: boolean): Plan {
  const plan: Plan = { changes: [], skipped: [], notes: [] }
  const hub = config.registries.filter((r) => r.role === 'cache').find((r) => r.upstreamDomain === 'docker.io')
  const can = support(engine)
  // 1. daemon.json: registry-mirrors for docker.io.
  if (undo) planDaemonJsonUndo(plan, hub, seen, paths.daemonJson)
  else planDaemonJson(plan, hub, can, seen, paths.daemonJson)
  // 2. hosts.toml for every cached domain, where the engine reads them; stale ones of devreg's go.
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
  // can.daemonJson is said once, with the other domains, by planHostsTomls.
  if (!hub || can.daemonJson) return
  const url = loopbackUrl(hub)
  const current = seen.daemonJson
  if (!url)
    plan.skipped.push({
      domains: ['docker.io'],
      why: `${hub.name} listens on ${hub.bind}, not on loopback: registry-mirrors would also need "insecure-registries": ["${hub.bind}:${hub.port}"]; add both yourself`,
    })
  else if (pullsThroughCache(daemonJsonMirrors(current, daemonJson), hub))
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
  const hostsTomlPath = (domain: string) => join(certsD, domain, 'hosts.toml')
  const wanted = undo || can.hostsToml ? new Map<string, string>() : hostMirrorFiles(config)
  if (!undo && can.hostsToml) {
    const caches = config.registries.filter((r) => r.role === 'cache')
    const domains = caches.map((c) => c.upstreamDomain as string).filter((d) => d !== 'docker.io' || can.daemonJson)
    if (domains.length) plan.skipped.push({ domains, why: can.hostsToml })
  }
  for (const [domain, content] of wanted) {
    const before = seen.hostsTomls.get(domain) ?? null
    if (before === content) continue
    if (before !== null && !isHostMirrorFile(before)) {
      plan.skipped.push({
        domains: [domain],
        why: `${hostsTomlPath(domain)} is not devreg's: left alone (move it away to let devreg write it)`,
      })
      continue
    }
    plan.changes.push({ path: hostsTomlPath(domain), before, after: content, what: 'hosts.toml' })
  }
  for (const [domain, before] of seen.hostsTomls)
    if (before !== null && isHostMirrorFile(before) && !wanted.has(domain))
      plan.changes.push({ path: hostsTomlPath(domain), before, after: null, what: 'hosts.toml' })
}

/** Runs a command as root when this process cannot do the thing itself; sudo asks only on a terminal. */
async function asRoot(run: Runner, argv: string[]): Promise<void> {
  await run.change(run.uid === 0 ? argv : ['sudo', ...(run.tty.stdin ? [] : ['--non-interactive']), ...argv])
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
    await run.files.rm(c.path).catch(orRoot(['rm', '-f', c.path]))
    // A domain's directory left empty goes too; one with certificates in it stays.
    if (c.what === 'hosts.toml') await run.files.rmdir(dir).catch(orRoot(['rmdir', '--ignore-fail-on-non-empty', dir]))
    return
  }
  await run.files.mkdir(dir).catch(orRoot(['mkdir', '-p', dir]))
  if (c.before === null && (await run.files.writable(dir)))
    await run.writeFile(c.path, c.after, { mode: c.what === 'backup' ? 0o600 : 0o644 })
  else await writeHostsFile(run, c.path, c.after)
}

const hasMirrorsKey = (text: string | null) => text !== null && text.trim() !== '' && 'registry-mirrors' in JSON.parse(text)

export interface HostMirrorsOptions {
  undo: boolean
  yes: boolean
  json: boolean
  daemonJson?: string
  certsD?: string
}

/** `dev-registry host-mirrors [--undo]`: show, ask, write, and say how the engine takes it. */
export async function hostMirrors(run: Runner, config: Config, opts: HostMirrorsOptions): Promise<number> {
  const paths = enginePaths(opts, run.env)
  // 1. The engine, and the caches it would pull through.
  const engine = await probeEngine(run)
  if (!engine) throw new UserError('`docker info` failed: is Docker running (and DOCKER_HOST right)?', EXIT.failed)
  if (!opts.undo) await requireCachesRunning(run, config)
  // 2. What would change.
  const plan = planHostMirrors(config, engine, await observeFiles(run, config, paths), paths, opts.undo)
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
  if (!opts.yes && !run.tty.stdin)
    throw new UserError(
      "refusing to change the Docker engine's config without confirmation: no terminal to ask on; rerun with --yes",
      EXIT.usage,
    )
  if (!(await confirm(run, opts.undo ? 'undo these changes?' : 'apply these changes?', opts.yes))) {
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
      `no cache running for ${down.map((r) => `${r.upstreamDomain} (${r.name})`).join(', ')}: run \`just dev-registry\` first, then host-mirrors`,
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
        skipped: plan.skipped.map((s) => withOldKeys(s, { hosts: 'domains' })),
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
  for (const s of plan.skipped) log.warn(`skipped ${s.domains.join(', ')}: ${s.why}`)
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
