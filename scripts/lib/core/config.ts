// The one config: config/devreg.yaml (committed defaults) with the git-ignored
// config/devreg.local.yaml merged on top, or one file named by --config or
// DEVREG_CONFIG. Loaded once, validated strictly, returned frozen with every
// derived name (containers, volumes, ports) filled in.
import { existsSync, readFileSync } from 'node:fs'
import { isAbsolute, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { type ConfigFile, configSchema, describeIssue, type Issue, type MirrorCredentials } from './config-schema.ts'
import { EXIT, UserError } from './log.ts'
import { defaultNetwork } from './naming.ts'

// etc-hosts.ts takes the list from here.
export { PUBLIC_REGISTRIES } from './config-schema.ts'

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const DEFAULT_CONFIG = resolve(ROOT, 'config/devreg.yaml')
export const LOCAL_CONFIG = resolve(ROOT, 'config/devreg.local.yaml')

/** One registry container devreg owns, with every derived value resolved. */
export interface Registry {
  role: 'local' | 'cache'
  /** Container name, also its hostname on the cluster network. */
  name: string
  image: string
  volume: string
  bind: string
  port: number
  /** The registry domain a cache mirrors (docker.io), as image names write it (the mirror's `host` key); null for the local registry. */
  upstreamDomain: string | null
  upstream: string | null
  /** The mirror's own login (env variable names), none (anonymous), or null: the user's docker login if there is one. */
  credentials: MirrorCredentials
  remotes: { url: string; path: string | null }[]
  /** Where in the config it comes from: ['registry'] or ['mirrors', 1]. */
  keyPath: readonly (string | number)[]
  /** keyPath as messages write it (formatKeyPath): registry, mirrors[1]. */
  path: string
  /** Every address it has, computed once here and used everywhere else. */
  address: RegistryAddress
}

/** How a registry is reached from each place. */
export interface RegistryAddress {
  /** Where it is published on this machine, as pushes and image names write it: localhost:5001, 127.0.0.2:5001, [::1]:5001. */
  onHost: string
  /** The base URL of devreg's own requests: http://127.0.0.1:5001, http://[::1]:5001. */
  url: string
  /** docker run --publish: 127.0.0.1:5001:5000, [::1]:5001:5000. */
  publish: string
  /** NAME:5000, on the cluster network (nodes, other containers). */
  inNetwork: string
  /** http://NAME:5000. */
  inNetworkUrl: string
}

/** distribution listens on 5000 inside its container. */
export const REGISTRY_PORT = 5000

/**
 * The addresses of a registry published on bind:port. IPv6 binds are
 * bracketed wherever a port follows; 127.0.0.1 is written localhost in image
 * names, as kind's guide and every tool that reads the KEP-1755 ConfigMap do.
 */
export function registryAddress(name: string, bind: string, port: number): RegistryAddress {
  const ip = bind.includes(':') ? `[${bind}]` : bind
  return {
    onHost: `${bind === '127.0.0.1' ? 'localhost' : ip}:${port}`,
    url: `http://${ip}:${port}`,
    publish: `${ip}:${port}:${REGISTRY_PORT}`,
    inNetwork: `${name}:${REGISTRY_PORT}`,
    inNetworkUrl: `http://${name}:${REGISTRY_PORT}`,
  }
}

export interface Config extends ConfigFile {
  /** The cluster's docker network. */
  network: string
  /** The local registry first, then one cache per mirror, in config order. */
  registries: Registry[]
  /** The files read, most important last. */
  sources: string[]
}

/** The upstream a mirror pulls from when none is given. */
export function defaultUpstream(domain: string): string {
  return domain === 'docker.io' ? 'https://registry-1.docker.io' : `https://${domain}`
}

export function cacheName(domain: string): string {
  return `kind-cache-${domain.replace(/[.:]/g, '-')}`
}

/** A key path as messages write it: mirrors[1].port; the empty path is (top level). */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(top level)'
}

function has(obj: unknown, path: readonly PropertyKey[]): boolean {
  let cur = obj
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || !(p in (cur as object))) return false
    cur = (cur as Record<PropertyKey, unknown>)[p]
  }
  return true
}

/** Overlays `top` on `base`: mappings merge key by key, a list or scalar in `top` replaces the whole value. */
export function mergeConfig(base: unknown, top: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(top)) {
    const out: Record<string, unknown> = { ...base }
    for (const [k, v] of Object.entries(top)) out[k] = k in out ? mergeConfig(out[k], v) : v
    return out
  }
  return top === undefined ? base : top
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function readYaml(file: string): unknown {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new UserError(`${display(file)}: cannot read it (${(err as NodeJS.ErrnoException).code}): check the path`, EXIT.usage)
  }
  let value: unknown
  try {
    value = parseYaml(text, { prettyErrors: true, uniqueKeys: true })
  } catch (err) {
    // Whatever the parser refuses (syntax, a resource-exhaustion document, an
    // unresolved alias, a stack overflow) is a config error naming the file.
    throw new UserError(yamlRefusal(display(file), err), EXIT.usage)
  }
  if (value === null || value === undefined) return {}
  if (!isPlainObject(value))
    throw new UserError(`${display(file)}: must be a YAML mapping of keys (cluster, registry, mirrors, ...)`, EXIT.usage)
  return value
}

/** The one-line reason a YAML file was refused, after `file[:line:col]: `. */
function yamlRefusal(file: string, err: unknown): string {
  if (err instanceof YAMLParseError) {
    const pos = err.linePos?.[0]
    const where = pos ? `:${pos.line}:${pos.col}` : ''
    const first = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    if (/Maximum call stack size exceeded/.test(first)) return `${file}${where}: YAML refused: it is nested too deeply to read`
    return `${file}${where}: YAML syntax error: ${first}`
  }
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err)
  if (err instanceof RangeError && /call stack/i.test(message)) return `${file}: YAML refused: it is nested too deeply to read`
  if (/Excessive alias count/i.test(message))
    return `${file}: YAML refused: its aliases expand too far (a resource-exhaustion "billion laughs" document): write the values out instead of nesting aliases (*name)`
  return `${file}: YAML refused: ${message}`
}

function display(file: string): string {
  const rel = relative(process.cwd(), file)
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file
}

export interface LoadOptions {
  /** --config PATH: read this file instead of config/devreg.yaml, with no local overlay. */
  configPath?: string
  /** The environment the script was started with (the runner's `env`): DEVREG_CONFIG names the file when --config does not. */
  env: Readonly<Record<string, string | undefined>>
}

/** Loads, merges and validates the config; any problem is a UserError with exit code 2. */
export function loadConfig({ configPath, env }: LoadOptions): Config {
  const chosen = configPath ?? env.DEVREG_CONFIG
  const files = chosen ? [resolve(chosen)] : [DEFAULT_CONFIG, ...(existsSync(LOCAL_CONFIG) ? [LOCAL_CONFIG] : [])]
  const layers = files.map((file) => ({ file, data: readYaml(file) }))
  const merged = layers.reduce<unknown>((acc, l) => mergeConfig(acc, l.data), {})
  // A key path is blamed on the last file that sets it, or the deepest part of it
  // (a derived port clashes at mirrors[1].port although no file sets that key).
  const sourceOf = (path: readonly PropertyKey[]) => {
    for (let n = path.length; n >= 0; n--) {
      const layer = [...layers].reverse().find((l) => has(l.data, path.slice(0, n)))
      if (layer && n > 0) return display(layer.file)
    }
    return display(files[files.length - 1])
  }
  return resolveConfig(merged, sourceOf, files)
}

/** Validates a merged document and derives every name; `sourceOf` names the file behind a key path. */
export function resolveConfig(
  document: unknown,
  sourceOf: (path: readonly PropertyKey[]) => string = () => 'config',
  sources: string[] = [],
): Config {
  const parsed = configSchema.safeParse(document, { reportInput: true })
  if (!parsed.success) throw configError(parsed.error.issues.flatMap(describeIssue), sourceOf)
  const c = parsed.data
  const registries = [localRegistry(c), ...c.mirrors.map((m, i) => cacheRegistry(c, m, i))]
  const issues = [...registryClashes(registries), ...duplicateHosts(c.hosts)]
  if (issues.length) throw configError(issues, sourceOf)
  const network = c.cluster.network ?? defaultNetwork(c.cluster.provider, c.cluster.name)
  return deepFreeze({ ...c, network, registries, sources })
}

function localRegistry(c: ConfigFile): Registry {
  const keyPath = ['registry']
  return {
    role: 'local',
    name: c.registry.name,
    image: c.registry.image,
    volume: c.registry.volume,
    bind: c.registry.bind,
    port: c.registry.port,
    upstreamDomain: null,
    upstream: null,
    credentials: null,
    remotes: [],
    keyPath,
    path: formatKeyPath(keyPath),
    address: registryAddress(c.registry.name, c.registry.bind, c.registry.port),
  }
}

/** The cache of mirrors[i]: its name, port and volume derived where the config leaves them out. */
function cacheRegistry(c: ConfigFile, m: ConfigFile['mirrors'][number], i: number): Registry {
  const name = m.name ?? cacheName(m.host)
  const port = m.port ?? 5100 + i + 1
  const keyPath = ['mirrors', i]
  return {
    role: 'cache',
    name,
    image: m.image ?? c.registry.image,
    volume: m.volume ?? `${name}-data`,
    bind: c.registry.bind,
    port,
    upstreamDomain: m.host,
    upstream: m.upstream ?? defaultUpstream(m.host),
    credentials: m.credentials,
    remotes: m.remotes,
    keyPath,
    path: formatKeyPath(keyPath),
    address: registryAddress(name, c.registry.bind, port),
  }
}

/** Two registries with the same upstream domain, container name, port or volume: each later one is an issue. */
function registryClashes(registries: Registry[]): Issue[] {
  const issues: Issue[] = []
  const seen = (key: (r: Registry) => string | null, what: string, field: string, fix: string) => {
    const first = new Map<string, Registry>()
    for (const r of registries) {
      const k = key(r)
      if (k === null) continue
      const prev = first.get(k)
      if (prev)
        issues.push({
          path: [...r.keyPath, field],
          message: `${what} ${k} is already used by ${prev.path}: ${fix}`,
        })
      else first.set(k, r)
    }
  }
  seen((r) => r.upstreamDomain, 'mirror host', 'host', 'list each upstream host once')
  seen((r) => r.name, 'container name', 'name', 'give each registry its own name')
  seen((r) => String(r.port), 'port', 'port', 'give each registry its own port')
  seen((r) => r.volume, 'volume', 'volume', 'give each registry its own volume')
  return issues
}

function duplicateHosts(hosts: ConfigFile['hosts']): Issue[] {
  return hosts.flatMap((h, i): Issue[] =>
    hosts.findIndex((o) => o.name === h.name) < i
      ? [{ path: ['hosts', i, 'name'], message: `${h.name} is listed twice: keep one entry` }]
      : [],
  )
}

function configError(issues: Issue[], sourceOf: (path: readonly PropertyKey[]) => string): UserError {
  const lines = issues.map((i) => `${sourceOf(i.path)}: ${formatKeyPath(i.path)}: ${i.message}`)
  return new UserError(lines.length === 1 ? lines[0] : `invalid config:\n  ${lines.join('\n  ')}`, EXIT.usage)
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
