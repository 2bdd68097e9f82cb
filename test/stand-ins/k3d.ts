// A stand-in for k3d v5, for tests on machines where k3d and k3s cannot run.
// Nodes are real containerd (no k3s); what k3s does with registries.yaml at
// boot is done here at `cluster create` and `cluster start`: the file is
// validated and turned into hosts.toml files the way k3s's
// pkg/agent/containerd/config.go does, so a changed file has no effect until
// the nodes restart, as with k3s. Everything else is refused.
import { readFileSync } from 'node:fs'
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
import { k3sHostsToml } from './k3s.ts'

const TOOL = 'k3d'
const fail: (what: string) => never = (what) => refuse(TOOL, what)
const log = (msg: string) => process.stderr.write(`INFO[0000] ${msg}\n`)
const REGISTRIES = '/etc/rancher/k3s/registries.yaml'
const CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'

/** Validates a k3s registries.yaml (rancher/wharfie's Registry type) and returns its mirrors. */
function parseRegistries(text: string): Record<string, string[]> {
  const doc = strictKeys(TOOL, 'registries.yaml', parseYaml(text) ?? {}, ['mirrors', 'configs'])
  const mirrors: Record<string, string[]> = {}
  for (const [host, m] of Object.entries((doc.mirrors as object) ?? {})) {
    const mirror = strictKeys(TOOL, `mirrors.${host}`, m, ['endpoint', 'rewrite'])
    if (mirror.rewrite) fail('the stand-in does not implement rewrite (a k3s containerd feature)')
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
  return mirrors
}

/** What k3s does at boot: read registries.yaml and (re)write its hosts.toml files. */
async function bootRegistries(node: string) {
  const r = await $({ quiet: true, nothrow: true })`docker exec ${node} cat ${REGISTRIES}`
  const mirrors = r.exitCode === 0 ? parseRegistries(r.stdout) : {}
  await $({ quiet: true })`docker exec ${node} sh -c ${`rm -rf ${CERTS_D} && mkdir -p ${CERTS_D}`}`
  for (const [host, endpoints] of Object.entries(mirrors))
    await writeIn(node, `${CERTS_D}/${host === '*' ? '_default' : host}/hosts.toml`, k3sHostsToml(host, endpoints))
}

const clusterNodes = async (name: string) => (await containersWith(`k3d.cluster=${name}`)).sort((a, b) => a.name.localeCompare(b.name))

async function create(argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'servers', short: 's', value: true },
    { name: 'agents', short: 'a', value: true },
    { name: 'image', short: 'i', value: true },
    { name: 'network', value: true },
    { name: 'registry-config', value: true },
    { name: 'wait', value: false },
    { name: 'timeout', value: true },
    { name: 'kubeconfig-update-default', value: false },
    { name: 'kubeconfig-switch-context', value: false },
    { name: 'no-lb', value: false },
  ])
  if (args.length > 1) fail(`accepts at most 1 arg(s), received ${args.length}`)
  const name = args[0] ?? 'k3s-default'
  if (!/^[a-zA-Z0-9-]{1,32}$/.test(name)) fail(`invalid cluster name ${name}`)
  if ((await clusterNodes(name)).length) fail(`Failed to create cluster '${name}' because a cluster with that name already exists`)
  const servers = Number(flags.servers ?? 1)
  const agents = Number(flags.agents ?? 0)
  if (servers !== 1) fail('the stand-in implements exactly one server')
  const image = String(flags.image ?? NODE_IMAGE)
  if (!image.startsWith('devreg-test/')) fail(`the stand-in runs only devreg-test/ node images, not ${image}`)
  const registries = flags['registry-config'] ? readFileSync(String(flags['registry-config']), 'utf8') : null
  if (registries !== null) parseRegistries(registries)

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
  const nodes = [`k3d-${name}-server-0`, ...Array.from({ length: agents }, (_, i) => `k3d-${name}-agent-${i}`)]
  for (const node of nodes) {
    await startNode(node, network, labels(node.includes('-server-') ? 'server' : 'agent'), image)
    if (registries !== null) await writeIn(node, REGISTRIES, registries)
    await bootRegistries(node)
    await writeIn(node, '/etc/containerd/config.toml', containerdConfig())
    await waitContainerd(node)
  }
  if (!flags['no-lb']) {
    // The server load balancer is no node: devreg must not treat it as one.
    await $({
      quiet: true,
    })`docker run -d --name ${`k3d-${name}-serverlb`} --network ${network} ${Object.entries(labels('loadbalancer')).flatMap(([k, v]) => ['--label', `${k}=${v}`])} --entrypoint sleep ${NODE_IMAGE} 1000000`
  }
  log(`Cluster '${name}' created successfully!`)
}

function containerdConfig(): string {
  return `${BASE_CONTAINERD_CONFIG}    [plugins."io.containerd.grpc.v1.cri".registry]\n      config_path = "${CERTS_D}"\n`
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
