// Pure functions from the validated config to the things devreg writes:
// registry container settings, the kind config, containerd hosts.toml files,
// the k3s registries.yaml and the local-registry-hosting ConfigMap.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { stringify as stringifyToml } from 'smol-toml'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import type { Config, Registry } from './config.ts'
import { defaultUpstream, ROOT } from './config.ts'

export const LABEL = {
  managed: 'devreg.managed',
  role: 'devreg.role',
  hash: 'devreg.config-hash',
  credentials: 'devreg.credentials-digest',
  upstreamHost: 'devreg.upstream-host',
} as const

/** The cache entrypoint: serves read-only while the upstream is unreachable (distribution #4038). */
export const CACHE_ENTRYPOINT = readFileSync(`${ROOT}templates/cache-entrypoint.sh`, 'utf8')

/** Where distribution keeps its data in the registry:2 and registry:3 images. */
export const REGISTRY_DATA = '/var/lib/registry'

export interface ContainerSpec {
  name: string
  /** Arguments after `docker run -d`, secrets only as variable names. */
  args: string[]
  /** Environment variables the docker CLI must carry, name → name of devreg's variable holding the value. */
  secretEnv: Record<string, string>
  /** Hash of every setting devreg chooses; stored as a label to detect drift. */
  hash: string
}

/** The `docker run` settings for one registry; a change to any of them recreates the container. */
export const registryContainer = (r: Registry): ContainerSpec => credentialedContainer(r, undefined)

/**
 * registryContainer with `credentialDigest`, a keyed digest of the credential
 * values (registries.ts credentialDigest), folded into the hash: a rotated
 * token recreates the cache while the values stay out of the spec.
 */
export function credentialedContainer(r: Registry, credentialDigest: string | undefined): ContainerSpec {
  const env: string[] = [
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
  const secretEnv: Record<string, string> = r.credentials
    ? { REGISTRY_PROXY_USERNAME: r.credentials.usernameEnv, REGISTRY_PROXY_PASSWORD: r.credentials.passwordEnv }
    : {}
  const labels = [`${LABEL.managed}=true`, `${LABEL.role}=${r.role}`, ...(r.host ? [`${LABEL.upstreamHost}=${r.host}`] : [])]
  const settings = [
    '--restart=always',
    ...labels.flatMap((l) => ['--label', l]),
    '--publish',
    r.address.publish,
    '--volume',
    `${r.volume}:${REGISTRY_DATA}`,
    // Registries run for months: rotate their logs.
    '--log-driver',
    'json-file',
    '--log-opt',
    'max-size=10m',
    '--log-opt',
    'max-file=3',
    ...env.flatMap((e) => ['--env', e]),
    ...Object.keys(secretEnv).flatMap((name) => ['--env', name]),
    ...(r.role === 'cache' ? ['--init', '--entrypoint', '/bin/sh'] : []),
    r.image,
    // No config path: the entrypoint finds the image's own (registry:2 and registry:3 keep it in different places).
    ...(r.role === 'cache' ? ['-c', CACHE_ENTRYPOINT, 'devreg-cache'] : []),
  ]
  const digest = r.credentials ? credentialDigest : undefined
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

/** Where kind nodes read hosts.toml files (the kind config's patch sets it). */
export const CERTS_D = '/etc/containerd/certs.d'
/** Where k3s reads its registries config, once, when it starts. */
export const K3S_REGISTRIES = '/etc/rancher/k3s/registries.yaml'

export interface Endpoint {
  url: string
  /** The URL's path is the API root itself (a Harbor proxy project), not a host to append /v2 to. */
  overridePath: boolean
}

/** How nodes reach one registry host: endpoints in order, then `server`. */
export interface Route {
  /** The registry host as containerd sees it in an image name: docker.io, localhost:5001, registry.dev.local. */
  host: string
  endpoints: Endpoint[]
  /** Tried last: the real upstream, so a node still pulls when every cache is down. */
  server: string
  description: string
}

/** The routing every node gets, from which hosts.toml (kind) and registries.yaml (k3d) are rendered. */
export function registryRoutes(config: Config): Route[] {
  const local = config.registries.find((r) => r.role === 'local') as Registry
  const covered = (host: string) => config.aliases.some((a) => a === host || a.startsWith(`${host}/`))
  // The local registry is listed as a host as well as the server: containerd
  // 1.6 ignores a hosts.toml that has a server and no host (seen here).
  const localOnly = [{ url: local.address.inNetworkUrl, overridePath: false }]
  const routes: Route[] = [
    {
      host: local.address.host,
      endpoints: localOnly,
      server: local.address.inNetworkUrl,
      description: 'the local registry, as pushed to from the host',
    },
    {
      host: local.address.inNetwork,
      endpoints: localOnly,
      server: local.address.inNetworkUrl,
      description: 'the local registry, by its name on the cluster network',
    },
  ]
  for (const cache of config.registries.filter((r) => r.role === 'cache')) {
    const host = cache.host as string
    const canonical = defaultUpstream(host)
    routes.push({
      host,
      endpoints: [
        ...(covered(host) ? [{ url: local.address.inNetworkUrl, overridePath: false }] : []),
        { url: cache.address.inNetworkUrl, overridePath: false },
        ...cache.remotes.map((m) => ({
          url: `${m.url.replace(/\/+$/, '')}${m.path && m.path !== '/' ? m.path : ''}`,
          overridePath: Boolean(m.path && !/^\/(v2\/?)?$/.test(m.path)),
        })),
        ...(cache.upstream !== canonical ? [{ url: cache.upstream as string, overridePath: false }] : []),
      ],
      server: canonical,
      description: `${host}: ${covered(host) ? 'the local registry (alias), then ' : ''}cache ${cache.name}, then the upstream`,
    })
  }
  // An alias of a host no cache mirrors: the local registry, then the host itself.
  const aliasHosts = [...new Set(config.aliases.map((a) => a.split('/')[0]))].filter((h) => !routes.some((r) => r.host === h))
  for (const host of aliasHosts) {
    const hostOnly = config.aliases.includes(host)
    routes.push({
      host,
      endpoints: localOnly,
      server: hostOnly ? local.address.inNetworkUrl : `https://${host}`,
      description: `${host}: alias of the local registry${hostOnly ? ' (no public fallback)' : ', then the host itself'}`,
    })
  }
  return routes
}

const HOSTS_TOML_HEADER = '# Written by devreg (scripts/dev-up.ts); rewritten on every dev-up.'

/** The containerd hosts.toml of one route; plain-http hosts carry no TLS settings, `server` is always explicit. */
export function hostsToml(route: Route): string {
  const hosts: Record<string, { capabilities: string[]; override_path?: boolean }> = {}
  for (const e of route.endpoints) hosts[e.url] = { capabilities: ['pull', 'resolve'], ...(e.overridePath ? { override_path: true } : {}) }
  const body = stringifyToml({ server: route.server, host: hosts })
  return `${HOSTS_TOML_HEADER}\n# ${route.description}\n${body.trimEnd()}\n`
}

/** Every hosts.toml a kind node gets: certs.d directory → content. */
export function kindHostsFiles(config: Config): Map<string, string> {
  return new Map(registryRoutes(config).map((r) => [`${CERTS_D}/${r.host}`, hostsToml(r)]))
}

/** True when a hosts.toml in a node was written by devreg (and so may be replaced or removed). */
export const isDevregHostsToml = (content: string) => content.startsWith(HOSTS_TOML_HEADER)

/** The kind config: templates/kind-config.yaml plus the nodes of the config. */
export function kindConfig(config: Config): string {
  const doc = parseYaml(readFileSync(`${ROOT}templates/kind-config.yaml`, 'utf8')) as Record<string, unknown>
  const image = config.cluster.nodeImage ? { image: config.cluster.nodeImage } : {}
  const nodes = [
    { role: 'control-plane', ...image },
    ...Array.from({ length: config.cluster.workers }, () => ({ role: 'worker', ...image })),
  ]
  const { kind, apiVersion, ...rest } = doc
  const body = stringifyYaml({ kind, apiVersion, name: config.cluster.name, nodes, ...rest }, { lineWidth: 0 })
  return `# Rendered by devreg from templates/kind-config.yaml and config/devreg.yaml.\n${body}`
}

/**
 * Hostname aliases (registry.dev.local): hosts the local registry alone
 * serves, whose route has no public fallback (see registryRoutes).
 */
export function hostnameAliases(config: Config): string[] {
  const mirrored = new Set(config.registries.map((r) => r.host))
  return config.aliases.filter((a) => !a.includes('/') && !mirrored.has(a))
}

/** The k3s flag that drops a registry's own endpoint from behind its mirrors (k3s docs, "Default Endpoint Fallback"). */
export const K3S_NO_DEFAULT_ENDPOINT = '--disable-default-registry-endpoint'

/**
 * The k3s arguments devreg's routing needs. k3s always appends a host's
 * default endpoint after its mirrors, so a hostname alias would fall back to
 * https://registry.dev.local on k3d; the flag makes it as strict as on kind.
 */
export function k3sArgs(config: Config): string[] {
  return hostnameAliases(config).length ? [K3S_NO_DEFAULT_ENDPOINT] : []
}

/**
 * The k3s registries.yaml: the same routes as endpoint lists; plain http://
 * endpoints need no `configs`. k3s adds a host's default endpoint last by
 * itself, so `server` is left out, except under --disable-default-registry-endpoint:
 * then k3s drops the default endpoint of every host (pkg/agent/containerd/config.go
 * getHostConfigs sets Default to nil), and a public host keeps its upstream only
 * when it is listed, as the last endpoint.
 */
export function k3sRegistries(config: Config): string {
  const strict = k3sArgs(config).includes(K3S_NO_DEFAULT_ENDPOINT)
  const mirrors: Record<string, { endpoint: string[] }> = {}
  for (const r of registryRoutes(config)) {
    const endpoint = r.endpoints.map((e) => e.url)
    if (strict && !endpoint.includes(r.server)) endpoint.push(r.server)
    mirrors[r.host] = { endpoint }
  }
  return `# Written by devreg (scripts/dev-up.ts); k3s reads it only when it starts.\n${stringifyYaml({ mirrors }, { lineWidth: 0 })}`
}

/** A registries.yaml as k3s acts on it; `mirrors` maps each registry host to its entry. */
export interface K3sRegistriesData {
  mirrors: Record<string, unknown>
  [table: string]: unknown
}

/**
 * A k3s registries.yaml as data, whatever wrote it. k3d hands the nodes its own
 * re-serialisation of --registry-config (pkg/config/transform.go reads it into
 * wharfie's Registry, pkg/client/cluster.go writes it back with yaml.v2: every
 * field, empty ones as {}), and Go reads an absent field as its zero value; so
 * comments and formatting go, zero values (empty tables, "", false) are dropped
 * and the keys within each entry are sorted, which makes JSON.stringify of an
 * entry canonical. Compare whole documents with isDeepStrictEqual (key order
 * aside). Null when the text is not a registries.yaml.
 */
export function k3sRegistriesData(text: string): K3sRegistriesData | null {
  let doc: unknown
  try {
    doc = parseYaml(text) ?? {}
  } catch {
    return null
  }
  if (!isMapping(doc)) return null
  const { mirrors = {}, ...rest } = doc
  if (mirrors !== null && !isMapping(mirrors)) return null
  // Hosts stay in file order (preflight reports them so); each entry is canonical.
  return {
    ...((goValue(rest) as Record<string, unknown>) ?? {}),
    mirrors: Object.fromEntries(Object.entries(mirrors ?? {}).map(([h, m]) => [h, goValue(m) ?? {}])),
  }
}

const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/** The value with Go's zero values left out and keys sorted; undefined when nothing is left. */
function goValue(v: unknown): unknown {
  if (Array.isArray(v)) {
    const items = v.map((x) => goValue(x) ?? null)
    return items.length ? items : undefined
  }
  if (isMapping(v)) {
    const entries = Object.keys(v)
      .sort()
      .map((k) => [k, goValue(v[k])] as const)
      .filter(([, x]) => x !== undefined)
    return entries.length ? Object.fromEntries(entries) : undefined
  }
  return v === null || v === '' || v === false || v === 0 ? undefined : v
}

/**
 * The KEP-1755 local-registry-hosting ConfigMap, with the fields kind's guide
 * (kind) or k3d itself (k3d) writes. hostFromClusterNetwork ("as seen from
 * networking inside the container pods") is the registry's Service, which
 * dev-up keeps pointing at the container's current address on both providers.
 */
export function registryHostingConfigMap(config: Config): string {
  const local = config.registries.find((r) => r.role === 'local') as Registry
  const host = local.address.host
  const fromPods = serviceHost(local)
  const hosting =
    config.cluster.provider === 'kind'
      ? { host, hostFromClusterNetwork: fromPods, help: 'https://kind.sigs.k8s.io/docs/user/local-registry/' }
      : {
          host,
          hostFromContainerRuntime: `${local.name}:5000`,
          hostFromClusterNetwork: fromPods,
          help: 'https://k3d.io/stable/usage/registries/#using-a-local-registry',
        }
  return stringifyYaml({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'local-registry-hosting', namespace: 'kube-public' },
    data: { 'localRegistryHosting.v1': stringifyYaml(hosting) },
  })
}

/** The namespace of devreg's own objects in the cluster. */
export const IN_CLUSTER_NAMESPACE = 'devreg'
/** kind (kubeadm's networking.dnsDomain) and k3s (--cluster-domain) both default to it; devreg sets neither. */
const CLUSTER_DOMAIN = 'cluster.local'
const OWNED = { 'app.kubernetes.io/managed-by': 'devreg' }
/** The Service port and the EndpointSlice port it maps to share this name (kube-proxy pairs them by name). */
const PORT_NAME = 'registry'

/** A registry's Service name: its container name, a DNS-1123 label; a Service name must also start with a letter (DNS-1035). */
export const serviceName = (r: Registry) => (/^[a-z]/.test(r.name) ? r.name : `registry-${r.name}`.slice(0, 63).replace(/-+$/, ''))

/**
 * Where pods reach a registry: its Service by the fully qualified name, which
 * resolves alike from every namespace and whatever a pod's search list, and is
 * what the CoreDNS rewrite of a hostname alias must name.
 */
export const serviceHost = (r: Registry) => `${serviceName(r)}.${IN_CLUSTER_NAMESPACE}.svc.${CLUSTER_DOMAIN}:5000`

/**
 * The namespace, then per registry a Service without a selector and the one
 * EndpointSlice behind it, holding the container's address on the cluster
 * network (seed 000's "Service (no selector) plus EndpointSlice" in place of
 * an ExternalName hop). Fields as the Kubernetes API reference (v1 Service,
 * discovery.k8s.io/v1 EndpointSlice) defines them; one multi-document YAML.
 */
export function inClusterManifests(endpoints: { registry: Registry; address: string }[]): string {
  const ns = IN_CLUSTER_NAMESPACE
  const docs: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: OWNED } }]
  for (const { registry: r, address } of endpoints) {
    const name = serviceName(r)
    const labels = { ...OWNED, [LABEL.role]: r.role }
    docs.push(
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: ns, labels },
        spec: { ports: [{ name: PORT_NAME, port: 5000, targetPort: 5000, protocol: 'TCP' }] },
      },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name,
          namespace: ns,
          // service-name ties the slice to its Service; managed-by keeps the
          // EndpointSlice controllers off it (API reference, "EndpointSlice").
          labels: { ...labels, 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'devreg' },
        },
        addressType: 'IPv4',
        endpoints: [{ addresses: [address], conditions: { ready: true } }],
        ports: [{ name: PORT_NAME, port: 5000, protocol: 'TCP' }],
      },
    )
  }
  return docs.map((d) => stringifyYaml(d)).join('---\n')
}

/** k3s's CoreDNS imports every `*.override` key of this ConfigMap into its main server block (k3s manifests/coredns.yaml). */
export const COREDNS_CUSTOM = { namespace: 'kube-system', name: 'coredns-custom', key: 'devreg.override' }

/**
 * The devreg.override snippet that makes each hostname alias resolve, in pods,
 * to the local registry's Service; null without one. An `exact` name rewrite
 * also maps the answer back to the name asked (CoreDNS rewrite README,
 * "Response Rewrites").
 */
export function corednsOverride(config: Config): string | null {
  const names = [...new Set(hostnameAliases(config).map((a) => a.replace(/:\d+$/, '')))]
  if (!names.length) return null
  const local = config.registries.find((r) => r.role === 'local') as Registry
  const target = serviceHost(local).replace(/:\d+$/, '')
  const lines = names.map((n) => `rewrite name exact ${n} ${target}`)
  return `# Written by devreg (dev-up): hostname aliases of the local registry, as its Service.\n${lines.join('\n')}\n`
}
