// A stand-in for kubectl: there is no API server on these machines. It
// answers the calls devreg makes (apply of ConfigMaps, the devreg Namespace,
// selector-less Services and their EndpointSlices; get, merge patch and delete
// of them; wait for nodes Ready) for clusters the real kind and k3d CLIs run,
// keeps applied objects under $DEVREG_STANDIN_STATE, and refuses anything
// else: other kinds, and fields the Kubernetes API reference does not define
// for these kinds or devreg does not use.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { $ } from 'zx'
import { containersWith, parseFlags, refuse, strictKeys } from './common.ts'

const TOOL = 'kubectl'
const fail: (what: string) => never = (what) => refuse(TOOL, what)
const state = process.env.DEVREG_STANDIN_STATE || join(tmpdir(), 'devreg-standin')

/**
 * Real kubectl knows a context only from its kubeconfig: where the test gives
 * one (KUBECONFIG, which the real kind CLI writes), the context must be in it.
 */
function requireContext(context: string) {
  const file = process.env.KUBECONFIG?.split(':')[0]
  if (!file) return
  const doc = existsSync(file) ? (parseYaml(readFileSync(file, 'utf8')) as { contexts?: { name: string }[] } | null) : null
  if (!doc?.contexts?.some((c) => c.name === context)) fail(`error: context "${context}" does not exist`)
}

/**
 * The nodes behind a context, found the way kind (kind-NAME) and k3d (k3d-NAME)
 * name them. A new cluster under the same name has a new API server, so the
 * objects kept for an older one are dropped.
 */
async function clusterNodes(context: string) {
  requireContext(context)
  const kind = /^kind-(.+)$/.exec(context)
  const k3d = /^k3d-(.+)$/.exec(context)
  const nodes = kind
    ? await containersWith(`io.x-k8s.kind.cluster=${kind[1]}`)
    : k3d
      ? (await containersWith(`k3d.cluster=${k3d[1]}`)).filter((n) => ['server', 'agent'].includes(n.labels['k3d.role']))
      : []
  if (!nodes.length) fail(`error: context "${context}" does not exist`)
  const identity = nodes
    .map((n) => n.id)
    .sort()
    .join(',')
  const marker = join(state, context, '.cluster')
  if (existsSync(marker) && readFileSync(marker, 'utf8') !== identity) rmSync(join(state, context), { recursive: true, force: true })
  mkdirSync(join(state, context), { recursive: true })
  writeFileSync(marker, identity)
  return nodes
}

type Obj = Record<string, unknown>

interface Kind {
  /** What kubectl prints before /NAME. */
  printed: string
  /** The resource's plural, as in NotFound messages. */
  plural: string
  namespaced: boolean
}

const KINDS: Record<string, Kind> = {
  Namespace: { printed: 'namespace', plural: 'namespaces', namespaced: false },
  ConfigMap: { printed: 'configmap', plural: 'configmaps', namespaced: true },
  Service: { printed: 'service', plural: 'services', namespaced: true },
  EndpointSlice: { printed: 'endpointslice.discovery.k8s.io', plural: 'endpointslices.discovery.k8s.io', namespaced: true },
}
const API_VERSIONS: Record<string, string> = { Namespace: 'v1', ConfigMap: 'v1', Service: 'v1', EndpointSlice: 'discovery.k8s.io/v1' }
/** Command-line names of each kind (kubectl api-resources: NAME, SHORTNAMES, singular). */
const ALIASES: Record<string, string> = {
  namespace: 'Namespace',
  namespaces: 'Namespace',
  ns: 'Namespace',
  configmap: 'ConfigMap',
  configmaps: 'ConfigMap',
  cm: 'ConfigMap',
  service: 'Service',
  services: 'Service',
  svc: 'Service',
  endpointslice: 'EndpointSlice',
  endpointslices: 'EndpointSlice',
}
/** Namespaces every cluster has. */
const BUILT_IN_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease']

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
/** IANA_SVC_NAME, which Service port names must be: at most 15, at least one letter, no "--". */
const isSvcName = (s: string) => /^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(s) && /[a-z]/.test(s) && !s.includes('--')
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const IPV4 = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const isPort = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535
const PROTOCOLS = ['TCP', 'UDP', 'SCTP']

// KEP-1755 LocalRegistryHostingV1 fields.
const HOSTING_FIELDS = ['host', 'hostFromContainerRuntime', 'hostFromClusterNetwork', 'help']

const list = (where: string, v: unknown): unknown[] => {
  if (!Array.isArray(v)) fail(`${where} must be a list`)
  return v
}

function validateMetadata(kind: string, doc: Obj): { name: string; namespace: string | null } {
  const meta = strictKeys(TOOL, 'metadata', doc.metadata, ['name', 'namespace', 'labels', 'annotations'])
  const name = meta.name
  if (typeof name !== 'string') fail(`error: ${kind}.metadata.name must be a string`)
  const nameRule = kind === 'Service' ? DNS1035_LABEL : kind === 'Namespace' ? DNS1123_LABEL : DNS1123_SUBDOMAIN
  if (!nameRule.test(name)) fail(`The ${kind} "${name}" is invalid: metadata.name: Invalid value`)
  for (const [k, v] of Object.entries(strictKeys(TOOL, 'metadata.labels', meta.labels ?? {}, Object.keys(meta.labels ?? {})))) {
    if (!LABEL_KEY.test(k)) fail(`metadata.labels: Invalid value: "${k}": not a qualified name`)
    if (typeof v !== 'string' || !LABEL_VALUE.test(v)) fail(`metadata.labels: Invalid value: "${v}": not a valid label value`)
  }
  if (!KINDS[kind].namespaced) {
    if (meta.namespace !== undefined) fail(`a ${kind} is cluster-scoped: it has no metadata.namespace`)
    return { name, namespace: null }
  }
  const namespace = meta.namespace ?? 'default'
  if (typeof namespace !== 'string' || !DNS1123_LABEL.test(namespace)) fail(`metadata.namespace: Invalid value: "${namespace}"`)
  return { name, namespace }
}

/** Service v1, as devreg writes it: no selector (its endpoints come from an EndpointSlice), ports only. */
function validateService(doc: Obj) {
  strictKeys(TOOL, 'Service', doc, ['apiVersion', 'kind', 'metadata', 'spec'])
  const spec = strictKeys(TOOL, 'Service.spec', doc.spec, ['ports'])
  const ports = list('spec.ports', spec.ports)
  if (!ports.length) fail('spec.ports: Required value')
  const names = new Set<string>()
  for (const [i, p] of ports.entries()) {
    const port = strictKeys(TOOL, `spec.ports[${i}]`, p, ['name', 'port', 'targetPort', 'protocol'])
    if (!isPort(port.port)) fail(`spec.ports[${i}].port: Invalid value: ${port.port}`)
    const target = port.targetPort
    if (target !== undefined && !isPort(target) && !(typeof target === 'string' && isSvcName(target)))
      fail(`spec.ports[${i}].targetPort: Invalid value: ${target}`)
    if (port.protocol !== undefined && !PROTOCOLS.includes(String(port.protocol)))
      fail(`spec.ports[${i}].protocol: Unsupported value: "${port.protocol}"`)
    if (port.name === undefined) {
      if (ports.length > 1) fail(`spec.ports[${i}].name: Required value`)
    } else if (typeof port.name !== 'string' || !isSvcName(port.name)) fail(`spec.ports[${i}].name: Invalid value: "${port.name}"`)
    else if (names.has(port.name)) fail(`spec.ports[${i}].name: Duplicate value: "${port.name}"`)
    else names.add(port.name)
  }
}

/** EndpointSlice discovery.k8s.io/v1, with the fields devreg uses. */
function validateEndpointSlice(doc: Obj) {
  strictKeys(TOOL, 'EndpointSlice', doc, ['apiVersion', 'kind', 'metadata', 'addressType', 'endpoints', 'ports'])
  if (!['IPv4', 'IPv6', 'FQDN'].includes(String(doc.addressType))) fail(`addressType: Unsupported value: "${doc.addressType}"`)
  if (doc.addressType !== 'IPv4') fail('the stand-in implements addressType IPv4 only')
  for (const [i, e] of list('endpoints', doc.endpoints).entries()) {
    const ep = strictKeys(TOOL, `endpoints[${i}]`, e, ['addresses', 'conditions'])
    const addresses = list(`endpoints[${i}].addresses`, ep.addresses)
    if (addresses.length < 1 || addresses.length > 100) fail(`endpoints[${i}].addresses: must have 1 to 100 addresses`)
    for (const a of addresses)
      if (!IPV4.test(String(a))) fail(`endpoints[${i}].addresses: Invalid value: "${a}": must be a valid IPv4 address`)
    const conditions = strictKeys(TOOL, `endpoints[${i}].conditions`, ep.conditions ?? {}, ['ready', 'serving', 'terminating'])
    for (const [k, v] of Object.entries(conditions)) if (typeof v !== 'boolean') fail(`endpoints[${i}].conditions.${k} must be a boolean`)
  }
  for (const [i, p] of list('ports', doc.ports ?? []).entries()) {
    const port = strictKeys(TOOL, `ports[${i}]`, p, ['name', 'port', 'protocol', 'appProtocol'])
    if (port.port !== undefined && !isPort(port.port)) fail(`ports[${i}].port: Invalid value: ${port.port}`)
    if (port.protocol !== undefined && !PROTOCOLS.includes(String(port.protocol)))
      fail(`ports[${i}].protocol: Unsupported value: "${port.protocol}"`)
    if (port.name !== undefined && port.name !== '' && !DNS1123_LABEL.test(String(port.name)))
      fail(`ports[${i}].name: Invalid value: "${port.name}"`)
  }
}

function validateConfigMap(doc: Obj, name: string, namespace: string) {
  strictKeys(TOOL, 'manifest', doc, ['apiVersion', 'kind', 'metadata', 'data'])
  const data = strictKeys(TOOL, 'data', doc.data ?? {}, Object.keys((doc.data as object) ?? {}))
  for (const v of Object.values(data)) if (typeof v !== 'string') fail('error: ConfigMap data values must be strings')
  if (name === 'local-registry-hosting') {
    if (namespace !== 'kube-public') fail('local-registry-hosting belongs in kube-public (KEP-1755)')
    strictKeys(TOOL, 'localRegistryHosting.v1', parseYaml(String(data['localRegistryHosting.v1'] ?? 'null')), HOSTING_FIELDS)
  }
}

/** Checks one document; returns where it is kept. */
function validate(doc: unknown): { kind: string; name: string; namespace: string | null } {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) fail('error: a manifest must be a mapping')
  const o = doc as Obj
  const kind = String(o.kind)
  if (!KINDS[kind]) fail(`the stand-in applies only ${Object.keys(KINDS).join(', ')}, not ${o.apiVersion} ${o.kind}`)
  if (o.apiVersion !== API_VERSIONS[kind]) fail(`no matches for kind "${kind}" in version "${o.apiVersion}"`)
  const { name, namespace } = validateMetadata(kind, o)
  if (kind === 'Namespace') strictKeys(TOOL, 'Namespace', o, ['apiVersion', 'kind', 'metadata'])
  else if (kind === 'Service') validateService(o)
  else if (kind === 'EndpointSlice') validateEndpointSlice(o)
  else validateConfigMap(o, name, namespace as string)
  return { kind, name, namespace }
}

function objectFile(context: string, kind: string, name: string, namespace: string | null): string {
  return join(state, context, namespace ?? '_cluster', `${KINDS[kind].printed.split('.')[0]}-${name}.yaml`)
}

function requireNamespace(context: string, namespace: string) {
  if (BUILT_IN_NAMESPACES.includes(namespace)) return
  if (!existsSync(objectFile(context, 'Namespace', namespace, null)))
    fail(`Error from server (NotFound): namespaces "${namespace}" not found`)
}

async function apply(context: string, argv: string[]) {
  const { flags } = parseFlags(TOOL, argv, [{ name: 'filename', short: 'f', value: true }])
  if (flags.filename !== '-') fail('the stand-in applies only -f - (a manifest on stdin)')
  const docs = parseAllDocuments(readFileSync(0, 'utf8')).map((d) => {
    if (d.errors.length) fail(`error: error parsing manifest: ${d.errors[0].message}`)
    return d.toJS() as unknown
  })
  const objects = docs.filter((d) => d !== null).map((d) => ({ doc: d as Obj, ...validate(d) }))
  if (!objects.length) fail('error: no objects passed to apply')
  await clusterNodes(context)
  for (const { doc, kind, name, namespace } of objects) {
    if (namespace) requireNamespace(context, namespace)
    const file = objectFile(context, kind, name, namespace)
    const text = stringifyYaml(doc)
    const verb = !existsSync(file) ? 'created' : readFileSync(file, 'utf8') === text ? 'unchanged' : 'configured'
    mkdirSync(join(file, '..'), { recursive: true })
    writeFileSync(file, text)
    process.stdout.write(`${KINDS[kind].printed}/${name} ${verb}\n`)
  }
}

async function wait(context: string, argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'for', value: true },
    { name: 'all', value: false },
    { name: 'timeout', value: true },
  ])
  if (flags.for !== 'condition=Ready' || args.join(' ') !== 'nodes' || !flags.all)
    fail('the stand-in waits only with: wait --for=condition=Ready nodes --all [--timeout=D]')
  const m = /^(\d+)(s|m)$/.exec(String(flags.timeout ?? '30s'))
  if (!m) fail(`error: invalid timeout ${flags.timeout}`)
  const deadline = Date.now() + Number(m[1]) * (m[2] === 'm' ? 60_000 : 1000)
  // Ready here means the node runs and its containerd answers.
  for (const node of await clusterNodes(context)) {
    while ((await $({ quiet: true, nothrow: true })`docker exec ${node.name} ctr version`).exitCode !== 0) {
      if (Date.now() > deadline) {
        process.stderr.write(`error: timed out waiting for the condition on nodes/${node.name}\n`)
        process.exit(1)
      }
      await new Promise((r) => setTimeout(r, 250))
    }
    process.stdout.write(`node/${node.name} condition met\n`)
  }
}

/** KIND NAME [-n NS] from a command line; the kinds the stand-in keeps. */
function target(argv: string[], extra: { name: string; short?: string; value: boolean }[], usage: string) {
  const { flags, args } = parseFlags(TOOL, argv, [{ name: 'namespace', short: 'n', value: true }, ...extra])
  const kind = ALIASES[args[0]]
  if (!kind || args.length !== 2) fail(`the stand-in implements only: ${usage}`)
  const namespace = KINDS[kind].namespaced ? String(flags.namespace ?? 'default') : null
  return { flags, kind, name: args[1], namespace }
}

function stored(context: string, kind: string, name: string, namespace: string | null): Obj {
  const file = objectFile(context, kind, name, namespace)
  if (!existsSync(file)) fail(`Error from server (NotFound): ${KINDS[kind].plural} "${name}" not found`)
  return parseYaml(readFileSync(file, 'utf8')) as Obj
}

async function get(context: string, argv: string[]) {
  const { flags, kind, name, namespace } = target(
    argv,
    [{ name: 'output', short: 'o', value: true }],
    'get KIND NAME [-n NS] -o json|yaml (KIND: namespace, configmap, service, endpointslice)',
  )
  if (flags.output !== 'json' && flags.output !== 'yaml') fail('the stand-in gets only with -o json or -o yaml')
  await clusterNodes(context)
  const obj = stored(context, kind, name, namespace)
  process.stdout.write(flags.output === 'json' ? `${JSON.stringify(obj, null, 4)}\n` : stringifyYaml(obj))
}

/** `patch configmap NAME -n NS --type merge -p JSON`: a JSON merge patch (RFC 7386) of data. */
async function patch(context: string, argv: string[]) {
  const { flags, kind, name, namespace } = target(
    argv,
    [
      { name: 'type', value: true },
      { name: 'patch', short: 'p', value: true },
    ],
    'patch configmap NAME -n NS --type merge -p JSON',
  )
  if (kind !== 'ConfigMap' || flags.type !== 'merge') fail('the stand-in patches only ConfigMaps, with --type merge')
  let body: Obj
  try {
    body = JSON.parse(String(flags.patch))
  } catch {
    fail(`error: unable to parse "${flags.patch}": not JSON`)
  }
  const changes = strictKeys(TOOL, 'patch', body, ['data'])
  await clusterNodes(context)
  const obj = stored(context, kind, name, namespace)
  const data: Record<string, unknown> = { ...((obj.data as object) ?? {}) }
  for (const [k, v] of Object.entries(strictKeys(TOOL, 'patch.data', changes.data, Object.keys((changes.data as object) ?? {})))) {
    if (v === null) delete data[k]
    else if (typeof v !== 'string') fail('error: ConfigMap data values must be strings')
    else data[k] = v
  }
  const next = { ...obj, data }
  const file = objectFile(context, kind, name, namespace)
  const text = stringifyYaml(next)
  const same = readFileSync(file, 'utf8') === text
  writeFileSync(file, text)
  process.stdout.write(`${KINDS[kind].printed}/${name} patched${same ? ' (no change)' : ''}\n`)
}

/** `delete namespace NAME` (with everything in it) or `delete configmap NAME -n NS`. */
async function remove(context: string, argv: string[]) {
  const { kind, name, namespace } = target(argv, [], 'delete namespace NAME, delete configmap NAME -n NS')
  if (kind !== 'Namespace' && kind !== 'ConfigMap') fail('the stand-in deletes only namespaces and ConfigMaps')
  if (kind === 'Namespace' && BUILT_IN_NAMESPACES.includes(name)) fail(`the stand-in does not delete namespace ${name}`)
  await clusterNodes(context)
  stored(context, kind, name, namespace)
  rmSync(objectFile(context, kind, name, namespace))
  if (kind === 'Namespace') rmSync(join(state, context, name), { recursive: true, force: true })
  process.stdout.write(`${KINDS[kind].printed.split('.')[0]} "${name}" deleted\n`)
}

const argv = process.argv.slice(2)
const ctxAt = argv.findIndex((a) => a === '--context' || a.startsWith('--context='))
if (ctxAt < 0) fail('the stand-in needs --context (devreg always names the cluster it means)')
const context = argv[ctxAt].includes('=') ? argv[ctxAt].split('=')[1] : argv[ctxAt + 1]
const rest = argv.filter((_, i) => i !== ctxAt && (argv[ctxAt].includes('=') || i !== ctxAt + 1))
const [verb, ...tail] = rest
if (verb === 'apply') await apply(context, tail)
else if (verb === 'wait') await wait(context, tail)
else if (verb === 'get') await get(context, tail)
else if (verb === 'patch') await patch(context, tail)
else if (verb === 'delete') await remove(context, tail)
else fail(`unknown command "${verb}": the stand-in implements apply, wait, get, patch, delete`)
