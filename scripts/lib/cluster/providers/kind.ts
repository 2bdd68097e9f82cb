// kind: nodes found by kind's own labels, created with `kind create cluster`
// from the rendered config, and routed by one hosts.toml per registry domain in
// certs.d (containerd re-reads it on every pull, so nothing restarts), which
// containerd 2.3 reads by default and older ones once the config's containerd
// patch names it. The patch makes kind restart containerd in every node, so it
// goes only to images whose containerd would not read certs.d without it.
import type { Config, Registry } from '../../core/config.ts'
import type { Container } from '../../core/docker.ts'
import type { Runner } from '../../core/exec.ts'
import { log, UserError } from '../../core/log.ts'
import { nodeNoProxy } from '../../machine/proxy.ts'
import { editNodeFiles, emptySnapshot, imageCertsD, type NodeFileEdit, type NodeSnapshot, nodeCertsD } from '../nodes.ts'
import { hostsToml, isDevregHostsToml, kindConfig, serviceAddress } from '../render.ts'
import { hostnameAliases, registryRoutes } from '../routes.ts'
import type { Cluster, ClusterProvider, Created, Node } from './provider.ts'

/** Where kind nodes read hosts.toml files: containerd 2.3's default, else the kind config's patch sets it. */
export const CERTS_D = '/etc/containerd/certs.d'

const KIND_CLUSTER = 'io.x-k8s.kind.cluster'
const KIND_ROLE = 'io.x-k8s.kind.role'

/** Every hosts.toml a kind node gets: certs.d directory → content. */
export function kindHostsTomls(config: Config): Map<string, string> {
  return new Map(registryRoutes(config).map((r) => [`${CERTS_D}/${r.domain}`, hostsToml(r)]))
}

/** certs.d directory → hosts.toml becomes registry domain → hosts.toml. */
const byDomain = (files: Map<string, string>) => new Map([...files].map(([dir, content]) => [dir.slice(CERTS_D.length + 1), content]))

/** Whether the node's containerd reads CERTS_D, as its effective config (`containerd config dump`) and version say. */
export const readsCertsD = (node: Pick<NodeSnapshot, 'containerd'>): boolean => (nodeCertsD(node) ?? '').split(':').includes(CERTS_D)

/** containerd ignores keys it does not know, so a patch under the wrong table would pass silently. */
function requireConfigPath(run: Runner, node: Pick<NodeSnapshot, 'node' | 'containerd'>): void {
  if (run.dryRun) return
  if (!readsCertsD(node))
    throw new UserError(
      `containerd in ${node.node} does not read ${CERTS_D} (no config_path in \`containerd config dump\` names it): ` +
        'its config did not take the kind config patch; recreate the cluster with `dev-up --recreate`',
    )
}

/** The edits that make a node's certs.d hold exactly `desired` (devreg's files only), with what each changes. */
function hostsFileEdits(node: string, desired: Map<string, string>, current: Map<string, string>) {
  const edits: NodeFileEdit[] = []
  const changes: string[] = []
  for (const [dir, content] of desired) {
    if (current.get(dir) === content) continue
    edits.push({ write: `${dir}/hosts.toml`, content })
    changes.push(`${node}: ${current.has(dir) ? 'rewrote' : 'wrote'} ${dir}/hosts.toml`)
  }
  for (const [dir, content] of current) {
    if (desired.has(dir) || !isDevregHostsToml(content)) continue
    edits.push({ remove: dir })
    changes.push(`${node}: removed ${dir}/hosts.toml (no longer in the config)`)
  }
  return { edits, changes }
}

/**
 * Writes the hosts.toml files into each node of the cluster as soon as Docker
 * starts it, while kind's later steps run (kind touches only containerd's
 * config.toml, never certs.d); stop() ends the watch once kind is done and says
 * what was written. A node it misses is routed after create, as any other.
 */
function routeNodesAsTheyStart(run: Runner, config: Config): { stop(): Promise<Created> } {
  const desired = kindHostsTomls(config)
  const events = run.stream([
    'docker',
    'events',
    ...['--filter', 'type=container', '--filter', 'event=start', '--filter', `label=${KIND_CLUSTER}=${config.cluster.name}`],
    ...['--format', '{{json .}}'],
  ])
  const writes: Promise<{ node: string; changes: string[] } | null>[] = []
  const route = (line: string) => {
    let attributes: Record<string, string> = {}
    try {
      attributes = (JSON.parse(line) as { Actor?: { Attributes?: Record<string, string> } }).Actor?.Attributes ?? {}
    } catch {
      return
    }
    if (!attributes.name || attributes[KIND_ROLE] === 'external-load-balancer') return
    const { edits, changes } = hostsFileEdits(attributes.name, desired, new Map())
    const node = attributes.name
    writes.push(
      editNodeFiles(run, node, edits).then(
        () => ({ node, changes }),
        () => null,
      ),
    )
  }
  let partial = ''
  events.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines.filter(Boolean)) route(line)
  })
  events.stdout.on('end', () => partial && route(partial))
  return {
    async stop() {
      events.kill()
      await events.done.catch(() => {})
      const done = (await Promise.all(writes)).filter((w) => w !== null)
      return { changes: done.flatMap((w) => w.changes).sort(), routed: done.map((w) => w.node) }
    },
  }
}

const local = (config: Config) => config.registries.find((r) => r.role === 'local') as Registry

export const kind: ClusterProvider = {
  name: 'kind',
  cli: 'kind',
  certsD: CERTS_D,
  // kind creates its network itself, and its nodes pull nothing until dev-up has routed them.
  networkFirst: false,
  // kind's nodes get their hosts.toml files as they start (create's early writes); the mirrors phase checks them after.
  routedAtCreate: false,
  routing: {
    entry: (domain) => `${CERTS_D}/${domain}/hosts.toml`,
    missing: (domain) => `no ${CERTS_D}/${domain}/hosts.toml`,
    absent: `no ${CERTS_D}`,
    // A hosts.toml devreg did not write is left alone.
    ownEntry: isDevregHostsToml,
    fix: {
      write: '`just dev-up` writes it',
      rewrite: '`just dev-up` rewrites it',
      remove: '`just dev-up` removes it',
      absent: '`just dev-up` writes it',
      hostsToml: '`just dev-up` writes it',
    },
  },
  certsDCheck: { reads: readsCertsD, fix: 'the node did not take the kind config patch: `just dev-up --recreate`' },
  nodeRead: { hostsDir: CERTS_D, containerd: true },
  reroutingRestarts: false,

  owns: (cluster) => cluster.provider === 'kind',

  find(name: string, containers: Container[]): Cluster | null {
    const nodes = containers
      .filter((c) => c.labels[KIND_CLUSTER] === name && c.labels[KIND_ROLE] !== 'external-load-balancer')
      .map((c): Node => ({ name: c.name, role: c.labels[KIND_ROLE] as Node['role'], image: c.image, running: c.state === 'running' }))
    return nodes.length ? { provider: 'kind', name, nodes } : null
  },

  observe: async (_run, cluster) => cluster,
  drift: () => [],

  /** Only an image given in the config can be asked: kind's default image is known to kind alone. */
  async nodeImageFacts(run, config) {
    const image = config.cluster.nodeImage
    const certsD = image ? await imageCertsD(run, image) : undefined
    return certsD === undefined ? null : { readsCertsD: (certsD ?? '').split(':').includes(CERTS_D) }
  },

  async create(run, config, image) {
    const env: Record<string, string> = {
      // A network other than "kind" reaches kind only through this variable.
      ...(config.network === 'kind' ? {} : { KIND_EXPERIMENTAL_DOCKER_NETWORK: config.network }),
      // kind hands the proxy to the nodes; the registries must bypass it there.
      ...nodeNoProxy(config, run.env),
    }
    const input = kindConfig(config, { configPathPatch: !image?.readsCertsD })
    const early = run.dryRun ? null : routeNodesAsTheyStart(run, config)
    const created = await run.change(['kind', 'create', 'cluster', '--name', config.cluster.name, '--config', '-'], { input, env }).then(
      () => null,
      (err: Error) => err,
    )
    // The watch ends, and its writes settle, whether kind succeeded or not.
    const written = (await early?.stop()) ?? { changes: [], routed: [] }
    if (created) throw created
    return written
  },

  async delete(run, cluster) {
    await run.change(['kind', 'delete', 'cluster', '--name', cluster.name])
  },

  desiredMirrors: (config) => byDomain(kindHostsTomls(config)),
  observedMirrors: (node) => byDomain(node.hostsFiles),

  async reconcile(run, config, cluster, observed) {
    const desired = kindHostsTomls(config)
    const changes: string[] = []
    if (!cluster.nodes.length && run.dryRun)
      for (const [dir, content] of desired) log.out(`# would write into every node ${dir}/hosts.toml:\n${content.trimEnd()}`)
    const plans = cluster.nodes.map((node) => {
      const seen = observed.get(node.name) ?? emptySnapshot(node.name)
      requireConfigPath(run, seen)
      return { node: node.name, ...hostsFileEdits(node.name, desired, seen.hostsFiles) }
    })
    await Promise.all(plans.map((p) => editNodeFiles(run, p.node, p.edits)))
    for (const p of plans) changes.push(...p.changes)
    return changes.sort()
  },

  /** As kind's local-registry guide writes it. */
  localRegistryHosting: (config) => ({
    host: local(config).address.onHost,
    hostFromClusterNetwork: serviceAddress(local(config)),
    help: 'https://kind.sigs.k8s.io/docs/user/local-registry/',
  }),

  async ensurePodAliases(_run, config) {
    const aliases = hostnameAliases(config)
    if (aliases.length)
      log.info(
        `   ${aliases.join(', ')} resolve${aliases.length === 1 ? 's' : ''} on the nodes only: kind's CoreDNS has no hook devreg could undo exactly, so pods use ${serviceAddress(local(config))}`,
      )
    return []
  },
  removePodAliases: async () => [],
}
