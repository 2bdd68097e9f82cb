// Cluster DNS on the k3s-like server, as k3s deploys it: its bundled CoreDNS
// manifest staged under server/manifests at every start (k3d rewrites its
// NodeHosts there) and applied by a deploy loop that re-applies a changed file
// every 15 s (k3s's pkg/deploy), the cluster-dns ConfigMap k3d waits for, and,
// since no kubelet runs CoreDNS's pod here, the kubelet's part for that pod:
// its ConfigMap volumes projected into /etc/coredns (coredns's Corefile and
// NodeHosts, every key of coredns-custom under custom/), its service account's
// credentials, and the real CoreDNS run with them.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify as stringifyYaml } from 'yaml'
import { API_PORT, CLUSTER, kubectl } from './control-plane.ts'
import { attempt, daemon, log, run } from './processes.ts'

const MANIFESTS = '/var/lib/rancher/k3s/server/manifests'
/** k3s stages its bundled manifests here at every start; k3d adds NodeHosts to CoreDNS's ConfigMap in it. */
export const COREDNS_MANIFEST = join(MANIFESTS, 'coredns.yaml')
const COREDNS_DIR = '/etc/coredns'
const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount'

/** k3s's Corefile: NodeHosts for the network's names, and the import of coredns-custom's *.override and *.server keys. */
const COREFILE = `.:53 {
    errors
    health
    ready
    kubernetes ${CLUSTER.domain} in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts /etc/coredns/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import /etc/coredns/custom/*.override
}
import /etc/coredns/custom/*.server
`

/** The objects of k3s's bundled coredns.yaml, in its shape: the pod mounts coredns (Corefile, NodeHosts) and, optionally, coredns-custom. */
function corednsObjects(nodeHosts: string): object[] {
  const meta = (name: string) => ({ name, namespace: 'kube-system' })
  const labels = { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS' }
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('coredns') },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns', labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' } },
      rules: [
        { apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns', labels: { 'kubernetes.io/bootstrapping': 'rbac-defaults' } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta('coredns'), data: { Corefile: COREFILE, NodeHosts: nodeHosts } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { ...meta('coredns'), labels },
      spec: {
        selector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        template: {
          metadata: { labels: { 'k8s-app': 'kube-dns' } },
          spec: {
            serviceAccountName: 'coredns',
            dnsPolicy: 'Default',
            containers: [
              {
                name: 'coredns',
                image: 'rancher/mirrored-coredns-coredns:1.14.2',
                args: ['-conf', '/etc/coredns/Corefile'],
                volumeMounts: [
                  { name: 'config-volume', mountPath: '/etc/coredns', readOnly: true },
                  { name: 'custom-config-volume', mountPath: '/etc/coredns/custom', readOnly: true },
                ],
              },
            ],
            volumes: [
              {
                name: 'config-volume',
                configMap: {
                  name: 'coredns',
                  items: [
                    { key: 'Corefile', path: 'Corefile' },
                    { key: 'NodeHosts', path: 'NodeHosts' },
                  ],
                },
              },
              { name: 'custom-config-volume', configMap: { name: 'coredns-custom', optional: true } },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { ...meta('kube-dns'), labels: { ...labels, 'kubernetes.io/cluster-service': 'true' } },
      spec: {
        selector: { 'k8s-app': 'kube-dns' },
        clusterIP: CLUSTER.dns,
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
          { name: 'metrics', port: 9153, protocol: 'TCP' },
        ],
      },
    },
  ]
}

/** Stages the CoreDNS manifest, as k3s does at every start; NodeHosts holds this node until k3d rewrites it. */
export function stageCorednsManifest(node: string, address: string) {
  mkdirSync(MANIFESTS, { recursive: true })
  writeFileSync(
    COREDNS_MANIFEST,
    corednsObjects(`${address} ${node}\n`)
      .map((o) => stringifyYaml(o))
      .join('---\n'),
  )
}

const applied = new Map<string, number>()

/** Applies every manifest whose file changed since it was last applied (all of them on the first call). */
function deployManifests() {
  for (const file of readdirSync(MANIFESTS).filter((f) => /\.(ya?ml|json)$/.test(f) && !f.startsWith('.'))) {
    const path = join(MANIFESTS, file)
    const mtime = statSync(path).mtimeMs
    if (applied.get(path) === mtime) continue
    const r = attempt(kubectl('apply', '-f', path))
    if (r.ok) applied.set(path, mtime)
    else log('info', `Failed to process config: applying ${path} failed; retrying in 15 s`)
  }
}

/**
 * k3s's cluster-dns ConfigMap (pkg/server/server.go setClusterDNSConfig),
 * with the log line k3d waits for before it rewrites NodeHosts.
 */
function setClusterDnsConfig() {
  if (attempt(kubectl('get', 'configmap', 'cluster-dns', '-n', 'kube-system')).ok) {
    log('info', 'Cluster dns configmap already exists')
    return
  }
  run(
    kubectl(
      'create',
      'configmap',
      'cluster-dns',
      '-n',
      'kube-system',
      `--from-literal=clusterDNS=${CLUSTER.dns}`,
      `--from-literal=clusterDomain=${CLUSTER.domain}`,
    ),
  )
  log('info', 'Cluster dns configmap has been set successfully')
}

/** A ConfigMap's data; {} when it does not exist (coredns-custom is optional). */
function configMapData(name: string): Record<string, string> {
  const r = attempt(kubectl('get', 'configmap', name, '-n', 'kube-system', '-o', 'json'))
  return r.ok ? ((JSON.parse(r.stdout) as { data?: Record<string, string> }).data ?? {}) : {}
}

function writeIfChanged(path: string, content: string) {
  if (!existsSync(path) || readFileSync(path, 'utf8') !== content) writeFileSync(path, content)
}

/** The kubelet's projection of the pod's two ConfigMap volumes: changed keys rewritten, removed ones deleted. */
function projectConfigMaps() {
  const dir = join(COREDNS_DIR, 'custom')
  mkdirSync(dir, { recursive: true })
  const coredns = configMapData('coredns')
  for (const key of ['Corefile', 'NodeHosts']) if (coredns[key] !== undefined) writeIfChanged(join(COREDNS_DIR, key), coredns[key])
  const custom = configMapData('coredns-custom')
  for (const stale of readdirSync(dir).filter((f) => !(f in custom))) rmSync(join(dir, stale))
  for (const [key, value] of Object.entries(custom)) writeIfChanged(join(dir, key), value)
}

/** The service account credentials a kubelet mounts into the pod. */
function mountServiceAccount() {
  mkdirSync(SERVICE_ACCOUNT, { recursive: true })
  writeFileSync(join(SERVICE_ACCOUNT, 'token'), run(kubectl('create', 'token', 'coredns', '-n', 'kube-system', '--duration=8760h')))
  writeFileSync(join(SERVICE_ACCOUNT, 'ca.crt'), readFileSync('/var/lib/rancher/k3s/server/tls/ca.crt'))
  writeFileSync(join(SERVICE_ACCOUNT, 'namespace'), 'kube-system')
}

/**
 * Deploys the manifests, sets the cluster-dns ConfigMap and starts CoreDNS
 * with its projected configuration; the deploy loop (15 s) and the projection
 * (2 s: a kubelet syncs ConfigMap volumes within a minute or so; sooner keeps
 * the tests short) go on while k3s runs.
 */
export function startClusterDns() {
  deployManifests()
  setClusterDnsConfig()
  projectConfigMaps()
  mountServiceAccount()
  daemon('coredns', ['coredns', '-conf', join(COREDNS_DIR, 'Corefile')], {
    KUBERNETES_SERVICE_HOST: '127.0.0.1',
    KUBERNETES_SERVICE_PORT: String(API_PORT),
  })
  setInterval(deployManifests, 15_000)
  setInterval(projectConfigMaps, 2_000)
}
