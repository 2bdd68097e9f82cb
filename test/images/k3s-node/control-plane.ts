// The control plane of the k3s-like server: the real etcd, kube-apiserver and
// kube-controller-manager, started by /bin/k3s with the flags k3s gives its
// embedded ones (pkg/daemons/control/server.go), under k3s's data directory.
// Where this differs from k3s, for want of k3s's own code: kubeadm makes the
// certificates (one CA for clients and serving, as kubeadm has it; k3s has
// one each); etcd stands in for kine, k3s's default datastore; the API server
// listens on 6443 itself (k3s's supervisor owns 6443 and hands the API on to
// it); anonymous requests stay allowed, so a joining agent reads the CA from
// kube-public/cluster-info as a kubeadm node does (k3s agents get it from the
// supervisor's /cacerts); and agents join with a bootstrap token derived from
// K3S_TOKEN (k3s's supervisor signs their certificates itself).
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { attempt, daemon, run, waitFor } from './processes.ts'

const SERVER = '/var/lib/rancher/k3s/server'
const TLS = join(SERVER, 'tls')
const CRED = join(SERVER, 'cred')
const KUBEADM_CONFIG = join(SERVER, 'kubeadm.yaml')
/** The admin's kubeconfig on the server, as k3s keeps it. */
export const ADMIN = join(CRED, 'admin.kubeconfig')
/** k3s's defaults: --cluster-cidr, --service-cidr, --cluster-dns. */
export const CLUSTER = { podCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16', dns: '10.43.0.10', domain: 'cluster.local' }
export const API_PORT = 6443

/** kubectl as k3s's admin. */
export const kubectl = (...args: string[]) => ['kubectl', '--kubeconfig', ADMIN, ...args]

/**
 * The bootstrap token a node joins with, derived from the cluster's token
 * (K3S_TOKEN, which k3d gives every node): the same on server and agents.
 */
export function bootstrapToken(clusterToken: string): string {
  const hex = createHash('sha256').update(clusterToken).digest('hex')
  return `${hex.slice(0, 6)}.${hex.slice(6, 22)}`
}

/** kubeadm's view of this server: where the certificates go and what the API server's certificate names. */
function writeKubeadmConfig(o: { node: string; address: string; tlsSans: string[]; token: string }) {
  const docs = [
    {
      apiVersion: 'kubeadm.k8s.io/v1beta4',
      kind: 'InitConfiguration',
      localAPIEndpoint: { advertiseAddress: o.address, bindPort: API_PORT },
      nodeRegistration: { name: o.node },
      bootstrapTokens: [{ token: o.token, ttl: '0s', groups: ['system:bootstrappers:kubeadm:default-node-token'] }],
    },
    {
      apiVersion: 'kubeadm.k8s.io/v1beta4',
      kind: 'ClusterConfiguration',
      // Its own version: without one kubeadm asks the internet for the latest release, and waits for the timeout.
      kubernetesVersion: run(['kubeadm', 'version', '-o', 'short']).trim(),
      certificatesDir: TLS,
      controlPlaneEndpoint: `127.0.0.1:${API_PORT}`,
      // k3s's certificates are ECDSA P-256 too.
      encryptionAlgorithm: 'ECDSA-P256',
      networking: { serviceSubnet: CLUSTER.serviceCidr, podSubnet: CLUSTER.podCidr, dnsDomain: CLUSTER.domain },
      // k3s's serving certificate names: its --tls-san values, localhost, the node's name and address.
      apiServer: { certSANs: [...o.tlsSans, '127.0.0.1', 'localhost', o.node, o.address] },
    },
  ]
  writeFileSync(KUBEADM_CONFIG, docs.map((d) => stringifyYaml(d)).join('---\n'))
}

/** A kubeconfig with a client certificate for `user` in `groups`, made once. */
function kubeconfig(path: string, user: string, groups: string[] = []) {
  if (existsSync(path)) return
  mkdirSync(dirname(path), { recursive: true })
  const out = run([
    'kubeadm',
    'kubeconfig',
    'user',
    '--config',
    KUBEADM_CONFIG,
    '--client-name',
    user,
    ...groups.flatMap((g) => ['--org', g]),
  ])
  writeFileSync(path, out, { mode: 0o600 })
}

/**
 * The admin kubeconfig k3s writes at K3S_KUBECONFIG_OUTPUT: cluster, user and
 * context all `default` (k3d renames them, pkg/client/kubeconfig.go KubeconfigGet).
 */
function writeK3sYaml(): string {
  const path = process.env.K3S_KUBECONFIG_OUTPUT || '/etc/rancher/k3s/k3s.yaml'
  const admin = parseYaml(readFileSync(ADMIN, 'utf8'))
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'default', cluster: { ...admin.clusters[0].cluster, server: `https://127.0.0.1:${API_PORT}` } }],
    contexts: [{ name: 'default', context: { cluster: 'default', user: 'default' } }],
    'current-context': 'default',
    preferences: {},
    users: [{ name: 'default', user: admin.users[0].user }],
  }
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, stringifyYaml(doc), { mode: 0o600 })
  return path
}

const tls = (file: string) => join(TLS, file)

/** kube-apiserver's flags, as k3s sets them for its embedded one (those that still exist in Kubernetes 1.36). */
function apiServerFlags(address: string): string[] {
  return Object.entries({
    'advertise-address': address,
    'allow-privileged': 'true',
    'api-audiences': `https://kubernetes.default.svc.${CLUSTER.domain},k3s`,
    'authorization-mode': 'Node,RBAC',
    'bind-address': '0.0.0.0',
    'cert-dir': tls('temporary-certs'),
    'client-ca-file': tls('ca.crt'),
    'enable-admission-plugins': 'NodeRestriction',
    // The rig's own: agents join with a bootstrap token (see above).
    'enable-bootstrap-token-auth': 'true',
    'etcd-servers': 'http://127.0.0.1:2379',
    'kubelet-client-certificate': tls('apiserver-kubelet-client.crt'),
    'kubelet-client-key': tls('apiserver-kubelet-client.key'),
    profiling: 'false',
    'proxy-client-cert-file': tls('front-proxy-client.crt'),
    'proxy-client-key-file': tls('front-proxy-client.key'),
    'requestheader-allowed-names': 'front-proxy-client',
    'requestheader-client-ca-file': tls('front-proxy-ca.crt'),
    'requestheader-extra-headers-prefix': 'X-Remote-Extra-',
    'requestheader-group-headers': 'X-Remote-Group',
    'requestheader-username-headers': 'X-Remote-User',
    'secure-port': String(API_PORT),
    'service-account-issuer': `https://kubernetes.default.svc.${CLUSTER.domain}`,
    'service-account-key-file': tls('sa.pub'),
    'service-account-signing-key-file': tls('sa.key'),
    'service-cluster-ip-range': CLUSTER.serviceCidr,
    'service-node-port-range': '30000-32767',
    'storage-backend': 'etcd3',
    'tls-cert-file': tls('apiserver.crt'),
    'tls-private-key-file': tls('apiserver.key'),
  }).map(([k, v]) => `--${k}=${v}`)
}

/**
 * kube-controller-manager's flags, as k3s sets them; one flag of the rig's own:
 * no kubelet renews a node's lease or heartbeat, so the node lifecycle
 * controller (which also clears the not-ready taint new Nodes get) never
 * finds a node late.
 */
function controllerManagerFlags(): string[] {
  const kubeconfig = join(CRED, 'controller.kubeconfig')
  return Object.entries({
    'allocate-node-cidrs': 'true',
    'authentication-kubeconfig': kubeconfig,
    'authorization-kubeconfig': kubeconfig,
    'bind-address': '127.0.0.1',
    'cluster-cidr': CLUSTER.podCidr,
    'cluster-signing-cert-file': tls('ca.crt'),
    'cluster-signing-key-file': tls('ca.key'),
    'configure-cloud-routes': 'false',
    controllers: '*,tokencleaner,-service,-route,-cloud-node-lifecycle',
    kubeconfig,
    'node-monitor-grace-period': '8760h',
    profiling: 'false',
    'root-ca-file': tls('ca.crt'),
    'secure-port': '10257',
    'service-account-private-key-file': tls('sa.key'),
    'use-service-account-credentials': 'true',
  }).map(([k, v]) => `--${k}=${v}`)
}

/** etcd on the loopback only, its data under k3s's db/, as k3s runs its embedded etcd (--cluster-init). */
function etcdFlags(node: string): string[] {
  return [
    `--name=${node}`,
    `--data-dir=${join(SERVER, 'db/etcd')}`,
    '--listen-client-urls=http://127.0.0.1:2379',
    '--advertise-client-urls=http://127.0.0.1:2379',
    '--listen-peer-urls=http://127.0.0.1:2380',
    '--initial-advertise-peer-urls=http://127.0.0.1:2380',
    `--initial-cluster=${node}=http://127.0.0.1:2380`,
  ]
}

/**
 * Certificates and kubeconfigs (kept across restarts, with etcd's data, as
 * k3s keeps its own), then etcd, the API server once it is ready, and the
 * controller manager; then the bootstrap token agents join with and the RBAC
 * and cluster-info a kubeadm join relies on. Returns the path of k3s.yaml.
 */
export async function startControlPlane(o: { node: string; address: string; tlsSans: string[]; clusterToken: string }): Promise<string> {
  mkdirSync(CRED, { recursive: true })
  writeKubeadmConfig({ ...o, token: bootstrapToken(o.clusterToken) })
  for (const cert of ['ca', 'apiserver', 'apiserver-kubelet-client', 'front-proxy-ca', 'front-proxy-client', 'sa'])
    run(['kubeadm', 'init', 'phase', 'certs', cert, '--config', KUBEADM_CONFIG])
  kubeconfig(ADMIN, 'system:admin', ['system:masters'])
  kubeconfig(join(CRED, 'controller.kubeconfig'), 'system:kube-controller-manager')
  const k3sYaml = writeK3sYaml()
  daemon('etcd', ['etcd', ...etcdFlags(o.node)])
  daemon('kube-apiserver', ['kube-apiserver', ...apiServerFlags(o.address)])
  await waitFor('kube-apiserver did not get ready', () => attempt(kubectl('get', '--raw', '/readyz')).ok)
  daemon('kube-controller-manager', ['kube-controller-manager', ...controllerManagerFlags()])
  run(['kubeadm', 'init', 'phase', 'bootstrap-token', '--config', KUBEADM_CONFIG, '--kubeconfig', ADMIN, '--skip-token-print'])
  return k3sYaml
}

/** A kubeconfig with this node's own identity (system:node:NAME), as the server's embedded kubelet has one. */
export function serverKubeletConfig(node: string, path: string) {
  kubeconfig(path, `system:node:${node}`, ['system:nodes'])
}
