// A stand-in for k3d v5, for tests on machines where k3d and k3s cannot run.
// Nodes are real containerd (no k3s), 2.x by default as current k3s ships it.
// What k3d does with --registry-config is done as k3d does it: the file is
// parsed and written into the nodes re-serialised (./k3d-registries.ts). What
// k3s does with registries.yaml at boot is done here at `cluster create` and
// `cluster start`: it is validated and turned into hosts.toml files the way
// k3s's pkg/agent/containerd/config.go does (./k3s.ts), under the k3s
// arguments the node was created with, so a changed file has no effect until
// the nodes restart, as with k3s. Everything else is refused.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { $ } from 'zx'
import { containersWith, ensureNetwork, NODE_IMAGE, parseFlags, refuse, strictKeys, waitContainerd, writeIn } from './common.ts'
import { k3dRegistriesYaml } from './k3d-registries.ts'
import { K3S_CERTS_D, k3sContainerdConfig, k3sHostsToml } from './k3s.ts'

const TOOL = 'k3d'
const fail: (what: string) => never = (what) => refuse(TOOL, what)
const log = (msg: string) => process.stderr.write(`INFO[0000] ${msg}\n`)
const REGISTRIES = '/etc/rancher/k3s/registries.yaml'
/** The default node image: containerd 2.x, as in current k3s (test/kit/images.ts NODE_CONTAINERD2_IMAGE). */
const K3D_NODE_IMAGE = 'devreg-test/node-containerd2:2'
/** The one k3s argument the stand-in's "k3s" implements. */
const NO_DEFAULT_ENDPOINT = '--disable-default-registry-endpoint'

/** Validates a k3s registries.yaml (rancher/wharfie's Registry type) and returns its mirrors. */
function parseRegistries(text: string): Record<string, string[]> {
  const doc = strictKeys(TOOL, 'registries.yaml', parseYaml(text) ?? {}, ['mirrors', 'configs', 'auths'])
  const mirrors: Record<string, string[]> = {}
  const empty = (v: unknown) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0)
  for (const [host, m] of Object.entries((doc.mirrors as object) ?? {})) {
    if (host === '*') fail('the stand-in does not implement the "*" mirror')
    const mirror = strictKeys(TOOL, `mirrors.${host}`, m, ['endpoint', 'rewrite'])
    if (!empty(mirror.rewrite)) fail('the stand-in does not implement rewrite (a k3s containerd feature)')
    const endpoints = (mirror.endpoint as unknown[]) ?? []
    if (!Array.isArray(endpoints)) fail(`mirrors.${host}.endpoint must be a list`)
    for (const e of endpoints)
      if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(String(e))) fail(`mirrors.${host}.endpoint: "${e}" is not an http(s) URL`)
    mirrors[host] = endpoints.map(String)
  }
  for (const [host, c] of Object.entries((doc.configs as object) ?? {})) {
    const config = strictKeys(TOOL, `configs.${host}`, c, ['auth', 'tls'])
    if (config.auth) strictKeys(TOOL, `configs.${host}.auth`, config.auth, ['username', 'password', 'auth', 'identity_token'])
    if (config.tls) strictKeys(TOOL, `configs.${host}.tls`, config.tls, ['ca_file', 'cert_file', 'key_file', 'insecure_skip_verify'])
    fail('the stand-in does not implement configs (auth, tls)')
  }
  if (!empty(doc.auths)) fail('the stand-in does not implement auths')
  return mirrors
}

/** What k3s does at boot: read registries.yaml and (re)write its hosts.toml files, under the node's own arguments. */
async function bootRegistries(node: string) {
  const cmd = JSON.parse((await $({ quiet: true })`docker inspect --format ${'{{json .Config.Cmd}}'} ${node}`).stdout) as string[] | null
  const noDefaultEndpoint = (cmd ?? []).includes(NO_DEFAULT_ENDPOINT)
  const r = await $({ quiet: true, nothrow: true })`docker exec ${node} cat ${REGISTRIES}`
  const mirrors = r.exitCode === 0 ? parseRegistries(r.stdout) : {}
  await $({ quiet: true })`docker exec ${node} sh -c ${`rm -rf ${K3S_CERTS_D} && mkdir -p ${K3S_CERTS_D}`}`
  for (const [host, endpoints] of Object.entries(mirrors)) {
    const toml = k3sHostsToml(host, endpoints, noDefaultEndpoint)
    if (toml) await writeIn(node, `${K3S_CERTS_D}/${host}/hosts.toml`, toml)
  }
}

/** k3s writes a version 3 containerd config for containerd 2.x and version 2 for 1.x. */
async function containerdMajor(node: string): Promise<number> {
  const v = (await $({ quiet: true })`docker exec ${node} containerd --version`).stdout
  const major = Number(/\s(\d+)\.\d+\.\d+/.exec(v)?.[1])
  if (!major) throw new Error(`cannot read containerd's version in ${node}: ${v.trim()}`)
  return major
}

type Role = 'server' | 'agent' | 'loadbalancer'
interface PlannedNode {
  name: string
  role: Role
}

/**
 * Splits a node filter from a flag's value, as k3d's cmd/util SplitFiltersFromFlag
 * does: one '@', then filters separated by ';'. Null filters when there is no '@'.
 */
function splitFilters(flag: string): [string, string[] | null] {
  const parts = flag.split('@')
  if (parts.length === 1) return [flag, null]
  if (parts.some((p) => p.endsWith('\\'))) fail(`the stand-in does not implement an escaped '@' in '${flag}'`)
  if (parts.length > 2) fail(`Invalid flag '${flag}': only one '@' for node filter allowed`)
  if (!parts[0] || !parts[1]) fail(`Invalid flag '${flag}' includes '@' but is missing either an object or a filter`)
  return [parts[0], parts[1].split(';')]
}

/**
 * The nodes a flag applies to (k3d pkg/config/transform.go and pkg/util/filter.go
 * FilterNodes): all of them without a filter, which k3d allows only for a
 * single node, the load balancer included; else each filter's role group,
 * whole (ROLE:*) or by index (ROLE:0,1), or `all`.
 */
function filterNodes(nodes: PlannedNode[], value: string, filters: string[] | null, what: string): PlannedNode[] {
  if (filters === null) {
    if (nodes.length > 1) fail(`${what} '${value}' lacks a node filter, but there's more than one node`)
    return nodes
  }
  const picked = new Set<PlannedNode>()
  for (const f of filters) {
    if (f === 'all') return nodes
    const m = /^(server|servers|agent|agents|loadbalancer)(?::(\*|\d+(?:,\d+)*))?$/.exec(f)
    if (!m) fail(`the stand-in implements node filters all, ROLE:* and ROLE:N[,N], not '${f}'`)
    const group = nodes.filter((n) => n.role === m[1].replace(/s$/, ''))
    if (m[1] === 'loadbalancer') {
      if (!group.length) fail(`Node filter '${f}' targets a node that does not exist (disabled?)`)
    } else if (m[2] === undefined) fail(`Failed to parse node specifiers: unknown subset in '${f}'`)
    const indices = m[2] === undefined || m[2] === '*' ? group.map((_, i) => i) : m[2].split(',').map(Number)
    for (const i of indices) {
      if (!group[i]) fail(`Index out of range: index '${i}' < 0 or > number of available nodes in filter '${f}'`)
      picked.add(group[i])
    }
  }
  return nodes.filter((n) => picked.has(n))
}

const clusterNodes = async (name: string) => (await containersWith(`k3d.cluster=${name}`)).sort((a, b) => a.name.localeCompare(b.name))

async function create(argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'servers', short: 's', value: true },
    { name: 'agents', short: 'a', value: true },
    { name: 'image', short: 'i', value: true },
    { name: 'network', value: true },
    { name: 'registry-config', value: true },
    { name: 'k3s-arg', value: true, repeat: true },
    { name: 'env', short: 'e', value: true, repeat: true },
    { name: 'wait', value: false },
    { name: 'timeout', value: true },
    { name: 'kubeconfig-update-default', value: false },
    { name: 'kubeconfig-switch-context', value: false },
    { name: 'no-lb', value: false },
  ])
  if (args.length > 1) fail(`accepts at most 1 arg(s), received ${args.length}`)
  const name = args[0] ?? 'k3s-default'
  if (!/^[a-zA-Z0-9-]{1,32}$/.test(name)) fail(`invalid cluster name ${name}`)
  const servers = Number(flags.servers ?? 1)
  const agents = Number(flags.agents ?? 0)
  if (servers !== 1) fail('the stand-in implements exactly one server')
  const image = String(flags.image ?? K3D_NODE_IMAGE)
  if (!image.startsWith('devreg-test/')) fail(`the stand-in runs only devreg-test/ node images, not ${image}`)
  // k3d parses the file and writes its own serialisation of it into the nodes;
  // an empty file leaves it nil, and then k3d writes none.
  const given = flags['registry-config'] ? readFileSync(String(flags['registry-config']), 'utf8') : null
  let registries: string | null = null
  try {
    if (given !== null && parseYaml(given) != null) registries = k3dRegistriesYaml(parseRegistries(given))
  } catch (err) {
    fail(`--registry-config: ${(err as Error).message}`)
  }

  // The load balancer counts as a node for k3d's node filters.
  const nodes: PlannedNode[] = [
    ...(flags['no-lb'] ? [] : [{ name: `k3d-${name}-serverlb`, role: 'loadbalancer' as const }]),
    { name: `k3d-${name}-server-0`, role: 'server' },
    ...Array.from({ length: agents }, (_, i) => ({ name: `k3d-${name}-agent-${i}`, role: 'agent' as const })),
  ]
  const k3sArgs = new Map<PlannedNode, string[]>()
  const env = new Map<PlannedNode, string[]>()
  for (const flag of (flags['k3s-arg'] as string[] | undefined) ?? []) {
    const [arg, filters] = splitFilters(flag)
    if (arg !== NO_DEFAULT_ENDPOINT) fail(`the stand-in implements only --k3s-arg ${NO_DEFAULT_ENDPOINT}, not ${arg}`)
    for (const n of filterNodes(nodes, arg, filters, 'K3sExtraArg')) {
      if (n.role === 'loadbalancer') fail('the stand-in passes k3s arguments to k3s nodes only, not to the load balancer')
      k3sArgs.set(n, [...(k3sArgs.get(n) ?? []), arg])
    }
  }
  for (const flag of (flags.env as string[] | undefined) ?? []) {
    const [variable, filters] = splitFilters(flag)
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(variable)) fail(`--env ${flag}: the stand-in takes KEY=VALUE`)
    for (const n of filterNodes(nodes, variable, filters, 'EnvVarMapping')) env.set(n, [...(env.get(n) ?? []), variable])
  }

  if ((await clusterNodes(name)).length) fail(`Failed to create cluster '${name}' because a cluster with that name already exists`)
  const network = String(flags.network ?? `k3d-${name}`)
  const created = await ensureNetwork(network)
  const external = flags.network !== undefined
  if (!created) log(`Re-using existing network '${network}'`)
  const labels = (role: string) => ({
    app: 'k3d',
    'k3d.cluster': name,
    'k3d.role': role,
    'k3d.cluster.network': network,
    'k3d.cluster.network.external': String(external || !created),
  })
  for (const node of nodes) {
    const labelArgs = Object.entries(labels(node.role)).flatMap(([k, v]) => ['--label', `${k}=${v}`])
    const envArgs = (env.get(node) ?? []).flatMap((e) => ['--env', e])
    if (node.role === 'loadbalancer') {
      // The server load balancer is no node: devreg must not treat it as one.
      await $({
        quiet: true,
      })`docker run -d --init --name ${node.name} --network ${network} ${labelArgs} ${envArgs} --entrypoint sleep ${NODE_IMAGE} 1000000`
      continue
    }
    // As k3d does (pkg/runtimes/docker/translate.go): docker's init as PID 1, k3s's arguments
    // as the command after the role. --privileged fails on these machines; containerd needs SYS_ADMIN.
    await $({
      quiet: true,
    })`docker run -d --init --name ${node.name} --hostname ${node.name} --network ${network} --cap-add SYS_ADMIN ${labelArgs} ${envArgs} ${image} ${node.role} ${k3sArgs.get(node) ?? []}`
    if (registries !== null) await writeIn(node.name, REGISTRIES, registries)
    await bootRegistries(node.name)
    await writeIn(node.name, '/etc/containerd/config.toml', k3sContainerdConfig(await containerdMajor(node.name)))
    await waitContainerd(node.name)
  }
  if (flags['kubeconfig-update-default'] !== false) updateKubeconfig(name, true)
  log(`Cluster '${name}' created successfully!`)
}

/**
 * k3d merges the cluster's context (k3d-NAME) into the default kubeconfig on
 * create and removes it on delete (--kubeconfig-update-default, on by
 * default); here only where the test names a KUBECONFIG of its own.
 */
function updateKubeconfig(name: string, add: boolean) {
  const file = process.env.KUBECONFIG?.split(':')[0]
  if (!file) return
  type Named = { name: string }
  const doc = (existsSync(file) ? parseYaml(readFileSync(file, 'utf8')) : null) ?? { apiVersion: 'v1', kind: 'Config' }
  const id = `k3d-${name}`
  const without = (key: string) => ((doc[key] as Named[] | undefined) ?? []).filter((e) => e.name !== id && e.name !== `admin@${id}`)
  doc.clusters = [...without('clusters'), ...(add ? [{ name: id, cluster: { server: 'https://0.0.0.0:6443' } }] : [])]
  doc.users = [...without('users'), ...(add ? [{ name: `admin@${id}`, user: {} }] : [])]
  doc.contexts = [...without('contexts'), ...(add ? [{ name: id, context: { cluster: id, user: `admin@${id}` } }] : [])]
  writeFileSync(file, stringifyYaml(doc))
}

async function list(argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'output', short: 'o', value: true },
    { name: 'no-headers', value: false },
  ])
  const all = await containersWith('app=k3d')
  const names = [...new Set(all.filter((c) => c.labels['k3d.role'] !== 'registry').map((c) => c.labels['k3d.cluster']))].sort()
  const wanted = args.length ? args : names
  for (const n of args) if (!names.includes(n)) fail(`No nodes found for given cluster`)
  const clusters = wanted.map((n) => {
    const nodes = all.filter((c) => c.labels['k3d.cluster'] === n)
    const count = (role: string, running = false) =>
      nodes.filter((c) => c.labels['k3d.role'] === role && (!running || c.state === 'running')).length
    return {
      name: n,
      network: { name: nodes[0]?.labels['k3d.cluster.network'], isExternal: nodes[0]?.labels['k3d.cluster.network.external'] === 'true' },
      nodes: nodes.map((c) => ({
        name: c.name,
        role: c.labels['k3d.role'],
        image: c.image,
        State: { Running: c.state === 'running', Status: c.state },
      })),
      serversRunning: count('server', true),
      serversCount: count('server'),
      agentsRunning: count('agent', true),
      agentsCount: count('agent'),
      hasLoadbalancer: count('loadbalancer') > 0,
    }
  })
  if (flags.output === 'json') process.stdout.write(`${JSON.stringify(clusters)}\n`)
  else if (flags.output === undefined) {
    if (!flags['no-headers']) process.stdout.write('NAME   SERVERS   AGENTS   LOADBALANCER\n')
    for (const c of clusters)
      process.stdout.write(
        `${c.name}   ${c.serversRunning}/${c.serversCount}   ${c.agentsRunning}/${c.agentsCount}   ${c.hasLoadbalancer}\n`,
      )
  } else fail(`the stand-in implements -o json only, not ${flags.output}`)
}

async function remove(argv: string[]) {
  const { args } = parseFlags(TOOL, argv, [])
  if (args.length !== 1) fail('the stand-in deletes exactly one named cluster')
  const nodes = await clusterNodes(args[0])
  if (!nodes.length) {
    log(`No clusters found`)
    return
  }
  for (const n of nodes) await $({ quiet: true })`docker rm -f -v ${n.name}`
  const network = nodes[0].labels['k3d.cluster.network']
  if (nodes[0].labels['k3d.cluster.network.external'] === 'true')
    log(`Skip deletion of cluster network '${network}' because it's managed externally`)
  else await $({ quiet: true, nothrow: true })`docker network rm ${network}`
  updateKubeconfig(args[0], false)
  log(`Successfully deleted cluster ${args[0]}!`)
}

async function stopStart(verb: 'stop' | 'start', argv: string[]) {
  const { args } = parseFlags(TOOL, argv, [])
  if (args.length !== 1) fail(`the stand-in ${verb}s exactly one named cluster`)
  const nodes = (await clusterNodes(args[0])).filter((n) => n.labels['k3d.role'] !== 'registry')
  if (!nodes.length) fail(`No nodes found for given cluster`)
  for (const n of nodes) {
    await $({ quiet: true })`docker ${verb} ${n.name}`
    if (verb === 'start' && n.labels['k3d.role'] !== 'loadbalancer') {
      await bootRegistries(n.name)
      await waitContainerd(n.name)
    }
  }
  log(`${verb === 'stop' ? 'Stopped' : 'Started'} cluster '${args[0]}'`)
}

async function nodeList(argv: string[]) {
  parseFlags(TOOL, argv, [{ name: 'no-headers', value: false }])
  process.stdout.write('NAME   ROLE   CLUSTER   STATUS\n')
  for (const c of await containersWith('app=k3d'))
    process.stdout.write(`${c.name}   ${c.labels['k3d.role']}   ${c.labels['k3d.cluster']}   ${c.state}\n`)
}

const [a, b, ...rest] = process.argv.slice(2)
const command = `${a ?? ''} ${b ?? ''}`.trim()
if (a === 'version') process.stdout.write('k3d version v5.8.3 (devreg test stand-in)\nk3s version v1.31.5-k3s1 (default)\n')
else if (command === 'cluster create') await create(rest)
else if (command === 'cluster list' || command === 'cluster get') await list(rest)
else if (command === 'cluster delete') await remove(rest)
else if (command === 'cluster stop') await stopStart('stop', rest)
else if (command === 'cluster start') await stopStart('start', rest)
else if (command === 'node list') await nodeList(rest)
else fail(`unknown command "${command}": the stand-in implements cluster create|list|delete|stop|start, node list, version`)
