// The files devreg generates for kind, k3d and containerd, checked against
// what those tools accept: field names from kind's v1alpha4 types, k3s's
// registries.yaml, containerd's docs/hosts.md, KEP-1755.
import { describe, expect, test } from 'bun:test'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { registryHosting } from '../../scripts/lib/cluster/in-cluster.ts'
import { desiredRegistriesYaml, k3sArgs } from '../../scripts/lib/cluster/providers/k3d.ts'
import { kindHostsTomls } from '../../scripts/lib/cluster/providers/kind.ts'
import { kindConfig } from '../../scripts/lib/cluster/render.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { k3sHostsToml } from '../images/k3s-node/render.ts'

const config = resolveConfig({
  cluster: { workers: 2, nodeImage: 'kindest/node:v1.31.0' },
  aliases: ['docker.io/acme', 'registry.dev.local'],
  mirrors: [
    { host: 'docker.io', remotes: [{ url: 'https://harbor.example.com', path: '/v2/dockerhub-proxy' }] },
    { host: 'ghcr.io', upstream: 'https://team-cache.example.com' },
  ],
})

interface HostsToml {
  server: string
  host: Record<string, { capabilities: string[]; override_path?: boolean }>
}

describe('kind config', () => {
  const doc = parseYaml(kindConfig(config))

  test('is a v1alpha4 Cluster with the configured nodes and the config_path patch, and nothing else', () => {
    expect(Object.keys(doc).sort()).toEqual(['apiVersion', 'containerdConfigPatches', 'kind', 'name', 'nodes'])
    expect(doc.kind).toBe('Cluster')
    expect(doc.apiVersion).toBe('kind.x-k8s.io/v1alpha4')
    expect(doc.nodes).toEqual([
      { role: 'control-plane', image: 'kindest/node:v1.31.0' },
      { role: 'worker', image: 'kindest/node:v1.31.0' },
      { role: 'worker', image: 'kindest/node:v1.31.0' },
    ])
  })

  test('the patch sets config_path under the CRI registry table and uses no registry.mirrors', () => {
    expect(doc.containerdConfigPatches).toHaveLength(1)
    const patch = parseToml(doc.containerdConfigPatches[0])
    expect(patch).toEqual({ plugins: { 'io.containerd.grpc.v1.cri': { registry: { config_path: '/etc/containerd/certs.d' } } } })
    expect(kindConfig(config)).not.toContain('mirrors')
  })
})

describe('hosts.toml files', () => {
  const files = kindHostsTomls(config)
  const read = (host: string) => parseToml(files.get(`/etc/containerd/certs.d/${host}`) as string) as unknown as HostsToml

  test('one per registry host: the local registry by both names, each mirror, each hostname alias', () => {
    expect([...files.keys()]).toEqual([
      '/etc/containerd/certs.d/localhost:5001',
      '/etc/containerd/certs.d/kind-registry:5000',
      '/etc/containerd/certs.d/docker.io',
      '/etc/containerd/certs.d/ghcr.io',
      '/etc/containerd/certs.d/registry.dev.local',
    ])
  })

  test('docker.io: the local registry (alias) first, then the cache, then the remote with override_path, server the real upstream', () => {
    const f = read('docker.io')
    expect(f.server).toBe('https://registry-1.docker.io')
    expect(Object.keys(f.host)).toEqual([
      'http://kind-registry:5000',
      'http://kind-cache-docker-io:5000',
      'https://harbor.example.com/v2/dockerhub-proxy',
    ])
    expect(f.host['https://harbor.example.com/v2/dockerhub-proxy'].override_path).toBe(true)
    expect(f.host['http://kind-cache-docker-io:5000']).toEqual({ capabilities: ['pull', 'resolve'] })
  })

  test('a team cache as upstream comes after the local cache, and server stays the public registry', () => {
    const f = read('ghcr.io')
    expect(Object.keys(f.host)).toEqual(['http://kind-cache-ghcr-io:5000', 'https://team-cache.example.com'])
    expect(f.server).toBe('https://ghcr.io')
  })

  test('the local registry and a hostname alias have no public fallback', () => {
    for (const h of ['localhost:5001', 'kind-registry:5000', 'registry.dev.local']) {
      expect(read(h).server).toBe('http://kind-registry:5000')
      expect(Object.keys(read(h).host)).toEqual(['http://kind-registry:5000'])
    }
  })

  test('plain-http hosts carry no TLS settings (containerd would try HTTPS first)', () => {
    for (const content of files.values()) {
      expect(content).not.toContain('skip_verify')
      expect(content).not.toContain('ca =')
    }
  })
})

describe('k3s registries.yaml', () => {
  const doc = parseYaml(desiredRegistriesYaml(config))
  const plain = resolveConfig({ aliases: ['docker.io/acme'], mirrors: [{ host: 'docker.io' }] })

  test('has only mirrors with endpoint lists in the same order; without a hostname alias, no upstream: k3s adds it itself', () => {
    expect(Object.keys(parseYaml(desiredRegistriesYaml(plain)))).toEqual(['mirrors'])
    expect(parseYaml(desiredRegistriesYaml(plain)).mirrors['docker.io']).toEqual({
      endpoint: ['http://kind-registry:5000', 'http://kind-cache-docker-io:5000'],
    })
    expect(desiredRegistriesYaml(plain)).not.toContain('registry-1.docker.io')
    expect(k3sArgs(plain)).toEqual([])
  })

  test('a hostname alias needs --disable-default-registry-endpoint, and then every public host lists its upstream last', () => {
    expect(k3sArgs(config)).toEqual(['--disable-default-registry-endpoint'])
    expect(doc.mirrors['docker.io']).toEqual({
      endpoint: [
        'http://kind-registry:5000',
        'http://kind-cache-docker-io:5000',
        'https://harbor.example.com/v2/dockerhub-proxy',
        'https://registry-1.docker.io',
      ],
    })
    expect(doc.mirrors['ghcr.io'].endpoint).toEqual(['http://kind-cache-ghcr-io:5000', 'https://team-cache.example.com', 'https://ghcr.io'])
    for (const h of ['localhost:5001', 'kind-registry:5000', 'registry.dev.local'])
      expect(doc.mirrors[h].endpoint).toEqual(['http://kind-registry:5000'])
  })

  test('becomes, as k3s renders it, the same order with the upstream as server', () => {
    expect(k3sHostsToml('docker.io', doc.mirrors['docker.io'].endpoint)).toBe(
      [
        '# File generated by k3s. DO NOT EDIT.',
        'server = "https://registry-1.docker.io/v2"',
        'capabilities = ["pull", "resolve", "push"]',
        '',
        '[host]',
        '',
        '[host."http://kind-registry:5000/v2"]',
        '  capabilities = ["pull", "resolve"]',
        '',
        '[host."http://kind-cache-docker-io:5000/v2"]',
        '  capabilities = ["pull", "resolve"]',
        '',
        '[host."https://harbor.example.com/v2/dockerhub-proxy"]',
        '  capabilities = ["pull", "resolve"]',
        '  override_path = true',
        '',
      ].join('\n'),
    )
  })

  test('under --disable-default-registry-endpoint k3s writes no server: the alias has no fallback, docker.io keeps its upstream last', () => {
    const read = (host: string) =>
      parseToml(k3sHostsToml(host, doc.mirrors[host].endpoint, true) as string) as unknown as Partial<HostsToml>
    expect(read('registry.dev.local')).toEqual({ host: { 'http://kind-registry:5000/v2': { capabilities: ['pull', 'resolve'] } } })
    expect(read('docker.io').server).toBeUndefined()
    expect(Object.keys(read('docker.io').host ?? {}).at(-1)).toBe('https://registry-1.docker.io/v2')
    // Without the flag the alias falls back to itself: what the flag is for.
    expect((parseToml(k3sHostsToml('registry.dev.local', ['http://kind-registry:5000']) as string) as unknown as HostsToml).server).toBe(
      'https://registry.dev.local/v2',
    )
  })
})

describe('local-registry-hosting ConfigMap (KEP-1755)', () => {
  test('kind: host and hostFromClusterNetwork (the registry’s Service, which pods resolve), as kind’s guide and ctlptl write them', () => {
    const cm = parseYaml(registryHosting(config))
    expect(cm.metadata).toEqual({ name: 'local-registry-hosting', namespace: 'kube-public' })
    expect(parseYaml(cm.data['localRegistryHosting.v1'])).toEqual({
      host: 'localhost:5001',
      hostFromClusterNetwork: 'kind-registry.devreg.svc.cluster.local:5000',
      help: 'https://kind.sigs.k8s.io/docs/user/local-registry/',
    })
  })

  test('k3d: also hostFromContainerRuntime, as k3d itself writes it', () => {
    const cm = parseYaml(registryHosting(resolveConfig({ cluster: { provider: 'k3d' } })))
    expect(Object.keys(parseYaml(cm.data['localRegistryHosting.v1'])).sort()).toEqual([
      'help',
      'host',
      'hostFromClusterNetwork',
      'hostFromContainerRuntime',
    ])
    // Nodes pull by the container name (their mirror files); pods reach the Service, not k3d's NodeHosts record.
    expect(parseYaml(cm.data['localRegistryHosting.v1'])).toMatchObject({
      hostFromContainerRuntime: 'kind-registry:5000',
      hostFromClusterNetwork: 'kind-registry.devreg.svc.cluster.local:5000',
    })
  })
})
