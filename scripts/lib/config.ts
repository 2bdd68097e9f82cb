// The one config: config/devreg.yaml (committed defaults) with the git-ignored
// config/devreg.local.yaml merged on top, or one file named by --config or
// DEVREG_CONFIG. Loaded once, validated strictly, returned frozen with every
// derived name (containers, volumes, ports) filled in.
import { existsSync, readFileSync } from 'node:fs'
import { isAbsolute, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { z } from 'zod'
import { type DurationUnit, GO_UNITS, parseDuration } from './duration.ts'
import { EXIT, UserError } from './log.ts'
import { IMAGE_REFERENCE, DNS_LABEL as label, PATH_COMPONENT } from './reference.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const DEFAULT_CONFIG = resolve(ROOT, 'config/devreg.yaml')
export const LOCAL_CONFIG = resolve(ROOT, 'config/devreg.local.yaml')

// Names that reach a shell, a TOML or a YAML file are held to strict patterns.
const HOSTNAME = new RegExp(`^(?=.{1,253}(:|$))${label}(\\.${label})*$`)
const REGISTRY_HOST = new RegExp(`^(?=.{1,253}(:|$))${label}(\\.${label})*(:[0-9]{1,5})?$`)
const CONTAINER_NAME = new RegExp(`^${label}$`)
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const ALIAS = new RegExp(`^${label}(\\.${label})*(:[0-9]{1,5})?(/${PATH_COMPONENT})*$`)
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const IPV4 = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const IPV6 = /^[0-9a-fA-F:]{2,39}$/
const PLATFORM = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/

/** Hosts that an /etc/hosts or `hosts` entry must never shadow. */
export const PUBLIC_REGISTRIES = [
  'docker.io',
  'registry-1.docker.io',
  'index.docker.io',
  'ghcr.io',
  'quay.io',
  'registry.k8s.io',
  'gcr.io',
  'k8s.gcr.io',
]

const pattern = (re: RegExp, what: string) =>
  z.string({ error: `must be a string (${what})` }).regex(re, { error: (iss) => `${JSON.stringify(iss.input)} is not ${what}` })
const duration = (units: readonly DurationUnit[], what: string) =>
  z
    .string({ error: `must be a string (${what})` })
    .refine((text) => parseDuration(text, units) !== null, { error: (iss) => `${JSON.stringify(iss.input)} is not ${what}` })

const hostname = pattern(HOSTNAME, 'a valid hostname (lowercase letters, digits, dots and dashes)')
const registryHost = pattern(REGISTRY_HOST, 'a registry host such as docker.io or my.registry:5000')
const containerName = pattern(
  CONTAINER_NAME,
  'a valid container name (lowercase letters, digits and dashes; no dots, which could leak to public DNS)',
)
const volumeName = pattern(VOLUME_NAME, 'a valid volume name (letters, digits, _ . -)')
const imageRef = pattern(IMAGE_REFERENCE, 'an image reference such as registry:2 or kindest/node:v1.31.0')
const port = z
  .number({ error: 'must be a port number (an integer from 1 to 65535)' })
  .int({ error: 'must be a port number (an integer from 1 to 65535)' })
  .min(1, { error: (iss) => `${iss.input} is not a port: use an integer from 1 to 65535` })
  .max(65535, { error: (iss) => `${iss.input} is not a port: use an integer from 1 to 65535` })
const httpUrl = z.string({ error: 'must be an http(s) URL string' }).superRefine((value, ctx) => {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a URL: use https://host[:port]` })
    return
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not an http(s) URL: use https://host[:port]` })
  else if (url.username || url.password)
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain credentials: name environment variables under credentials instead',
    })
  else if (!REGISTRY_HOST.test(url.host))
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(url.host)} is not a valid registry host` })
  else if (url.pathname !== '/' || url.search || url.hash)
    ctx.addIssue({
      code: 'custom',
      message: 'must be the registry root (no path): a path-prefixed mirror goes in remotes with a path',
    })
})
const address = z.string({ error: 'must be an IP address string' }).refine((v) => IPV4.test(v) || (v.includes(':') && IPV6.test(v)), {
  error: (iss) => `${JSON.stringify(iss.input)} is not an IP address`,
})

const mirrorSchema = z.strictObject({
  host: registryHost,
  upstream: httpUrl.nullable().default(null),
  name: containerName.nullable().default(null),
  port: port.nullable().default(null),
  image: imageRef.nullable().default(null),
  volume: volumeName.nullable().default(null),
  // null: the user's docker login for the upstream, if any (lib/login.ts); none: anonymous.
  credentials: z
    .union(
      [
        z.literal('none'),
        z.strictObject({
          usernameEnv: pattern(ENV_NAME, 'an environment variable name'),
          passwordEnv: pattern(ENV_NAME, 'an environment variable name'),
        }),
      ],
      { error: 'must be none, or {usernameEnv, passwordEnv} naming environment variables' },
    )
    .nullable()
    .default(null),
  remotes: z
    .array(
      z.strictObject({
        url: httpUrl,
        path: z
          .string()
          .regex(/^\/[A-Za-z0-9._~/-]*$/, { error: 'must be a URL path starting with / (letters, digits, . _ ~ - /)' })
          .nullable()
          .default(null),
      }),
    )
    .default([]),
})

const DEFAULT_MIRRORS = [
  { host: 'docker.io', upstream: 'https://registry-1.docker.io' },
  { host: 'ghcr.io', upstream: 'https://ghcr.io' },
  { host: 'quay.io', upstream: 'https://quay.io' },
  { host: 'registry.k8s.io', upstream: 'https://registry.k8s.io' },
]

export const configSchema = z.strictObject({
  cluster: z
    .strictObject({
      provider: z
        .enum(['kind', 'k3d'], { error: (iss) => `${JSON.stringify(iss.input)} is not a provider: use kind or k3d` })
        .default('kind'),
      name: containerName.default('dev'),
      workers: z.number().int().min(0).max(20, { error: 'must be a whole number from 0 to 20' }).default(0),
      nodeImage: imageRef.nullable().default(null),
      network: pattern(NETWORK_NAME, 'a valid network name').nullable().default(null),
      // Handed to kubectl wait --timeout, which reads it with Go's time.ParseDuration: Go's units only.
      waitTimeout: duration(GO_UNITS, 'a duration such as 300s, 5m or 1h').default('300s'),
    })
    .prefault({}),
  registry: z
    .strictObject({
      name: containerName.default('kind-registry'),
      bind: address
        .refine((v) => v !== '0.0.0.0' && v !== '::', {
          error: 'must not be 0.0.0.0 or :: (anyone on your network could push): use 127.0.0.1',
        })
        .default('127.0.0.1'),
      port: port.default(5001),
      image: imageRef.default('registry:3'),
      volume: volumeName.default('kind-registry-data'),
    })
    .prefault({}),
  mirrors: z.array(mirrorSchema).default(() => DEFAULT_MIRRORS.map((m) => mirrorSchema.parse(m))),
  aliases: z.array(pattern(ALIAS, 'a registry host or host/namespace such as docker.io/acme')).default([]),
  hosts: z
    .array(
      z.strictObject({
        name: hostname.refine((v) => !PUBLIC_REGISTRIES.includes(v), {
          error: (iss) => `${iss.input} is a public registry: an entry for it would shadow that registry; remove it`,
        }),
        address,
        buildAddress: z
          .union([address, z.literal('host-gateway')], { error: 'must be an IP address or host-gateway' })
          .default('host-gateway'),
      }),
    )
    .default([]),
  images: z.array(imageRef).default([]),
  warm: z
    .strictObject({
      platforms: z.array(pattern(PLATFORM, 'a platform such as linux/amd64 or linux/arm64/v8')).default([]),
      concurrency: z.number().int().min(1).max(64, { error: 'must be a whole number from 1 to 64' }).default(4),
    })
    .prefault({}),
  preflight: z.strictObject({ image: imageRef.nullable().default(null) }).prefault({}),
})

export type ConfigFile = z.infer<typeof configSchema>
export type MirrorCredentials = ConfigFile['mirrors'][number]['credentials']
export type Provider = ConfigFile['cluster']['provider']

/** One registry container devreg owns, with every derived value resolved. */
export interface Registry {
  role: 'local' | 'cache'
  /** Container name, also its hostname on the cluster network. */
  name: string
  image: string
  volume: string
  bind: string
  port: number
  /** The registry host a cache mirrors (docker.io), as image names write it; null for the local registry. */
  upstreamHost: string | null
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
  /** host:port on this machine, as pushes and image names write it: localhost:5001, 127.0.0.2:5001, [::1]:5001. */
  host: string
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
    host: `${bind === '127.0.0.1' ? 'localhost' : ip}:${port}`,
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
export function defaultUpstream(host: string): string {
  return host === 'docker.io' ? 'https://registry-1.docker.io' : `https://${host}`
}

export function cacheName(host: string): string {
  return `kind-cache-${host.replace(/[.:]/g, '-')}`
}

export function defaultNetwork(provider: Provider, name: string): string {
  return provider === 'kind' ? 'kind' : `k3d-${name}`
}

type Issue = { path: (string | number)[]; message: string }

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
  env?: Record<string, string | undefined>
}

/** Loads, merges and validates the config; any problem is a UserError with exit code 2. */
export function loadConfig({ configPath, env = process.env }: LoadOptions = {}): Config {
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
    upstreamHost: null,
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
    upstreamHost: m.host,
    upstream: m.upstream ?? defaultUpstream(m.host),
    credentials: m.credentials,
    remotes: m.remotes,
    keyPath,
    path: formatKeyPath(keyPath),
    address: registryAddress(name, c.registry.bind, port),
  }
}

/** Two registries with the same upstream host, container name, port or volume: each later one is an issue. */
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
  seen((r) => r.upstreamHost, 'mirror host', 'host', 'list each upstream host once')
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

function describeIssue(issue: z.core.$ZodIssue): Issue[] {
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)) as (string | number)[]
  if (issue.code === 'invalid_union') {
    // The branch that got past the value's type (a mapping missing a key) says more than the union's own message.
    const deeper = issue.errors.find((branch) => branch.some((i) => i.path.length > 0))
    return deeper
      ? deeper.flatMap((i) => describeIssue({ ...i, path: [...issue.path, ...i.path] }))
      : [{ path, message: `${issue.message}, got ${describe(issue.input)}` }]
  }
  return [describeOne(issue, path)]
}

function describeOne(issue: z.core.$ZodIssue, path: (string | number)[]): Issue {
  if (issue.code === 'unrecognized_keys') {
    return {
      path: issue.keys.length === 1 ? [...path, issue.keys[0]] : path,
      message: `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}: remove ${issue.keys.length > 1 ? 'them' : 'it'} or check the spelling against config/devreg.yaml`,
    }
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return { path, message: `is required: add it (see config/devreg.yaml)` }
  if (issue.code === 'invalid_type') return { path, message: `${issue.message}, got ${describe(issue.input)}` }
  return { path, message: issue.message }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `${typeof v} ${JSON.stringify(v)}`
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
