// What devreg applies for pods: the devreg namespace, a selector-less Service
// and an EndpointSlice per registry (fields from the Kubernetes API reference:
// v1 Service, discovery.k8s.io/v1 EndpointSlice), and k3s's coredns-custom key.
import { describe, expect, test } from 'bun:test'
import { appliedChanges, endpointSliceAddresses, removeInCluster } from '../../scripts/lib/cluster/in-cluster.ts'
import { corednsOverride, serviceAddress, serviceName } from '../../scripts/lib/cluster/render.ts'
import { type Registry, resolveConfig } from '../../scripts/lib/core/config.ts'
import { fakeRunner, notInstalled, on } from '../kit/fake-runner.ts'
import { docs, local } from '../kit/in-cluster-sample.ts'

/** The labels of every object devreg applies for the local registry. */
const OWNED = { 'app.kubernetes.io/managed-by': 'devreg', 'devreg.role': 'local' }
const localRegistryMeta = (labels: Record<string, string>) => ({ name: 'kind-registry', namespace: 'devreg', labels })

describe('in-cluster manifests', () => {
  test('the namespace first, then a Service and its EndpointSlice per registry', () => {
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      'Namespace/devreg',
      'Service/kind-registry',
      'EndpointSlice/kind-registry',
      'Service/kind-cache-docker-io',
      'EndpointSlice/kind-cache-docker-io',
    ])
  })

  test('the Service has no selector and one named port, 5000', () => {
    expect(docs[1]).toEqual({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: localRegistryMeta(OWNED),
      spec: { ports: [{ name: 'registry', port: 5000, targetPort: 5000, protocol: 'TCP' }] },
    })
  })

  test('the EndpointSlice is tied to the Service by label, holds the container address and a port named like the Service’s', () => {
    expect(docs[2]).toEqual({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: localRegistryMeta({
        ...OWNED,
        'kubernetes.io/service-name': 'kind-registry',
        'endpointslice.kubernetes.io/managed-by': 'devreg',
      }),
      addressType: 'IPv4',
      endpoints: [{ addresses: ['172.18.0.3'], conditions: { ready: true } }],
      ports: [{ name: 'registry', port: 5000, protocol: 'TCP' }],
    })
    expect(docs[4].endpoints[0].addresses).toEqual(['172.18.0.4'])
  })

  test.each([
    ['kind-registry', 'kind-registry'],
    ['5registry', 'registry-5registry'],
  ])('a registry named %p has Service %p (DNS-1035 wants a leading letter)', (name, service) => {
    expect(serviceName({ ...local, name } as Registry)).toBe(service)
  })

  test('pods reach a registry at its Service’s fully qualified name', () => {
    expect(serviceAddress(local)).toBe('kind-registry.devreg.svc.cluster.local:5000')
  })
})

describe('coredns-custom override (k3s)', () => {
  test('no hostname alias, no key', () => {
    expect(corednsOverride(resolveConfig({ aliases: ['docker.io/acme'], cluster: { provider: 'k3d' } }))).toBeNull()
  })

  test('each hostname alias is an exact name rewrite to the local registry’s Service; namespace aliases are not', () => {
    const withAliases = resolveConfig({
      cluster: { provider: 'k3d' },
      aliases: ['docker.io/acme', 'registry.dev.local', 'images.dev.local:5000'],
    })
    expect(corednsOverride(withAliases)).toBe(
      [
        '# Written by devreg (dev-up): hostname aliases of the local registry, as its Service.',
        'rewrite name exact registry.dev.local kind-registry.devreg.svc.cluster.local',
        'rewrite name exact images.dev.local kind-registry.devreg.svc.cluster.local',
        '',
      ].join('\n'),
    )
  })
})

describe('what kubectl apply reports', () => {
  test.each([
    ['namespace/devreg unchanged\nservice/kind-registry unchanged\n', []],
    [
      'namespace/devreg unchanged\nendpointslice.discovery.k8s.io/kind-registry configured\nservice/x created\n',
      ['endpointslice.discovery.k8s.io/kind-registry configured', 'service/x created'],
    ],
  ] as [string, string[]][])('%p', (out, changes) => {
    expect(appliedChanges(out)).toEqual(changes)
  })
})

describe('without kubectl', () => {
  const config = resolveConfig({ cluster: { name: 'dev' }, mirrors: [{ host: 'docker.io' }] })

  test('the EndpointSlice check says kubectl is not installed (preflight skips it), and --purge leaves the objects to the cluster', async () => {
    const run = fakeRunner([notInstalled('kubectl')])
    expect(await endpointSliceAddresses(run, config, config.registries[0])).toEqual({ addresses: null, error: 'kubectl not found' })
    expect(await removeInCluster(run, config)).toEqual([])
    expect(run.changes).toEqual([])
  })
})

describe('dev-down --purge', () => {
  test('on k3d: the devreg namespace, then what the CoreDNS hook held', async () => {
    const config = resolveConfig({ cluster: { provider: 'k3d', name: 'dev' }, aliases: ['registry.dev.local'] })
    const run = fakeRunner([
      on(['kubectl', '--context', 'k3d-dev', 'get', 'namespace', 'devreg'], '{}'),
      on(['kubectl', '--context', 'k3d-dev', 'get', 'configmap', 'coredns-custom'], JSON.stringify({ data: { 'devreg.override': 'x' } })),
    ])
    expect(await removeInCluster(run, config)).toEqual(['namespace devreg', 'devreg.override of kube-system/coredns-custom'])
    expect(run.changes).toEqual([
      'kubectl --context k3d-dev delete namespace devreg',
      'kubectl --context k3d-dev delete configmap coredns-custom -n kube-system',
    ])
  })
})
