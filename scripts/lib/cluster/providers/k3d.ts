// k3d: nodes found by k3d's labels, created with `k3d cluster create` and a
// registries.yaml devreg writes, which k3d re-serialises into each node and
// k3s reads only when it starts, so a routing change restarts the cluster.
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { parse as parseYaml } from 'yaml'
import type { Config, Registry } from '../../core/config.ts'
import type { Container } from '../../core/docker.ts'
import { nodeNoProxy } from '../../machine/proxy.ts'
import { editNodeFiles, type NodeSnapshot } from '../nodes.ts'
import { k3sRegistries, k3sRegistriesDocument, serviceAddress } from '../render.ts'
import { hostnameAliases, registryRoutes } from '../routes.ts'
import { ensureCorednsOverride, removeCorednsOverride } from './k3s-coredns.ts'
import type { Cluster, ClusterProvider, Node } from './provider.ts'

/** Where k3s reads its registries config, once, when it starts. */
export const K3S_REGISTRIES = '/etc/rancher/k3s/registries.yaml'
/** Where k3s's containerd reads the hosts.toml files it renders from registries.yaml. */
export const K3S_CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'

/** The k3s flag that drops a registry's own endpoint from behind its mirrors (k3s docs, "Default Endpoint Fallback"). */
export const K3S_NO_DEFAULT_ENDPOINT = '--disable-default-registry-endpoint'

/**
 * The k3s arguments devreg's routing needs. k3s always appends a registry's
 * default endpoint after its mirrors, so a hostname alias would fall back to
 * https://registry.dev.local on k3d; the flag makes it as strict as on kind.
 */
export function k3sArgs(config: Config): string[] {
  return hostnameAliases(config).length ? [K3S_NO_DEFAULT_ENDPOINT] : []
}

const strict = (config: Config) => k3sArgs(config).includes(K3S_NO_DEFAULT_ENDPOINT)

/** The registries.yaml every k3d node gets. */
export const desiredRegistriesYaml = (config: Config) => k3sRegistries(registryRoutes(config), strict(config))

/** desiredRegistriesYaml as data, the way k3sRegistriesData reads a node's file. */
export const desiredRegistriesData = (config: Config) =>
  k3sRegistriesDocumentData(k3sRegistriesDocument(registryRoutes(config), strict(config)))

/** The registries.yaml devreg hands to k3d; kept outside the repo, readable by the user only. */
export const k3dRegistriesFile = (config: Config) => join(tmpdir(), `devreg-k3d-${config.cluster.name}-registries.yaml`)

/**
 * k3s arguments and node environment for `k3d cluster create`, once per node
 * role: k3d requires a node filter as soon as a cluster has more than one node,
 * its load balancer included (pkg/config/transform.go). k3d copies no proxy
 * variables into its nodes (k3d issue #341: --env is the way), so NO_PROXY
 * only keeps node pulls off a proxy the user gives them.
 */
export function k3dNodeFlags(config: Config, env: Record<string, string | undefined>): string[] {
  const noProxy = Object.entries(nodeNoProxy(config, env))
  const filters = ['server:*', ...(config.cluster.workers ? ['agent:*'] : [])]
  return filters.flatMap((f) => [
    ...k3sArgs(config).flatMap((a) => ['--k3s-arg', `${a}@${f}`]),
    ...noProxy.flatMap(([k, v]) => ['--env', `${k}=${v}@${f}`]),
  ])
}

/** A registries.yaml as k3s acts on it; `mirrors` maps each registry domain to its entry. */
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
  return k3sRegistriesDocumentData(doc)
}

/** A parsed registries.yaml as k3sRegistriesData gives it; null when it is not one. */
function k3sRegistriesDocumentData(doc: unknown): K3sRegistriesData | null {
  if (!isMapping(doc)) return null
  const { mirrors = {}, ...rest } = doc
  if (mirrors !== null && !isMapping(mirrors)) return null
  // Hosts stay in file order (preflight reports them so); each entry is canonical.
  return {
    ...((goValue(rest) as Record<string, unknown>) ?? {}),
    mirrors: Object.fromEntries(Object.entries(mirrors ?? {}).map(([h, m]) => [h, goValue(m) ?? {}])),
  }
}

/** Registry domain → its entry as canonical JSON (k3sRegistriesData sorts an entry's keys). */
const mirrorEntries = (doc: K3sRegistriesData | null) =>
  new Map(Object.entries(doc?.mirrors ?? {}).map(([domain, entry]) => [domain, JSON.stringify(entry)]))

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

/** Every fix of a node's registries.yaml: k3s reads it only when it starts. */
const REWRITE = '`just dev-up` rewrites it and restarts the nodes (k3s reads it only at start)'

export const k3d: ClusterProvider = {
  name: 'k3d',
  cli: 'k3d',
  certsD: K3S_CERTS_D,
  // k3s nodes pull their system images from docker.io while booting: through the caches only if these are up on the network.
  networkFirst: true,
  // k3d hands the nodes the registries.yaml the cluster is created with.
  routedAtCreate: true,
  routing: {
    entry: (domain) => `the ${domain} mirror in ${K3S_REGISTRIES}`,
    missing: (domain) => `${K3S_REGISTRIES} has no mirror for ${domain}`,
    absent: `no ${K3S_REGISTRIES}`,
    // The whole file is devreg's.
    ownEntry: () => true,
    fix: {
      write: REWRITE,
      rewrite: REWRITE,
      remove: REWRITE,
      absent: '`just dev-up` writes it and restarts the nodes',
      hostsToml: '`just dev-up` rewrites registries.yaml and restarts the nodes (k3s renders hosts.toml at start)',
    },
  },

  nodeRead: { files: [K3S_REGISTRIES] },
  reroutingRestarts: true,

  owns: (cluster) => cluster.provider === 'k3d',

  find(name: string, containers: Container[]): Cluster | null {
    const nodes = containers
      .filter((c) => c.labels.app === 'k3d' && c.labels['k3d.cluster'] === name && ['server', 'agent'].includes(c.labels['k3d.role']))
      .map((c): Node => ({ name: c.name, role: c.labels['k3d.role'] as Node['role'], image: c.image, running: c.state === 'running' }))
    return nodes.length ? { provider: 'k3d', name, nodes } : null
  },

  /**
   * Reads k3s's arguments into the nodes: k3d keeps no label for them, they
   * are the node container's command (k3d pkg/runtimes/docker/translate.go
   * appends node.Args to Cmd).
   */
  async observe(run, cluster) {
    const nodes = await Promise.all(
      cluster.nodes.map(async (n) => {
        const r = await run.probe(['docker', 'inspect', '--type', 'container', '--format', '{{json .Config.Cmd}}', n.name])
        return r.ok ? { ...n, args: (JSON.parse(r.stdout) as string[] | null) ?? [] } : n
      }),
    )
    return { ...cluster, nodes }
  },

  /**
   * k3s takes its flags only when a node is created, so whether the nodes run
   * with --disable-default-registry-endpoint can change only with --recreate.
   */
  drift(config, cluster) {
    const want = k3sArgs(config).includes(K3S_NO_DEFAULT_ENDPOINT)
    const has = (n: Node) => n.args?.some((a) => a === K3S_NO_DEFAULT_ENDPOINT || a === `${K3S_NO_DEFAULT_ENDPOINT}=true`)
    const off = cluster.nodes.find((n) => n.args !== undefined && has(n) !== want)
    if (!off) return []
    return [
      want
        ? `node ${off.name} runs k3s without ${K3S_NO_DEFAULT_ENDPOINT}, which the hostname alias ${hostnameAliases(config).join(', ')} needs to have no public fallback`
        : `node ${off.name} runs k3s with ${K3S_NO_DEFAULT_ENDPOINT}, which only a hostname alias needs (the config has none)`,
    ]
  },

  // k3s writes containerd's config itself: nothing to know about the image beforehand.
  nodeImageFacts: async () => null,

  async create(run, config) {
    const { name, workers, nodeImage } = config.cluster
    const file = k3dRegistriesFile(config)
    await run.writeFile(file, desiredRegistriesYaml(config))
    await run.change([
      'k3d',
      'cluster',
      'create',
      name,
      '--network',
      config.network,
      '--registry-config',
      file,
      '--agents',
      String(workers),
      ...(nodeImage ? ['--image', nodeImage] : []),
      ...k3dNodeFlags(config, run.env),
    ])
    return { changes: [], routed: [] }
  },

  async delete(run, cluster) {
    await run.change(['k3d', 'cluster', 'delete', cluster.name])
  },

  desiredMirrors: (config) => mirrorEntries(desiredRegistriesData(config)),
  observedMirrors(node) {
    const yaml = node.files.get(K3S_REGISTRIES)
    return yaml === undefined ? null : mirrorEntries(k3sRegistriesData(yaml))
  },

  async reconcile(run, config, cluster, observed) {
    const desired = desiredRegistriesYaml(config)
    await run.writeFile(k3dRegistriesFile(config), desired)
    // k3d writes its own re-serialisation of the file into the nodes: compare what k3s acts on.
    const want = desiredRegistriesData(config)
    const routed = (n: NodeSnapshot | undefined) => {
      const yaml = n?.files.get(K3S_REGISTRIES)
      return yaml !== undefined && isDeepStrictEqual(k3sRegistriesData(yaml), want)
    }
    if (cluster.nodes.every((n) => routed(observed.get(n.name)))) return []
    for (const node of cluster.nodes) await editNodeFiles(run, node.name, [{ write: K3S_REGISTRIES, content: desired }])
    // k3s reads registries.yaml only when it starts.
    await run.change(['k3d', 'cluster', 'stop', cluster.name])
    await run.change(['k3d', 'cluster', 'start', cluster.name])
    return [`rewrote ${K3S_REGISTRIES} in ${cluster.nodes.map((n) => n.name).join(', ')} and restarted them (k3s reads it only at start)`]
  },

  /** As k3d itself writes it, with hostFromClusterNetwork the registry's Service, which dev-up keeps on its current address. */
  localRegistryHosting(config) {
    const local = config.registries.find((r) => r.role === 'local') as Registry
    return {
      host: local.address.onHost,
      hostFromContainerRuntime: local.address.inNetwork,
      hostFromClusterNetwork: serviceAddress(local),
      help: 'https://k3d.io/stable/usage/registries/#using-a-local-registry',
    }
  },

  ensurePodAliases: ensureCorednsOverride,
  removePodAliases: removeCorednsOverride,
}
