// /bin/k3s of the tests' k3s-like node image (test/kit/rig/k3d-images.ts
// compiles it with `bun build --compile`): what the real k3d CLI v5.9.0 waits
// for in a node and what devreg relies on, over real containerd 2.x, and a
// real Kubernetes API as k3s embeds one, but no kubelet yet (issue 21, stage 1):
//
//   k3s server|agent [--tls-san NAME]... [--disable-default-registry-endpoint]
//
// At every start, as k3s does: hosts.toml per mirror of
// /etc/rancher/k3s/registries.yaml (./render.ts), containerd under k3s's paths
// and socket (pkg/agent/containerd), crictl's config at CRI_CONFIG_FILE. A
// server then runs the control plane (./control-plane.ts: etcd,
// kube-apiserver on 6443, kube-controller-manager), writes the kubeconfig at
// K3S_KUBECONFIG_OUTPUT, registers its Node, and deploys CoreDNS as k3s does
// and runs it (./cluster-dns.ts); an agent joins the server at K3S_URL with a
// token derived from K3S_TOKEN and registers its Node. What a kubelet would
// report of a node, register-node.sh does once (kind's nodes share it). Then
// the log lines k3d waits for (k3d pkg/types/k3slogs.go, and "Cluster dns
// configmap" in pkg/client/cluster.go ClusterStart). Any other k3s flag is a
// fatal error, logged as k3s logs it, so no test passes on a flag this node
// ignores. The programs' own logs are under /var/lib/rancher/k3s/logs.
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname, join } from 'node:path'
import { stageCorednsManifest, startClusterDns } from './cluster-dns.ts'
import { bootstrapToken, kubectl, serverKubeletConfig, startControlPlane } from './control-plane.ts'
import { daemon, fatal, LOGS, log, run, stopAll } from './processes.ts'
import { K3S_CERTS_D, K3S_CONTAINERD_CONFIG, k3sHostsDir, k3sHostsToml, parseRegistries } from './render.ts'

const REGISTRIES = '/etc/rancher/k3s/registries.yaml'
const AGENT = '/var/lib/rancher/k3s/agent'
const CONTAINERD_CONFIG = `${AGENT}/etc/containerd/config.toml`
const CONTAINERD_SOCKET = '/run/k3s/containerd/containerd.sock'
const CRICTL_CONFIG = `${AGENT}/etc/crictl.yaml`
/** What the agent keeps of its join: its kubeconfig and client certificate, as k3s's agent keeps them. */
const KUBELET_KUBECONFIG = `${AGENT}/kubelet.kubeconfig`
const KUBELET_PEM = `${AGENT}/client-kubelet.pem`
const REGISTER = '/usr/local/libexec/kubernetes/register-node.sh'
const NO_DEFAULT_ENDPOINT = '--disable-default-registry-endpoint'

interface Options {
  role: 'server' | 'agent'
  noDefaultEndpoint: boolean
  /** Names the API server's certificate holds besides its own (k3d passes the API host and its load balancer). */
  tlsSans: string[]
}

function parseArgs(argv: string[]): Options {
  const [role, ...rest] = argv
  if (role !== 'server' && role !== 'agent') fatal(`the devreg test node runs "k3s server" or "k3s agent", not "k3s ${argv.join(' ')}"`)
  let noDefaultEndpoint = false
  const tlsSans: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const [flag, inline] = rest[i].split(/=(.*)/s, 2)
    if (flag === NO_DEFAULT_ENDPOINT && (inline === undefined || inline === 'true' || inline === 'false'))
      noDefaultEndpoint = inline !== 'false'
    // k3d passes --tls-san to every server (pkg/client/node.go patchServerSpec).
    else if (flag === '--tls-san' && role === 'server') {
      const san = inline ?? rest[++i]
      if (san === undefined) fatal('flag needs an argument: --tls-san')
      tlsSans.push(san)
    } else
      fatal(`flag provided but not implemented by the devreg test node: ${rest[i]} (it implements --tls-san and ${NO_DEFAULT_ENDPOINT})`)
  }
  if (!process.env.K3S_TOKEN) fatal('no K3S_TOKEN: k3d gives every node the cluster token')
  if (role === 'agent' && !process.env.K3S_URL) fatal('an agent needs K3S_URL, as k3d sets it')
  return { role, noDefaultEndpoint, tlsSans }
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

/** Resolves once containerd answers on its socket (its gRPC server starts after every plugin has loaded). */
async function waitForSocket(containerd: ChildProcess) {
  const deadline = Date.now() + 60_000
  for (;;) {
    if (containerd.exitCode !== null) fatal(`containerd exited with ${containerd.exitCode}: see ${LOGS}/containerd.log`)
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

/** This node's address on the cluster network, as Docker wrote it into /etc/hosts. */
function nodeAddress(hostname: string): string {
  return readFileSync('/etc/hosts', 'utf8').match(new RegExp(`^(\\S+)\\s+${hostname}\\b`, 'm'))?.[1] ?? '127.0.0.1'
}

/** The Node as k3s's kubelet registers it, with the labels k3s gives its nodes (register-node.sh). */
function registerNode(kubeconfig: string, node: string, address: string) {
  const kubeletVersion = (JSON.parse(run(['kubectl', 'version', '--client', '-o', 'json'])) as { clientVersion: { gitVersion: string } })
    .clientVersion.gitVersion
  const containerd = run(['containerd', '--version']).trim().split(' ')[2]?.replace(/^v/, '')
  run(['sh', REGISTER, 'register', kubeconfig], {
    env: {
      NODE_IP: address,
      NODE_LABELS: 'node.kubernetes.io/instance-type=k3s,beta.kubernetes.io/instance-type=k3s',
      PROVIDER_ID: `k3s://${node}`,
      KUBELET_VERSION: kubeletVersion,
      RUNTIME_VERSION: `containerd://${containerd}`,
    },
  })
}

async function server(opts: Options, node: string, address: string) {
  const token = process.env.K3S_TOKEN as string
  const kubeconfig = await startControlPlane({ node, address, tlsSans: opts.tlsSans, clusterToken: token })
  log('info', `Wrote kubeconfig ${kubeconfig}`)
  serverKubeletConfig(node, KUBELET_KUBECONFIG)
  registerNode(KUBELET_KUBECONFIG, node, address)
  // k3s labels its servers itself, as admin: a node may not give itself node-role labels (NodeRestriction).
  run(kubectl('label', 'node', node, '--overwrite', 'node-role.kubernetes.io/control-plane=true', 'node-role.kubernetes.io/master=true'))
  stageCorednsManifest(node, address)
  startClusterDns()
  log('info', 'k3s is up and running')
}

/** The agent's join: a kubelet's TLS bootstrap with the bootstrap token, once; the Node registered at every start. */
function agent(node: string, address: string) {
  if (!existsSync(KUBELET_KUBECONFIG)) {
    const server = new URL(process.env.K3S_URL as string).host
    run(['sh', REGISTER, 'bootstrap', server, bootstrapToken(process.env.K3S_TOKEN as string), KUBELET_KUBECONFIG, KUBELET_PEM])
  }
  registerNode(KUBELET_KUBECONFIG, node, address)
  log('info', `Successfully registered node ${node}`)
}

const opts = parseArgs(process.argv.slice(2))
log('info', `Starting k3s ${opts.role} (devreg test node: containerd, the Kubernetes API on servers, no kubelet)`)
renderRegistries(opts.noDefaultEndpoint)
write(CONTAINERD_CONFIG, K3S_CONTAINERD_CONFIG)
write(CRICTL_CONFIG, `runtime-endpoint: unix://${CONTAINERD_SOCKET}\n`)

// As k3s runs it (pkg/agent/containerd/containerd.go): its own config, socket, state and root.
const containerd = daemon('containerd', [
  'containerd',
  '-c',
  CONTAINERD_CONFIG,
  '-a',
  CONTAINERD_SOCKET,
  '--state',
  '/run/k3s/containerd',
  '--root',
  `${AGENT}/containerd`,
])
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.on(signal, () => {
    stopAll()
    process.exit(0)
  })

await waitForSocket(containerd)
log('info', 'Containerd is now running')
const hostname = readFileSync('/etc/hostname', 'utf8').trim()
if (opts.role === 'server') await server(opts, hostname, nodeAddress(hostname))
else agent(hostname, nodeAddress(hostname))
