// The kind or k3d cluster: observe it from Docker's labels (as kind and k3d
// themselves do), create and delete it with its own CLI, and keep its nodes'
// registry routing equal to what render.ts derives from the config.
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { parse as parseToml } from 'smol-toml'
import { type Config, type Provider, ROOT } from './config.ts'
import type { Container } from './docker.ts'
import { change, probe, settings, writeFile } from './exec.ts'
import { log, UserError } from './log.ts'
import { nodeNoProxy } from './proxy.ts'
import {
  CERTS_D,
  hostnameAliases,
  isDevregHostsToml,
  K3S_NO_DEFAULT_ENDPOINT,
  K3S_REGISTRIES,
  k3sArgs,
  k3sRegistries,
  k3sRegistriesData,
  kindConfig,
  kindHostsFiles,
  registryHostingConfigMap,
} from './render.ts'

export interface Node {
  name: string
  role: 'control-plane' | 'worker' | 'server' | 'agent'
  image: string
  running: boolean
  /** k3d: the node container's command, where k3d keeps k3s's arguments (see withK3sArgs); unset when not read. */
  args?: string[]
}

export interface Cluster {
  provider: Provider
  name: string
  nodes: Node[]
}

const KIND_CLUSTER = 'io.x-k8s.kind.cluster'
const KIND_ROLE = 'io.x-k8s.kind.role'

export const INSTALL: Record<string, string> = {
  kind: 'install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation',
  k3d: 'install k3d: https://k3d.io/stable/#installation',
  kubectl: 'install kubectl: https://kubernetes.io/docs/tasks/tools/',
}

/** Fails with how to install each missing tool. */
export async function requireTools(tools: string[]): Promise<void> {
  const missing = []
  for (const t of tools) if (!(await probe(['sh', '-c', 'command -v "$1"', 'sh', t])).ok) missing.push(t)
  if (missing.length) throw new UserError(missing.map((t) => `${t} not found on PATH: ${INSTALL[t]}`).join('\n'))
}

/** Every cluster with this name, of either provider (the load balancers and registries are not nodes). */
export function findClusters(name: string, containers: Container[]): Cluster[] {
  const node = (c: Container, role: string): Node => ({
    name: c.name,
    role: role as Node['role'],
    image: c.image,
    running: c.state === 'running',
  })
  const kind = containers.filter((c) => c.labels[KIND_CLUSTER] === name && c.labels[KIND_ROLE] !== 'external-load-balancer')
  const k3d = containers.filter(
    (c) => c.labels.app === 'k3d' && c.labels['k3d.cluster'] === name && ['server', 'agent'].includes(c.labels['k3d.role']),
  )
  return [
    ...(kind.length ? [{ provider: 'kind' as const, name, nodes: kind.map((c) => node(c, c.labels[KIND_ROLE])) }] : []),
    ...(k3d.length ? [{ provider: 'k3d' as const, name, nodes: k3d.map((c) => node(c, c.labels['k3d.role'])) }] : []),
  ]
}

/** How an existing cluster differs from the config (node count, node image, provider); empty when it matches. */
export function clusterDrift(config: Config, cluster: Cluster): string[] {
  const want = config.cluster
  if (cluster.provider !== want.provider) return [`it is a ${cluster.provider} cluster, the config says ${want.provider}`]
  const drift: string[] = []
  const workers = cluster.nodes.filter((n) => n.role === 'worker' || n.role === 'agent').length
  const controls = cluster.nodes.length - workers
  if (controls !== 1) drift.push(`it has ${controls} control-plane nodes, the config 1`)
  if (workers !== want.workers) drift.push(`it has ${workers} worker nodes, the config ${want.workers}`)
  if (want.nodeImage) {
    const other = cluster.nodes.find((n) => n.image.split('@')[0] !== want.nodeImage?.split('@')[0])
    if (other) drift.push(`node ${other.name} runs ${other.image}, the config says ${want.nodeImage}`)
  }
  if (cluster.provider === 'k3d') drift.push(...k3sArgsDrift(config, cluster))
  return drift
}

/**
 * k3s takes its flags only when a node is created, so whether the nodes run
 * with --disable-default-registry-endpoint can change only with --recreate.
 */
function k3sArgsDrift(config: Config, cluster: Cluster): string[] {
  const want = k3sArgs(config).includes(K3S_NO_DEFAULT_ENDPOINT)
  const has = (n: Node) => n.args?.some((a) => a === K3S_NO_DEFAULT_ENDPOINT || a === `${K3S_NO_DEFAULT_ENDPOINT}=true`)
  const off = cluster.nodes.find((n) => n.args !== undefined && has(n) !== want)
  if (!off) return []
  return [
    want
      ? `node ${off.name} runs k3s without ${K3S_NO_DEFAULT_ENDPOINT}, which the hostname alias ${hostnameAliases(config).join(', ')} needs to have no public fallback`
      : `node ${off.name} runs k3s with ${K3S_NO_DEFAULT_ENDPOINT}, which only a hostname alias needs (the config has none)`,
  ]
}

/**
 * Reads k3s's arguments into a k3d cluster's nodes: k3d keeps no label for
 * them, they are the node container's command (k3d pkg/runtimes/docker/translate.go
 * appends node.Args to Cmd). Other clusters come back as they are.
 */
export async function withK3sArgs(cluster: Cluster): Promise<Cluster> {
  if (cluster.provider !== 'k3d') return cluster
  const nodes = await Promise.all(
    cluster.nodes.map(async (n) => {
      const r = await probe(['docker', 'inspect', '--type', 'container', '--format', '{{json .Config.Cmd}}', n.name])
      return r.ok ? { ...n, args: (JSON.parse(r.stdout) as string[] | null) ?? [] } : n
    }),
  )
  return { ...cluster, nodes }
}

/**
 * The image digests a node's containerd holds (k8s.io namespace), as ctr
 * lists them; null when it cannot be asked. k3s's ctr finds its own socket.
 */
export async function nodeImageDigests(node: string): Promise<Set<string> | null> {
  const r = await probe(['docker', 'exec', node, 'ctr', '--namespace', 'k8s.io', 'images', 'list'])
  if (!r.ok) return null
  return new Set(r.stdout.match(/sha256:[0-9a-f]{64}/g) ?? [])
}

export const kubeContext = (config: Config) => `${config.cluster.provider}-${config.cluster.name}`

/** The registries.yaml devreg hands to k3d; kept outside the repo, readable by the user only. */
export const k3dRegistriesFile = (config: Config) => join(tmpdir(), `devreg-k3d-${config.cluster.name}-registries.yaml`)

export async function createCluster(config: Config): Promise<void> {
  const { name, workers, nodeImage } = config.cluster
  if (config.cluster.provider === 'kind') {
    const env: Record<string, string> = {
      // A network other than "kind" reaches kind only through this variable.
      ...(config.network === 'kind' ? {} : { KIND_EXPERIMENTAL_DOCKER_NETWORK: config.network }),
      // kind hands the proxy to the nodes; the registries must bypass it there.
      ...nodeNoProxy(config, process.env),
    }
    await change(['kind', 'create', 'cluster', '--name', name, '--config', '-'], { input: kindConfig(config), env })
    return
  }
  const file = k3dRegistriesFile(config)
  await writeFile(file, k3sRegistries(config))
  await change([
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
    ...k3dNodeFlags(config, process.env),
  ])
}

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

export async function deleteCluster(cluster: Cluster): Promise<void> {
  if (cluster.provider === 'kind') await change(['kind', 'delete', 'cluster', '--name', cluster.name])
  else await change(['k3d', 'cluster', 'delete', cluster.name])
}

/**
 * Makes every node's registry routing match the config; returns what changed.
 * kind: one hosts.toml per registry host, which containerd re-reads on every
 * pull. k3d: registries.yaml, which k3s reads only at start, so a change
 * restarts the nodes.
 */
export async function reconcileMirrors(config: Config, cluster: Cluster): Promise<string[]> {
  return cluster.provider === 'kind' ? reconcileKind(config, cluster) : reconcileK3d(config, cluster)
}

async function reconcileKind(config: Config, cluster: Cluster): Promise<string[]> {
  const desired = kindHostsFiles(config)
  const changes: string[] = []
  if (!cluster.nodes.length && settings.dryRun)
    for (const [dir, content] of desired) log.out(`# would write into every node ${dir}/hosts.toml:\n${content.trimEnd()}`)
  await Promise.all(
    cluster.nodes.map(async (node) => {
      const [current] = await Promise.all([readHostsFiles(node.name), requireConfigPath(node.name)])
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
      await editNodeFiles(node.name, edits)
    }),
  )
  return changes.sort()
}

type NodeFileEdit = { write: string; content: string } | { remove: string }

const NODE_FILES = readFileSync(`${ROOT}templates/node-files.sh`, 'utf8')

/**
 * Every file change in a node in one exec (each is a docker round trip that
 * cluster creation waits for): templates/node-files.sh, with paths and
 * contents as arguments, never as script text.
 */
async function editNodeFiles(node: string, edits: NodeFileEdit[]): Promise<void> {
  if (!edits.length) return
  const args = edits.flatMap((e) => ('write' in e ? ['write', e.write, e.content] : ['remove', e.remove]))
  await change(['docker', 'exec', node, 'sh', '-c', NODE_FILES, 'node-files', ...args])
}

/** The hosts.toml files in a node's certs.d (directory → content), read in one exec. */
export async function readHostsFiles(node: string): Promise<Map<string, string>> {
  const r = await probe([
    'docker',
    'exec',
    node,
    'sh',
    '-c',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
    'for f in "$1"/*/hosts.toml; do [ -f "$f" ] || continue; printf "\\036%s\\n" "${f%/hosts.toml}"; cat "$f"; done',
    'sh',
    CERTS_D,
  ])
  const files = new Map<string, string>()
  for (const chunk of r.stdout.split('\x1e').slice(1)) {
    const nl = chunk.indexOf('\n')
    files.set(chunk.slice(0, nl), chunk.slice(nl + 1))
  }
  return files
}

/** containerd ignores keys it does not know, so a patch under the wrong table would pass silently. */
async function requireConfigPath(node: string): Promise<void> {
  if (settings.dryRun) return
  if (!(await readsCertsD(node)))
    throw new UserError(
      `containerd in ${node} does not read ${CERTS_D} (config_path is not set in \`containerd config dump\`): ` +
        'its config did not take the kind config patch; recreate the cluster with `dev-up --recreate`',
    )
}

/** Whether the node's containerd reads CERTS_D, as its effective config (`containerd config dump`) says. */
export async function readsCertsD(node: string): Promise<boolean> {
  const dump = await probe(['docker', 'exec', node, 'containerd', 'config', 'dump'])
  return dump.ok && criConfigPath(dump.stdout) === CERTS_D
}

/**
 * The hosts directory CRI pulls read, from `containerd config dump` parsed as
 * TOML: containerd 2.x migrates the kind patch to the CRI images plugin (and
 * prints single-quoted strings), 1.x keeps it under the CRI plugin. The
 * transfer service's own config_path is not what the kubelet's pulls use.
 */
export function criConfigPath(dump: string): string | null {
  let doc: Record<string, unknown>
  try {
    doc = parseToml(dump)
  } catch {
    return null
  }
  const plugins = (doc.plugins ?? {}) as Record<string, { registry?: { config_path?: unknown } }>
  for (const plugin of ['io.containerd.cri.v1.images', 'io.containerd.grpc.v1.cri']) {
    const path = plugins[plugin]?.registry?.config_path
    if (typeof path === 'string') return path || null
  }
  return null
}

async function reconcileK3d(config: Config, cluster: Cluster): Promise<string[]> {
  const desired = k3sRegistries(config)
  await writeFile(k3dRegistriesFile(config), desired)
  // k3d writes its own re-serialisation of the file into the nodes: compare what k3s acts on.
  const want = k3sRegistriesData(desired)
  const current = await Promise.all(cluster.nodes.map((n) => probe(['docker', 'exec', n.name, 'cat', K3S_REGISTRIES])))
  const stale = current.filter((r) => !r.ok || !isDeepStrictEqual(k3sRegistriesData(r.stdout), want))
  if (!stale.length) return []
  for (const node of cluster.nodes) await editNodeFiles(node.name, [{ write: K3S_REGISTRIES, content: desired }])
  // k3s reads registries.yaml only when it starts.
  await change(['k3d', 'cluster', 'stop', cluster.name])
  await change(['k3d', 'cluster', 'start', cluster.name])
  return [`rewrote ${K3S_REGISTRIES} in ${cluster.nodes.map((n) => n.name).join(', ')} and restarted them (k3s reads it only at start)`]
}

/** Publishes where the local registry is (KEP-1755), for Tilt and other tools. */
export async function applyRegistryHosting(config: Config): Promise<string> {
  return change(['kubectl', '--context', kubeContext(config), 'apply', '-f', '-'], { input: registryHostingConfigMap(config) })
}

export async function waitReady(config: Config): Promise<void> {
  const timeout = config.cluster.waitTimeout
  await change(['kubectl', '--context', kubeContext(config), 'wait', '--for=condition=Ready', 'nodes', '--all', `--timeout=${timeout}`])
}
