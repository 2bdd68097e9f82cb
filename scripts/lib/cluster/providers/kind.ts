// kind: nodes found by kind's own labels, created with `kind create cluster`
// from the rendered config, and routed by one hosts.toml per registry domain in
// the certs.d directory the config's containerd patch names (containerd
// re-reads it on every pull, so nothing restarts).
import type { Config, Registry } from '../../core/config.ts'
import type { Container } from '../../core/docker.ts'
import type { Runner } from '../../core/exec.ts'
import { log, UserError } from '../../core/log.ts'
import { template } from '../../core/templates.ts'
import { nodeNoProxy } from '../../machine/proxy.ts'
import { editNodeFiles, type NodeFileEdit, nodeCertsD } from '../nodes.ts'
import { hostsToml, isDevregHostsToml, kindConfig, serviceAddress } from '../render.ts'
import { hostnameAliases, registryRoutes } from '../routes.ts'
import type { Cluster, ClusterProvider, Node } from './provider.ts'

/** Where kind nodes read hosts.toml files (the kind config's patch sets it). */
export const CERTS_D = '/etc/containerd/certs.d'

const KIND_CLUSTER = 'io.x-k8s.kind.cluster'
const KIND_ROLE = 'io.x-k8s.kind.role'

const READ_HOSTS_TOMLS = template('read-hosts-files.sh')

/** Every hosts.toml a kind node gets: certs.d directory → content. */
export function kindHostsTomls(config: Config): Map<string, string> {
  return new Map(registryRoutes(config).map((r) => [`${CERTS_D}/${r.domain}`, hostsToml(r)]))
}

/** certs.d directory → hosts.toml becomes registry domain → hosts.toml. */
const byDomain = (files: Map<string, string>) => new Map([...files].map(([dir, content]) => [dir.slice(CERTS_D.length + 1), content]))

/** The hosts.toml files in a node's certs.d (directory → content), read in one exec. */
export async function readHostsTomls(run: Runner, node: string): Promise<Map<string, string>> {
  const r = await run.probe(['docker', 'exec', node, 'sh', '-c', READ_HOSTS_TOMLS, 'read-hosts-files', CERTS_D])
  const files = new Map<string, string>()
  for (const chunk of r.stdout.split('\x1e').slice(1)) {
    const nl = chunk.indexOf('\n')
    files.set(chunk.slice(0, nl), chunk.slice(nl + 1))
  }
  return files
}

/** Whether the node's containerd reads CERTS_D, as its effective config (`containerd config dump`) and version say. */
export async function readsCertsD(run: Runner, node: string): Promise<boolean> {
  return ((await nodeCertsD(run, node)) ?? '').split(':').includes(CERTS_D)
}

/** containerd ignores keys it does not know, so a patch under the wrong table would pass silently. */
async function requireConfigPath(run: Runner, node: string): Promise<void> {
  if (run.dryRun) return
  if (!(await readsCertsD(run, node)))
    throw new UserError(
      `containerd in ${node} does not read ${CERTS_D} (no config_path in \`containerd config dump\` names it): ` +
        'its config did not take the kind config patch; recreate the cluster with `dev-up --recreate`',
    )
}

const local = (config: Config) => config.registries.find((r) => r.role === 'local') as Registry

export const kind: ClusterProvider = {
  name: 'kind',
  cli: 'kind',
  certsD: CERTS_D,
  // kind creates its network itself, and its nodes pull nothing until dev-up has routed them.
  networkFirst: false,
  // kind's nodes get their hosts.toml files after create.
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

  owns: (cluster) => cluster.provider === 'kind',

  find(name: string, containers: Container[]): Cluster | null {
    const nodes = containers
      .filter((c) => c.labels[KIND_CLUSTER] === name && c.labels[KIND_ROLE] !== 'external-load-balancer')
      .map((c): Node => ({ name: c.name, role: c.labels[KIND_ROLE] as Node['role'], image: c.image, running: c.state === 'running' }))
    return nodes.length ? { provider: 'kind', name, nodes } : null
  },

  observe: async (_run, cluster) => cluster,
  drift: () => [],

  async create(run, config) {
    const env: Record<string, string> = {
      // A network other than "kind" reaches kind only through this variable.
      ...(config.network === 'kind' ? {} : { KIND_EXPERIMENTAL_DOCKER_NETWORK: config.network }),
      // kind hands the proxy to the nodes; the registries must bypass it there.
      ...nodeNoProxy(config, run.env),
    }
    await run.change(['kind', 'create', 'cluster', '--name', config.cluster.name, '--config', '-'], { input: kindConfig(config), env })
  },

  async delete(run, cluster) {
    await run.change(['kind', 'delete', 'cluster', '--name', cluster.name])
  },

  desiredMirrors: (config) => byDomain(kindHostsTomls(config)),
  observedMirrors: async (run, node) => byDomain(await readHostsTomls(run, node)),

  async reconcile(run, config, cluster) {
    const desired = kindHostsTomls(config)
    const changes: string[] = []
    if (!cluster.nodes.length && run.dryRun)
      for (const [dir, content] of desired) log.out(`# would write into every node ${dir}/hosts.toml:\n${content.trimEnd()}`)
    await Promise.all(
      cluster.nodes.map(async (node) => {
        const [current] = await Promise.all([readHostsTomls(run, node.name), requireConfigPath(run, node.name)])
        const edits: NodeFileEdit[] = []
        for (const [dir, content] of desired) {
          if (current.get(dir) === content) continue
          edits.push({ write: `${dir}/hosts.toml`, content })
          changes.push(`${node.name}: ${current.has(dir) ? 'rewrote' : 'wrote'} ${dir}/hosts.toml`)
        }
        for (const [dir, content] of current) {
          if (desired.has(dir) || !isDevregHostsToml(content)) continue
          edits.push({ remove: dir })
          changes.push(`${node.name}: removed ${dir}/hosts.toml (no longer in the config)`)
        }
        await editNodeFiles(run, node.name, edits)
      }),
    )
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
