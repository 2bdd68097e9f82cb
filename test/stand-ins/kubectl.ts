// A stand-in for kubectl: there is no API server on these machines. It
// answers the calls devreg makes (apply of the local-registry-hosting
// ConfigMap, wait for nodes Ready, get configmap) for clusters the kind and
// k3d stand-ins run, keeps applied objects under $DEVREG_STANDIN_STATE, and
// refuses anything else.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
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

/** The nodes behind a context, found the way kind (kind-NAME) and k3d (k3d-NAME) name them. */
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
  return nodes
}

// KEP-1755 LocalRegistryHostingV1 fields.
const HOSTING_FIELDS = ['host', 'hostFromContainerRuntime', 'hostFromClusterNetwork', 'help']

async function apply(context: string, argv: string[]) {
  const { flags } = parseFlags(TOOL, argv, [{ name: 'filename', short: 'f', value: true }])
  if (flags.filename !== '-') fail('the stand-in applies only -f - (a manifest on stdin)')
  await clusterNodes(context)
  const doc = strictKeys(TOOL, 'manifest', parseYaml(readFileSync(0, 'utf8')), ['apiVersion', 'kind', 'metadata', 'data'])
  if (doc.apiVersion !== 'v1' || doc.kind !== 'ConfigMap')
    fail(`the stand-in applies only v1 ConfigMaps, not ${doc.apiVersion} ${doc.kind}`)
  const meta = strictKeys(TOOL, 'metadata', doc.metadata, ['name', 'namespace', 'labels', 'annotations'])
  const data = strictKeys(TOOL, 'data', doc.data, Object.keys((doc.data as object) ?? {}))
  for (const v of Object.values(data)) if (typeof v !== 'string') fail('error: ConfigMap data values must be strings')
  if (meta.name === 'local-registry-hosting') {
    if (meta.namespace !== 'kube-public') fail('local-registry-hosting belongs in kube-public (KEP-1755)')
    strictKeys(TOOL, 'localRegistryHosting.v1', parseYaml(String(data['localRegistryHosting.v1'] ?? 'null')), HOSTING_FIELDS)
  }
  const dir = join(state, context, String(meta.namespace ?? 'default'))
  const file = join(dir, `configmap-${meta.name}.yaml`)
  const text = stringifyYaml(doc)
  const verb = !existsSync(file) ? 'created' : readFileSync(file, 'utf8') === text ? 'unchanged' : 'configured'
  mkdirSync(dir, { recursive: true })
  writeFileSync(file, text)
  process.stdout.write(`configmap/${meta.name} ${verb}\n`)
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

async function get(context: string, argv: string[]) {
  const { flags, args } = parseFlags(TOOL, argv, [
    { name: 'namespace', short: 'n', value: true },
    { name: 'output', short: 'o', value: true },
  ])
  if (args[0] !== 'configmap' || args.length !== 2 || flags.output !== 'yaml')
    fail('the stand-in gets only: get configmap NAME -n NS -o yaml')
  await clusterNodes(context)
  const file = join(state, context, String(flags.namespace ?? 'default'), `configmap-${args[1]}.yaml`)
  if (!existsSync(file)) fail(`Error from server (NotFound): configmaps "${args[1]}" not found`)
  process.stdout.write(readFileSync(file, 'utf8'))
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
else fail(`unknown command "${verb}": the stand-in implements apply, wait, get`)
