#!/usr/bin/env -S npx tsx
// Start the local push registry and one pull-through cache per configured
// upstream. Idempotent: containers that match the config are left alone.

import { isMain, openScript, runMain, runnerFor } from './lib/core/cli.ts'
import { type Config, loadConfig, type Registry } from './lib/core/config.ts'
import { configSchema } from './lib/core/config-schema.ts'
import * as docker from './lib/core/docker.ts'
import type { Runner } from './lib/core/exec.ts'
import { LABEL } from './lib/core/labels.ts'
import { withLock } from './lib/core/lock.ts'
import { EXIT, log, table, UserError } from './lib/core/log.ts'
import { withOldKeys } from './lib/core/old-keys.ts'
import type { Since } from './lib/registries/cache-report.ts'
import { ANONYMOUS, cacheLogins, describeLogin } from './lib/registries/login.ts'
import { adoptRegistry } from './lib/registries/registry-adoption.ts'
import { ensureRegistries, registrySpec, warnUnreadableLogins } from './lib/registries/registry-containers.ts'
import { REGISTRY_NAMES } from './lib/registries/registry-names.ts'
import { removeRegistries } from './lib/registries/registry-removal.ts'

const USAGE = `Usage: dev-registry [COMMAND] [options]

Commands:
  up              ensure the local registry and every cache (default)
  status          show each registry: state, mode, port, whom it pulls as, whether it matches the config
  stop            stop the registries (containers and data stay)
  rm              remove the registry containers; volumes (pushed and cached images) stay
  rm --purge      also delete their volumes, after listing them and asking
  adopt NAME      copy the images of a registry container devreg did not create
                  (e.g. an old kind-registry) into devreg's volume, then replace it
  warm [IMAGE...] pull images (default: the config's images) through their caches
  report [REGISTRY...]
                  per cache: requests, blobs from cache or upstream, bytes, hit ratio
                  (default: every cache)
  export FILE [REGISTRY...]
                  write what the registries hold into one tar archive (default: every
                  cache; the local registry only when named)
  import FILE [REGISTRY...]
                  check every blob of an archive, then add what the volumes lack
                  (nothing is replaced; default: every registry it holds);
                  --dry-run lists what would be added
  host-mirrors    make this machine's Docker engine pull through the caches: registry-mirrors
                  in daemon.json for docker.io, hosts.toml in certs.d for every cached domain
                  where the engine reads them (containerd image store, Docker 28+); shows the
                  change, keeps a backup, asks; --undo removes exactly what it wrote

REGISTRY is ${REGISTRY_NAMES}.

Options:
  --config PATH   read this config instead of config/devreg.yaml [default: $DEVREG_CONFIG]
  --dry-run       print the docker commands (warm: the plan; host-mirrors: the diff) instead of running them
  --json          status, warm, report and host-mirrors as JSON
  --purge         with rm: delete the volumes too
  --platform LIST with warm: platforms to fetch from multi-platform images, comma-separated
                  [default: the config's warm.platforms, else the host's]
  --concurrency N with warm: registry requests in flight [default: the config's warm.concurrency]
  --file, -f PATH with warm: also the images of these Kubernetes manifests (a YAML file,
                  a directory of them, or - for stdin, e.g. helm template ... | warm -f -)
  --from-cluster  with warm: also the images the running cluster's nodes hold
  --save          with warm: write the images warmed into the config's images list
                  (config/devreg.local.yaml, or the file --config names)
  --gzip          with export: compress the archive [default: when FILE ends in .gz or .tgz]
  --since WHEN    with report: start (the cache's last start), all (the whole kept log),
                  a duration back (90m, 2h, 1d) or a date [default: start]
  --undo          with host-mirrors: remove what host-mirrors wrote
  --daemon-json PATH
                  with host-mirrors: the engine's daemon.json
                  [default: $DEVREG_DOCKER_DAEMON_JSON, else /etc/docker/daemon.json]
  --certs-d DIR   with host-mirrors: the engine's certs.d
                  [default: $DEVREG_DOCKER_CERTS_D, else /etc/docker/certs.d]
  --yes, -y       do not ask before deleting (or, host-mirrors, before changing the engine's config)
  --verbose, -v   echo every command
  --help, -h      show this help

Examples:
  dev-registry                       # bring up kind-registry and the caches
  dev-registry status --json
  dev-registry adopt kind-registry   # take over an existing registry without losing its images
  dev-registry warm                  # the config's images list
  dev-registry warm redis:7-alpine ghcr.io/org/app:1.2 --platform linux/amd64,linux/arm64
  dev-registry warm --from-cluster --save   # what the cluster runs, remembered for next time
  helm template ./chart | dev-registry warm -f -
  dev-registry export caches.tar            # every cache; add kind-registry to carry pushed images
  dev-registry import caches.tar --dry-run
  dev-registry report --since 2h
  dev-registry report docker.io             # only the cache of docker.io
  dev-registry rm --purge --dry-run
  dev-registry host-mirrors --dry-run       # the daemon.json diff and hosts.toml files, nothing written`

const COMMANDS = ['up', 'status', 'stop', 'rm', 'adopt', 'warm', 'report', 'export', 'import', 'host-mirrors'] as const
/** Commands that change no container or volume: they take no lock. */
const READ_ONLY = ['status', 'report', 'host-mirrors']
/** Flags that belong to one command. */
const FLAG_COMMAND = {
  platform: 'warm',
  concurrency: 'warm',
  since: 'report',
  file: 'warm',
  'from-cluster': 'warm',
  save: 'warm',
  gzip: 'export',
  undo: 'host-mirrors',
  'daemon-json': 'host-mirrors',
  'certs-d': 'host-mirrors',
}

interface Options {
  command: (typeof COMMANDS)[number]
  target: string | null
  images: string[]
  configPath?: string
  json: boolean
  purge: boolean
  yes: boolean
  platforms: string[] | null
  concurrency: number | null
  since: Since | null
  /** export and import: the archive; export, import and report: the registries named (registry-names.ts). */
  archive: string | null
  registries: string[]
  manifests: string | null
  fromCluster: boolean
  save: boolean
  gzip: boolean
  /** host-mirrors. */
  undo: boolean
  daemonJson?: string
  certsD?: string
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const args = openScript(
    argv,
    {
      string: ['config', 'platform', 'concurrency', 'since', 'file', 'daemon-json', 'certs-d'],
      boolean: ['dry-run', 'json', 'purge', 'yes', 'verbose', 'help', 'from-cluster', 'save', 'gzip', 'undo'],
      alias: { y: 'yes', v: 'verbose', h: 'help', f: 'file' },
    },
    USAGE,
    Number.POSITIVE_INFINITY,
  )
  if (!args) return 0
  const [command = 'up', ...rest] = args._.map(String)
  if (!(COMMANDS as readonly string[]).includes(command)) throw new UserError(`unknown command ${command}\n\n${USAGE}`, EXIT.usage)
  const carry = command === 'export' || command === 'import'
  if (carry && !rest[0]) throw new UserError(`${command} needs the archive's path, e.g. dev-registry ${command} caches.tar`, EXIT.usage)
  const [target = null, ...extra] = command === 'warm' || command === 'report' || carry ? [] : rest
  if (command === 'adopt' && !target)
    throw new UserError('adopt needs the name of the container to adopt, e.g. dev-registry adopt kind-registry', EXIT.usage)
  if (extra.length || (target && command !== 'adopt'))
    throw new UserError(`unexpected argument ${extra[0] ?? target}\n\n${USAGE}`, EXIT.usage)
  if (args.purge && command !== 'rm') throw new UserError('--purge goes with rm', EXIT.usage)
  for (const [flag, only] of Object.entries(FLAG_COMMAND))
    if (args[flag] !== undefined && args[flag] !== false && command !== only) throw new UserError(`--${flag} goes with ${only}`, EXIT.usage)
  const opts: Options = {
    command: command as Options['command'],
    target,
    images: command === 'warm' ? rest : [],
    archive: carry ? rest[0] : null,
    registries: carry ? rest.slice(1) : command === 'report' ? rest : [],
    manifests: args.file ?? null,
    fromCluster: args['from-cluster'],
    save: args.save,
    gzip: args.gzip,
    undo: args.undo,
    daemonJson: args['daemon-json'],
    certsD: args['certs-d'],
    configPath: args.config,
    json: args.json,
    purge: args.purge,
    yes: args.yes,
    platforms: args.platform === undefined ? null : parsePlatforms(String(args.platform)),
    concurrency: args.concurrency === undefined ? null : parseConcurrency(String(args.concurrency)),
    // warm and report load their modules only when used: a no-op `up` should start fast.
    since: command === 'report' ? (await import('./lib/registries/cache-report.ts')).parseSince(args.since) : null,
  }

  // 1. The config: a bad one stops here, before any docker command.
  const run = runnerFor(args)
  const config = loadConfig({ configPath: opts.configPath, env: run.env })
  // 2. One run at a time on these registries: a second waits and says for whom.
  if (READ_ONLY.includes(opts.command)) return act(run, config, opts)
  return withLock(run, config, `dev-registry ${opts.command}`, () => act(run, config, opts), { scope: 'registries' })
}

async function act(run: Runner, config: Config, opts: Options): Promise<number> {
  switch (opts.command) {
    case 'up': {
      const { changed } = await ensureRegistries(run, config)
      if (!changed && !run.dryRun) log.info('nothing to do: every registry matches the config')
      return 0
    }
    case 'status':
      return status(run, config, opts.json)
    case 'stop':
      return stop(run, config)
    case 'rm':
      return (await removeRegistries(run, config, { purge: opts.purge, yes: opts.yes, roles: ['local', 'cache'] })) ? 0 : 1
    case 'adopt':
      return adoptRegistry(run, config, opts.target as string)
    case 'warm':
      return warm(run, config, opts)
    case 'report':
      return report(run, config, opts)
    case 'export':
      return (await import('./lib/carry/carry-export.ts')).exportCommand(run, config, opts.archive as string, opts.registries, opts)
    case 'import':
      return (await import('./lib/carry/carry-import.ts')).importCommand(run, config, opts.archive as string, opts.registries, opts)
    case 'host-mirrors':
      return (await import('./lib/machine/host-mirrors.ts')).hostMirrors(run, config, opts)
  }
}

/** --platform follows the rule of the config's warm.platforms. */
function parsePlatforms(list: string): string[] {
  const parsed = configSchema.shape.warm.unwrap().shape.platforms.safeParse(list.split(','))
  if (!parsed.success) throw new UserError(`--platform: ${parsed.error.issues[0].message}`, EXIT.usage)
  return parsed.data
}

function parseConcurrency(text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new UserError(`--concurrency: must be a whole number from 1 to 64, got ${text}`, EXIT.usage)
  return n
}

async function owned(run: Runner, config: Config) {
  const containers = await docker.listContainers(run)
  return config.registries.map((r) => ({ registry: r, container: containers.find((c) => c.name === r.name) ?? null }))
}

export async function status(run: Runner, config: Config, json: boolean): Promise<number> {
  const containers = await docker.listContainers(run)
  const configured = new Set(config.registries.map((r) => r.name))
  const logins = await cacheLogins(run, config.registries)
  const current = (r: Registry) => containers.find((x) => x.name === r.name) ?? null
  const desired = await Promise.all(
    config.registries.map(async (registry) => {
      const login = logins.get(registry.name) ?? ANONYMOUS
      return { registry, login, spec: await registrySpec(run, registry, login, current(registry)) }
    }),
  )
  warnUnreadableLogins(desired)
  const rows = await Promise.all(
    desired.map(async ({ registry: r, login, spec }) => {
      const c = current(r)
      const ownedByUs = c ? docker.isOwned(c) : false
      const running = c?.state === 'running'
      const mode =
        r.role === 'local'
          ? 'push'
          : running && ownedByUs
            ? ((await docker.readFileIn(run, r.name, '/tmp/devreg-mode'))?.trim() ?? 'unknown')
            : null
      return {
        name: r.name,
        role: r.role,
        upstreamDomain: r.upstreamDomain,
        upstream: r.upstream,
        address: r.address.onHost,
        port: r.port,
        state: !c ? 'missing' : ownedByUs ? c.state : 'not devreg’s',
        mode,
        volume: r.volume,
        login: r.role === 'cache' ? describeLogin(login, spec.secretEnv.length > 0) : null,
        matchesConfig: ownedByUs && c?.labels[LABEL.hash] === spec.hash,
      }
    }),
  )
  const strays = containers.filter((c) => docker.isOwned(c) && c.labels[LABEL.role] && !configured.has(c.name))
  // Whether this machine's Docker engine pulls through the caches (host-mirrors).
  const hostEngine = await (await import('./lib/machine/host-engine.ts')).hostEngineRoutes(run, config)
  if (json) {
    const notInConfig = strays.map((c) => ({ name: c.name, state: c.state }))
    const registries = rows.map((r) => withOldKeys(r, { host: 'upstreamDomain' }))
    const engineRoutes = hostEngine?.map((h) => withOldKeys(h, { host: 'domain' })) ?? null
    log.out(JSON.stringify({ registries, notInConfig, hostEngine: engineRoutes }, null, 2))
    return 0
  }
  const modeText = (m: string | null) => (m === 'offline' ? 'offline (read-only, upstream unreachable)' : (m ?? '-'))
  log.out(
    table(
      ['NAME', 'ROLE', 'ADDRESS', 'STATE', 'MODE', 'MATCHES CONFIG', 'UPSTREAM', 'PULLS AS'],
      rows.map((r) => [
        r.name,
        r.role,
        r.address,
        r.state,
        modeText(r.mode),
        r.matchesConfig ? 'yes' : 'no',
        r.upstream ?? '-',
        r.login ?? '-',
      ]),
    ),
  )
  for (const s of strays)
    log.warn(`${s.name} is devreg's but no longer in the config: \`docker rm -f ${s.name}\` removes it (its volume stays)`)
  const stale = rows.filter((r) => r.state !== 'missing' && r.state !== 'not devreg’s' && !r.matchesConfig)
  if (stale.length) log.info(`run \`dev-registry up\` to recreate ${stale.map((r) => r.name).join(', ')} with the current config`)
  for (const h of hostEngine ?? [])
    log.info(`host engine, ${h.domain}: ${h.status === 'pass' ? `through ${h.cache} (${h.detail})` : h.detail}${h.fix ? `; ${h.fix}` : ''}`)
  return 0
}

async function stop(run: Runner, config: Config): Promise<number> {
  for (const { registry, container } of await owned(run, config)) {
    if (container && docker.isOwned(container) && container.state === 'running') {
      await docker.stopContainer(run, registry.name)
      log.ok(`${registry.name} stopped`)
    }
  }
  return 0
}

async function warm(run: Runner, config: Config, opts: Options): Promise<number> {
  const { hostPlatform, warmImages } = await import('./lib/registries/warm.ts')
  const { plainProgress, summaryLines, ttyProgress } = await import('./lib/registries/warm-output.ts')
  const { warmTargets } = await import('./lib/registries/warm-list.ts')
  const targets = await warmTargets(run, config, {
    images: opts.images,
    manifests: opts.manifests,
    fromCluster: opts.fromCluster,
    save: opts.save,
    configPath: opts.configPath,
  })
  const platforms = opts.platforms ?? (config.warm.platforms.length ? [...config.warm.platforms] : [hostPlatform()])
  if (run.dryRun) {
    for (const t of targets) log.out(`would warm ${t.name} through ${t.cache.name} (${t.cache.address.url}) for ${platforms.join(', ')}`)
    return 0
  }
  const progress = run.tty.stderr && !opts.json ? ttyProgress() : plainProgress()
  const summary = await warmImages(run, targets, { platforms, concurrency: opts.concurrency ?? config.warm.concurrency, progress })
  if (opts.json) log.out(JSON.stringify(summary, null, 2))
  const [tally, ...details] = summaryLines(summary)
  ;(summary.failed ? log.error : log.ok)(tally)
  for (const line of details) log.info(line)
  return summary.failed ? 1 : 0
}

export async function report(run: Runner, config: Config, opts: Pick<Options, 'since' | 'registries' | 'json'>): Promise<number> {
  const { renderReport, reportCaches } = await import('./lib/registries/cache-report.ts')
  const reports = await reportCaches(run, config, opts.since as Since, opts.registries)
  const caches = reports.map((r) => withOldKeys(r, { host: 'upstreamDomain' }))
  log.out(opts.json ? JSON.stringify({ caches }, null, 2) : renderReport(reports))
  return 0
}

if (isMain(import.meta.url)) await runMain(main)
