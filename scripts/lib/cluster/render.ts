// Pure text: the files devreg writes, rendered from the validated config and
// its routes (routes.ts): containerd hosts.toml, the kind config, the k3s
// registries.yaml, the local-registry-hosting ConfigMap and devreg's objects
// in the cluster. No I/O beyond reading templates/.
import { stringify as stringifyToml } from 'smol-toml'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import type { Config, Registry } from '../core/config.ts'
import { LABEL } from '../core/labels.ts'
import { template } from '../core/templates.ts'
import { hostnameAliases, type Route } from './routes.ts'

const HOSTS_TOML_HEADER = '# Written by devreg (scripts/dev-up.ts); rewritten on every dev-up.'

/** The containerd hosts.toml of one route; plain-http hosts carry no TLS settings, `server` is always explicit. */
export function hostsToml(route: Route): string {
  const hosts: Record<string, { capabilities: string[]; override_path?: boolean }> = {}
  for (const e of route.endpoints) hosts[e.url] = { capabilities: ['pull', 'resolve'], ...(e.overridePath ? { override_path: true } : {}) }
  const body = stringifyToml({ server: route.server, host: hosts })
  return `${HOSTS_TOML_HEADER}\n# ${route.description}\n${body.trimEnd()}\n`
}

/** True when a hosts.toml in a node was written by devreg (and so may be replaced or removed). */
export const isDevregHostsToml = (content: string) => content.startsWith(HOSTS_TOML_HEADER)

/**
 * The kind config: templates/kind-config.yaml plus the nodes of the config;
 * without its containerd patch for node images whose containerd reads certs.d
 * already (kind restarts containerd in every node it patches).
 */
export function kindConfig(config: Config, { configPathPatch = true } = {}): string {
  const doc = parseYaml(template('kind-config.yaml')) as Record<string, unknown>
  const image = config.cluster.nodeImage ? { image: config.cluster.nodeImage } : {}
  const nodes = [
    { role: 'control-plane', ...image },
    ...Array.from({ length: config.cluster.workers }, () => ({ role: 'worker', ...image })),
  ]
  const { kind, apiVersion, containerdConfigPatches, ...rest } = doc
  const patches = configPathPatch ? { containerdConfigPatches } : {}
  const body = stringifyYaml({ kind, apiVersion, name: config.cluster.name, nodes, ...patches, ...rest }, { lineWidth: 0 })
  return `# Rendered by devreg from templates/kind-config.yaml and config/devreg.yaml.\n${body}`
}

/**
 * The k3s registries.yaml: the same routes as endpoint lists; plain http://
 * endpoints need no `configs`. k3s adds a registry's default endpoint last by
 * itself, so `server` is left out, except under --disable-default-registry-endpoint:
 * then k3s drops the default endpoint of every registry (pkg/agent/containerd/config.go
 * getHostConfigs sets Default to nil), and a public registry keeps its upstream only
 * when it is listed, as the last endpoint.
 */
export function k3sRegistriesDocument(routes: Route[], strict: boolean): { mirrors: Record<string, { endpoint: string[] }> } {
  const mirrors: Record<string, { endpoint: string[] }> = {}
  for (const r of routes) {
    const endpoint = r.endpoints.map((e) => e.url)
    if (strict && !endpoint.includes(r.server)) endpoint.push(r.server)
    mirrors[r.domain] = { endpoint }
  }
  return { mirrors }
}

/** k3sRegistriesDocument as the file devreg writes. */
export function k3sRegistries(routes: Route[], strict: boolean): string {
  const doc = k3sRegistriesDocument(routes, strict)
  return `# Written by devreg (scripts/dev-up.ts); k3s reads it only when it starts.\n${stringifyYaml(doc, { lineWidth: 0 })}`
}

/** KEP-1755's LocalRegistryHostingV1: where the local registry is, from each place that pulls. */
export interface LocalRegistryHosting {
  host: string
  hostFromContainerRuntime?: string
  hostFromClusterNetwork?: string
  help?: string
}

/** The KEP-1755 local-registry-hosting ConfigMap, with the fields the provider writes (ClusterProvider.localRegistryHosting). */
export function registryHostingConfigMap(hosting: LocalRegistryHosting): string {
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
export const serviceAddress = (r: Registry) => `${serviceName(r)}.${IN_CLUSTER_NAMESPACE}.svc.${CLUSTER_DOMAIN}:5000`

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
  const target = serviceAddress(local).replace(/:\d+$/, '')
  const lines = names.map((n) => `rewrite name exact ${n} ${target}`)
  return `# Written by devreg (dev-up): hostname aliases of the local registry, as its Service.\n${lines.join('\n')}\n`
}
