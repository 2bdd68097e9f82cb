// A stand-in for kind (v0.2x), for tests on machines where kind cannot run.
// It implements the sub-commands devreg calls with kind's vocabulary, flags,
// labels, node names and output, starts real containerd nodes, applies the
// containerdConfigPatches to their config.toml, and refuses everything else.
import { readFileSync } from 'node:fs'
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { $ } from 'zx'
import {
  BASE_CONTAINERD_CONFIG,
  containersWith,
  ensureNetwork,
  NODE_IMAGE,
  parseFlags,
  refuse,
  startNode,
  strictKeys,
  waitContainerd,
  writeIn,
} from './common.ts'

const TOOL = 'kind'
const CLUSTER_LABEL = 'io.x-k8s.kind.cluster'
const ROLE_LABEL = 'io.x-k8s.kind.role'
const fail: (what: string) => never = (what) => refuse(TOOL, what)
const log = (msg: string) => process.stderr.write(`${msg}\n`)

// kind.x-k8s.io/v1alpha4 fields (pkg/apis/config/v1alpha4/types.go). The ones
// the stand-in cannot honour are refused by name rather than ignored.
const CLUSTER_FIELDS = [
  'kind',
  'apiVersion',
  'name',
  'nodes',
  'containerdConfigPatches',
  'featureGates',
  'runtimeConfig',
  'networking',
  'kubeadmConfigPatches',
  'kubeadmConfigPatchesJSON6902',
  'containerdConfigPatchesJSON6902',
]
const NODE_FIELDS = ['role', 'image', 'labels', 'extraMounts', 'extraPortMappings', 'kubeadmConfigPatches', 'kubeadmConfigPatchesJSON6902']
const IMPLEMENTED = ['kind', 'apiVersion', 'name', 'nodes', 'containerdConfigPatches']

async function createCluster(argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'name', short: 'n', value: true },
    { name: 'config', value: true },
    { name: 'image', value: true },
    { name: 'wait', value: true },
    { name: 'kubeconfig', value: true },
    { name: 'retain', value: false },
  ])
  if (args.length) fail(`unexpected arguments: ${args.join(' ')}`)
  const text = flags.config === '-' ? readFileSync(0, 'utf8') : flags.config ? readFileSync(String(flags.config), 'utf8') : ''
  const cfg = strictKeys(
    TOOL,
    'Cluster',
    text ? parseYaml(text) : { kind: 'Cluster', apiVersion: 'kind.x-k8s.io/v1alpha4' },
    CLUSTER_FIELDS,
  )
  if (cfg.kind !== 'Cluster' || cfg.apiVersion !== 'kind.x-k8s.io/v1alpha4')
    fail(`config must be kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4 (got ${cfg.kind}, ${cfg.apiVersion})`)
  for (const k of Object.keys(cfg)) if (!IMPLEMENTED.includes(k)) fail(`the stand-in does not implement the config field "${k}"`)
  const name = String(flags.name ?? process.env.KIND_CLUSTER_NAME ?? cfg.name ?? 'kind')
  const nodes = ((cfg.nodes as unknown[]) ?? [{ role: 'control-plane' }]).map((n, i) => {
    const node = strictKeys(TOOL, `nodes[${i}]`, n, NODE_FIELDS)
    for (const k of Object.keys(node)) if (!['role', 'image'].includes(k)) fail(`the stand-in does not implement nodes[${i}].${k}`)
    const role = String(node.role ?? 'control-plane')
    if (role !== 'control-plane' && role !== 'worker') fail(`nodes[${i}].role: unknown role "${role}"`)
    return { role, image: String(flags.image ?? node.image ?? NODE_IMAGE) }
  })
  if (nodes.filter((n) => n.role === 'control-plane').length !== 1) fail('the stand-in implements exactly one control-plane node')
  for (const n of nodes) if (!n.image.startsWith('devreg-test/')) fail(`the stand-in runs only devreg-test/ node images, not ${n.image}`)
  const patches = ((cfg.containerdConfigPatches as unknown[]) ?? []).map(String)
  if ((await containersWith(`${CLUSTER_LABEL}=${name}`)).length)
    fail(`ERROR: failed to create cluster: node(s) already exist for a cluster with the name "${name}"`)

  log(`Creating cluster "${name}" ...`)
  const network = process.env.KIND_EXPERIMENTAL_DOCKER_NETWORK || 'kind'
  if (network !== 'kind') log('WARNING: Overriding docker network due to KIND_EXPERIMENTAL_DOCKER_NETWORK')
  await ensureNetwork(network)
  const config = containerdConfig(patches)
  const counts: Record<string, number> = {}
  for (const n of nodes) {
    counts[n.role] = (counts[n.role] ?? 0) + 1
    const nodeName = `${name}-${n.role}${counts[n.role] > 1 ? counts[n.role] : ''}`
    await startNode(nodeName, network, { [CLUSTER_LABEL]: name, [ROLE_LABEL]: n.role }, n.image)
    await writeIn(nodeName, '/etc/containerd/config.toml', config)
    await waitContainerd(nodeName)
  }
  log(` ✓ Starting control-plane 🕹️\nSet kubectl context to "kind-${name}"`)
}

/** kind merges each patch into the node's containerd config (pkg/internal/patch/toml.go), skipping other versions. */
function containerdConfig(patches: string[]): string {
  let config = parseToml(BASE_CONTAINERD_CONFIG) as Record<string, unknown>
  for (const p of patches) {
    let patch: Record<string, unknown>
    try {
      patch = parseToml(p) as Record<string, unknown>
    } catch (err) {
      fail(`ERROR: failed to create cluster: failed to parse containerd config patch: ${(err as Error).message}`)
    }
    if (patch.version !== undefined && patch.version !== config.version) continue
    config = merge(config, patch) as Record<string, unknown>
  }
  return stringifyToml(config)
}

function merge(a: unknown, b: unknown): unknown {
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, unknown> = { ...(a as object) }
    for (const [k, v] of Object.entries(b)) out[k] = merge(out[k], v)
    return out
  }
  return b
}

async function getClusters(argv: string[]) {
  parseFlags(TOOL, argv, [])
  const names = [...new Set((await containersWith(CLUSTER_LABEL)).map((c) => c.labels[CLUSTER_LABEL]))].sort()
  if (!names.length) log('No kind clusters found.')
  for (const n of names) process.stdout.write(`${n}\n`)
}

async function getNodes(argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'name', short: 'n', value: true },
    { name: 'all-clusters', short: 'A', value: false },
  ])
  if (args.length) fail(`unexpected arguments: ${args.join(' ')}`)
  const name = String(flags.name ?? process.env.KIND_CLUSTER_NAME ?? 'kind')
  const nodes = await containersWith(flags['all-clusters'] ? CLUSTER_LABEL : `${CLUSTER_LABEL}=${name}`)
  if (!nodes.length) log(`No kind nodes found for cluster "${name}".`)
  for (const n of nodes) process.stdout.write(`${n.name}\n`)
}

async function deleteCluster(argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'name', short: 'n', value: true },
    { name: 'kubeconfig', value: true },
  ])
  if (args.length) fail(`unexpected arguments: ${args.join(' ')}`)
  const name = String(flags.name ?? process.env.KIND_CLUSTER_NAME ?? 'kind')
  log(`Deleting cluster "${name}" ...`)
  // kind removes the nodes and their anonymous volumes, never the network.
  for (const n of await containersWith(`${CLUSTER_LABEL}=${name}`)) await $({ quiet: true })`docker rm -f -v ${n.name}`
}

const [a, b, ...rest] = process.argv.slice(2)
const command = `${a ?? ''} ${b ?? ''}`.trim()
if (a === 'version') process.stdout.write('kind v0.29.0 go1.24.2 linux/amd64 (devreg test stand-in)\n')
else if (command === 'create cluster') await createCluster(rest)
else if (command === 'get clusters') await getClusters(rest)
else if (command === 'get nodes') await getNodes(rest)
else if (command === 'delete cluster') await deleteCluster(rest)
else fail(`unknown command "${command}": the stand-in implements create cluster, get clusters, get nodes, delete cluster, version`)
