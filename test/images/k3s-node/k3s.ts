// /bin/k3s of the tests' k3s-like node image (test/kit/rig/k3d-images.ts
// compiles it with `bun build --compile`): what the real k3d CLI v5.9.0 waits
// for in a node and what devreg relies on, over real containerd 2.x. There is
// no Kubernetes here: no API server, kubelet, CoreDNS, Traefik or servicelb.
//
//   k3s server|agent [--tls-san NAME]... [--disable-default-registry-endpoint]
//
// At every start, as k3s does: hosts.toml per mirror of
// /etc/rancher/k3s/registries.yaml (./render.ts), containerd under k3s's paths
// and socket (pkg/agent/containerd), crictl's config at CRI_CONFIG_FILE; on a
// server the kubeconfig at K3S_KUBECONFIG_OUTPUT and the CoreDNS manifest k3d
// rewrites. Then the log lines k3d waits for (k3d pkg/types/k3slogs.go, and
// "Cluster dns configmap" in pkg/client/cluster.go ClusterStart). Any other
// k3s flag is a fatal error, logged as k3s logs it, so no test passes on a
// flag this node ignores.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname, join } from 'node:path'
import { K3S_CERTS_D, K3S_CONTAINERD_CONFIG, k3sHostsDir, k3sHostsToml, parseRegistries } from './render.ts'

const REGISTRIES = '/etc/rancher/k3s/registries.yaml'
const AGENT = '/var/lib/rancher/k3s/agent'
const CONTAINERD_CONFIG = `${AGENT}/etc/containerd/config.toml`
const CONTAINERD_SOCKET = '/run/k3s/containerd/containerd.sock'
const CRICTL_CONFIG = `${AGENT}/etc/crictl.yaml`
/** k3s stages its bundled manifests here at every start; k3d adds NodeHosts to CoreDNS's ConfigMap in it. */
const COREDNS_MANIFEST = '/var/lib/rancher/k3s/server/manifests/coredns.yaml'
/** Whether this server made the cluster-dns ConfigMap on an earlier start (k3s asks its API server; there is none here). */
const CLUSTER_DNS_MARKER = '/var/lib/rancher/k3s/server/cluster-dns'
const NO_DEFAULT_ENDPOINT = '--disable-default-registry-endpoint'

/** A log line as k3s's logrus writes them; k3d retries a node whose last line before exiting is level=fatal. */
function log(level: 'info' | 'fatal', msg: string) {
  process.stderr.write(`time="${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}" level=${level} msg=${JSON.stringify(msg)}\n`)
}

function fatal(msg: string): never {
  log('fatal', msg)
  process.exit(1)
}

interface Options {
  role: 'server' | 'agent'
  noDefaultEndpoint: boolean
}

function parseArgs(argv: string[]): Options {
  const [role, ...rest] = argv
  if (role !== 'server' && role !== 'agent') fatal(`the devreg test node runs "k3s server" or "k3s agent", not "k3s ${argv.join(' ')}"`)
  let noDefaultEndpoint = false
  for (let i = 0; i < rest.length; i++) {
    const [flag, inline] = rest[i].split(/=(.*)/s, 2)
    if (flag === NO_DEFAULT_ENDPOINT && (inline === undefined || inline === 'true' || inline === 'false'))
      noDefaultEndpoint = inline !== 'false'
    // k3d passes --tls-san to every server (pkg/client/node.go patchServerSpec); no API server serves a certificate here.
    else if (flag === '--tls-san' && role === 'server') {
      if (inline === undefined && rest[++i] === undefined) fatal('flag needs an argument: --tls-san')
    } else
      fatal(`flag provided but not implemented by the devreg test node: ${rest[i]} (it implements --tls-san and ${NO_DEFAULT_ENDPOINT})`)
  }
  if (role === 'agent' && !(process.env.K3S_URL && process.env.K3S_TOKEN)) fatal('an agent needs K3S_URL and K3S_TOKEN, as k3d sets them')
  return { role, noDefaultEndpoint }
}

function write(path: string, content: string, mode = 0o644) {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, content, { mode })
}

/** k3s's writeContainerdHosts: the certs.d tree afresh from registries.yaml, so a changed file takes effect at the next start only. */
function renderRegistries(noDefaultEndpoint: boolean) {
  let mirrors: Record<string, string[]> = {}
  if (existsSync(REGISTRIES)) {
    try {
      mirrors = parseRegistries(readFileSync(REGISTRIES, 'utf8'))
    } catch (err) {
      fatal(`${REGISTRIES}: ${(err as Error).message}`)
    }
  }
  rmSync(K3S_CERTS_D, { recursive: true, force: true })
  mkdirSync(K3S_CERTS_D, { recursive: true })
  for (const [host, endpoints] of Object.entries(mirrors)) {
    const toml = k3sHostsToml(host, endpoints, noDefaultEndpoint)
    if (toml) write(join(K3S_CERTS_D, k3sHostsDir(host), 'hosts.toml'), toml)
  }
  log('info', `Using private registry config file at ${REGISTRIES}`)
}

/** The admin kubeconfig k3s writes at K3S_KUBECONFIG_OUTPUT: cluster, user and context all `default`, which k3d renames (pkg/client/kubeconfig.go KubeconfigGet). */
function writeKubeconfig() {
  const path = process.env.K3S_KUBECONFIG_OUTPUT || '/etc/rancher/k3s/k3s.yaml'
  write(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: default',
      '  cluster:',
      '    server: https://127.0.0.1:6443',
      'contexts:',
      '- name: default',
      '  context:',
      '    cluster: default',
      '    user: default',
      'current-context: default',
      'users:',
      '- name: default',
      '  user: {}',
      '',
    ].join('\n'),
    0o600,
  )
  log('info', `Wrote kubeconfig ${path}`)
}

/**
 * CoreDNS's ConfigMap as k3s's bundled manifest has it, as far as k3d and
 * devreg use it: NodeHosts (k3d replaces it with its host aliases and the
 * network's members) and the import of coredns-custom's *.override keys
 * (devreg's hostname aliases). Written at every start, as k3s does.
 */
function writeCorednsManifest(hostname: string) {
  const address = readFileSync('/etc/hosts', 'utf8').match(new RegExp(`^(\\S+)\\s+${hostname}\\b`, 'm'))?.[1] ?? '127.0.0.1'
  const corefile = [
    '.:53 {',
    '    errors',
    '    kubernetes cluster.local in-addr.arpa ip6.arpa {',
    '      pods insecure',
    '      fallthrough in-addr.arpa ip6.arpa',
    '    }',
    '    hosts /etc/coredns/NodeHosts {',
    '      ttl 60',
    '      reload 15s',
    '      fallthrough',
    '    }',
    '    forward . /etc/resolv.conf',
    '    import /etc/coredns/custom/*.override',
    '}',
    'import /etc/coredns/custom/*.server',
  ]
  write(
    COREDNS_MANIFEST,
    [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      '  name: coredns',
      '  namespace: kube-system',
      'data:',
      '  Corefile: |',
      ...corefile.map((l) => `    ${l}`),
      '  NodeHosts: |',
      `    ${address} ${hostname}`,
      '',
    ].join('\n'),
  )
}

/** Resolves once containerd answers on its socket (its gRPC server starts after every plugin has loaded). */
async function waitForSocket(containerd: ReturnType<typeof spawn>) {
  const deadline = Date.now() + 60_000
  for (;;) {
    if (containerd.exitCode !== null) fatal(`containerd exited with ${containerd.exitCode}: see ${AGENT}/containerd/containerd.log`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(CONTAINERD_SOCKET, () => {
        s.end()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) fatal(`containerd did not answer on ${CONTAINERD_SOCKET} within 60 s`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

const opts = parseArgs(process.argv.slice(2))
log('info', `Starting k3s ${opts.role} (devreg test node: containerd and the files k3d and devreg read, no Kubernetes)`)
renderRegistries(opts.noDefaultEndpoint)
if (opts.role === 'server') writeKubeconfig()
write(CONTAINERD_CONFIG, K3S_CONTAINERD_CONFIG)
write(CRICTL_CONFIG, `runtime-endpoint: unix://${CONTAINERD_SOCKET}\n`)

// As k3s runs it (pkg/agent/containerd/containerd.go): its own config, socket, state and root, its log in a file.
mkdirSync(`${AGENT}/containerd`, { recursive: true })
const containerdLog = openSync(`${AGENT}/containerd/containerd.log`, 'a')
const containerd = spawn(
  'containerd',
  ['-c', CONTAINERD_CONFIG, '-a', CONTAINERD_SOCKET, '--state', '/run/k3s/containerd', '--root', `${AGENT}/containerd`],
  { stdio: ['ignore', containerdLog, containerdLog] },
)
let stopping = false
containerd.on('exit', (code, signal) => {
  if (!stopping) fatal(`containerd exited (${signal ?? code}): see ${AGENT}/containerd/containerd.log`)
  process.exit(0)
})
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.on(signal, () => {
    stopping = true
    containerd.kill('SIGTERM')
  })

await waitForSocket(containerd)
log('info', 'Containerd is now running')
const hostname = readFileSync('/etc/hostname', 'utf8').trim()
if (opts.role === 'server') {
  writeCorednsManifest(hostname)
  // k3s's setClusterDNSConfig (pkg/server/server.go): k3d waits for either line.
  if (existsSync(CLUSTER_DNS_MARKER)) log('info', 'Cluster dns configmap already exists')
  else {
    write(CLUSTER_DNS_MARKER, '')
    log('info', 'Cluster dns configmap has been set successfully')
  }
  log('info', 'k3s is up and running')
} else log('info', `Successfully registered node ${hostname}`)
