// This machine's own Docker engine as it meets the caches: what kind of engine
// it is, which of devreg's mechanisms it reads (`registry-mirrors` in
// daemon.json for docker.io, any engine; containerd hosts.toml files under
// /etc/docker/certs.d/<domain>/ for every cached registry domain where it
// reads them), and whether it pulls each cached domain through its cache now. host-mirrors.ts
// writes those files.
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
// With a hosts.toml of two or more hosts (mirrors) for docker.io, the containerd store
// ignores registry-mirrors for it (mergeLegacyConfig), so both can coexist.
// registry-mirrors is reloaded on SIGHUP; 127.0.0.0/8 is an insecure (plain
// HTTP) registry by default, so a loopback cache needs no insecure-registries.
import { join } from 'node:path'
import { hostsToml } from '../cluster/render.ts'
import { type Route, registryRoutes } from '../cluster/routes.ts'
import type { Config, Registry } from '../core/config.ts'
import { ProgramNotFound, type Runner } from '../core/exec.ts'
import { DAEMON_JSON } from './daemon-json.ts'
import { isLoopback } from './local-addresses.ts'

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

export type EnginePaths = { daemonJson: string; certsD: string }

/** Where the engine reads its config: --daemon-json/--certs-d, else DEVREG_DOCKER_DAEMON_JSON/DEVREG_DOCKER_CERTS_D, else /etc/docker. */
export function enginePaths(opts: Partial<EnginePaths>, env: Runner['env']): EnginePaths {
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

/**
 * Whether an engine with these registry-mirrors pulls docker.io through
 * `cache`: one of them is the cache's port at an address that reaches it, its
 * bind address in any spelling (http://[::1]:5101 for ::1) or localhost for a
 * cache on 127.0.0.1 or ::1 (dockerd tries each address a name has). A cache
 * published on 127.0.0.1 is not there at [::1], nor one on ::1 at 127.0.0.1:
 * `docker run -p` binds only the address it is given.
 */
export function pullsThroughCache(mirrors: readonly string[], cache: Registry): boolean {
  return mirrors.some((mirror) => {
    let url: URL
    try {
      url = new URL(mirror)
    } catch {
      return false
    }
    const address = url.hostname.replace(/^\[(.*)\]$/, '$1')
    const named = address === 'localhost' && (cache.bind === '127.0.0.1' || cache.bind === '::1')
    return Number(url.port) === cache.port && (address === cache.bind || named)
  })
}

/**
 * The hosts.toml of every cached registry domain as the host engine reads
 * it: domain → content. It is the route nodes get (routes.ts) with every devreg registry
 * at its loopback address instead of its name on the cluster network: the
 * cache, any remotes and a non-default upstream, then the upstream as server.
 */
export function hostMirrorFiles(config: Config): Map<string, string> {
  const caches = config.registries.filter((r) => r.role === 'cache')
  // hosts.toml says http:// itself, so a cache on a LAN address works there as well.
  const fromHost = new Map(config.registries.map((r) => [r.address.inNetworkUrl, r.address.url]))
  const files = new Map<string, string>()
  for (const route of registryRoutes(config)) {
    if (!caches.some((c) => c.upstreamDomain === route.domain)) continue
    const local: Route = {
      ...route,
      endpoints: route.endpoints.map((e) => ({ ...e, url: fromHost.get(e.url) ?? e.url })),
      description: `${route.domain}: the cache on this machine's loopback, then the upstream`,
    }
    // render.ts's header says dev-up rewrites the file; this one is host-mirrors'.
    const body = hostsToml(local).split('\n').slice(1).join('\n')
    files.set(route.domain, `${HEADER}\n${body}`)
  }
  return files
}

/** What host-mirrors reads: daemon.json, its backup, and the hosts.toml of every directory in certs.d and of every cached domain. */
export interface Observed {
  daemonJson: string | null
  backup: string | null
  /** Registry domain → its hosts.toml in certs.d (null: none), for every domain with a directory there or a cache. */
  hostsTomls: Map<string, string | null>
}

export async function observeFiles(run: Runner, config: Config, paths: EnginePaths): Promise<Observed> {
  const readOrNull = (path: string) => run.files.readText(path).catch(() => null)
  const dirs = await run.files.list(paths.certsD).catch(() => [] as string[])
  const domains = [...new Set([...dirs, ...config.registries.filter((r) => r.role === 'cache').map((r) => r.upstreamDomain as string)])]
  const [daemonJson, backup, ...files] = await Promise.all([
    readOrNull(paths.daemonJson),
    readOrNull(`${paths.daemonJson}${BACKUP_SUFFIX}`),
    ...domains.map((d) => readOrNull(join(paths.certsD, d, 'hosts.toml'))),
  ])
  return { daemonJson, backup, hostsTomls: new Map(domains.map((d, i) => [d, files[i]])) }
}

/** One cached registry domain as the host engine pulls it now. */
export interface HostRoute {
  domain: string
  cache: string
  status: 'pass' | 'warn' | 'skip'
  detail: string
  fix: string | null
}

/**
 * Whether the host engine pulls each cached domain through its cache: docker.io
 * by the engine's live registry-mirrors (or a hosts.toml of devreg's), the
 * others by their hosts.toml where the engine reads them.
 */
export function judgeHostRoutes(config: Config, engine: Engine, hostsTomls: Map<string, string | null>): HostRoute[] {
  const can = support(engine)
  const wanted = hostMirrorFiles(config)
  const fix = '`just host-mirrors` wires it (shows the change first)'
  return config.registries
    .filter((r) => r.role === 'cache')
    .map((r): HostRoute => {
      const domain = r.upstreamDomain as string
      const base = { domain, cache: r.name }
      const file = hostsTomls.get(domain) ?? null
      const viaFile = !can.hostsToml && file !== null && file === wanted.get(domain)
      if (domain === 'docker.io') {
        if (pullsThroughCache(engine.mirrors, r))
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
            ? `no hosts.toml for ${domain}: the host engine pulls it directly`
            : `the hosts.toml for ${domain} is not what devreg writes`,
        fix,
      }
    })
}

/** judgeHostRoutes on the engine DOCKER_HOST points at and the files it reads; null when the engine does not answer. */
export async function hostEngineRoutes(run: Runner, config: Config): Promise<HostRoute[] | null> {
  const engine = await probeEngine(run)
  if (!engine) return null
  const seen = await observeFiles(run, config, enginePaths({}, run.env))
  return judgeHostRoutes(config, engine, seen.hostsTomls)
}
