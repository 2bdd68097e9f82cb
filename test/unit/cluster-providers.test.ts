// Every ClusterProvider through the fake runner, by the names the config gives
// them: finding its clusters among Docker's containers, reading what the
// listing leaves out, creating and deleting, the certs.d check, the KEP-1755
// fields and the hostname aliases in pods. Routing (desired, observed and
// reconciled mirrors) is in providers.test.ts.
import { describe, expect, test } from 'bun:test'
import { nodeImageFactsPath, parseNodeOutput } from '../../scripts/lib/cluster/nodes.ts'
import {
  type Cluster,
  clusterDrift,
  configuredCluster,
  findClusters,
  PROVIDERS,
  providerOf,
} from '../../scripts/lib/cluster/providers/index.ts'
import { kindConfig } from '../../scripts/lib/cluster/render.ts'
import type { Config } from '../../scripts/lib/core/config.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import type { Container } from '../../scripts/lib/core/docker.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'
import { containerd23, nodeOutput } from '../kit/node-output.ts'

const container = (name: string, labels: Record<string, string>, state = 'running'): Container => ({
  id: name,
  name,
  state,
  labels,
  networks: [],
  ports: '',
  image: 'node:1',
})
const kindNode = (cluster: string, name: string, role: string) =>
  container(name, { 'io.x-k8s.kind.cluster': cluster, 'io.x-k8s.kind.role': role })
const k3dNode = (cluster: string, name: string, role: string) => container(name, { app: 'k3d', 'k3d.cluster': cluster, 'k3d.role': role })

/** Two clusters named dev, one per provider, their load balancers, another kind cluster and a registry. */
const containers = [
  kindNode('dev', 'dev-control-plane', 'control-plane'),
  kindNode('dev', 'dev-worker', 'worker'),
  kindNode('dev', 'dev-external-load-balancer', 'external-load-balancer'),
  kindNode('other', 'other-control-plane', 'control-plane'),
  k3dNode('dev', 'k3d-dev-server-0', 'server'),
  { ...k3dNode('dev', 'k3d-dev-agent-0', 'agent'), state: 'exited' },
  k3dNode('dev', 'k3d-dev-serverlb', 'loadbalancer'),
  container('kind-registry', { 'devreg.managed': 'true' }),
]

const kindConfigOf = (extra: Record<string, unknown> = {}) => resolveConfig({ cluster: { name: 'dev', ...extra } })
const k3dConfigOf = (extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) =>
  resolveConfig({ cluster: { provider: 'k3d', name: 'dev', ...extra }, mirrors: [{ host: 'docker.io' }], ...top })

describe('each provider finds its own clusters among Docker’s containers', () => {
  test.each([
    ['kind', ['dev-control-plane:control-plane', 'dev-worker:worker']],
    ['k3d', ['k3d-dev-server-0:server', 'k3d-dev-agent-0:agent']],
  ] as const)('%s: its nodes, no load balancer, no registry, no other cluster', (name, nodes) => {
    const found = PROVIDERS[name].find('dev', containers) as Cluster
    expect(found.provider).toBe(name)
    expect(found.nodes.map((n) => `${n.name}:${n.role}`)).toEqual([...nodes])
    expect(PROVIDERS[name].find('nope', containers)).toBeNull()
  })

  test('a node’s running state is Docker’s', () => {
    expect(PROVIDERS.k3d.find('dev', containers)?.nodes.map((n) => n.running)).toEqual([true, false])
  })

  test('each owns the clusters it found and no other provider’s', () => {
    const [kindCluster, k3dCluster] = findClusters('dev', containers)
    expect([kindCluster.provider, k3dCluster.provider]).toEqual(['kind', 'k3d'])
    expect([PROVIDERS.kind.owns(kindCluster), PROVIDERS.kind.owns(k3dCluster)]).toEqual([true, false])
    expect([PROVIDERS.k3d.owns(kindCluster), PROVIDERS.k3d.owns(k3dCluster)]).toEqual([false, true])
  })

  test('the config’s cluster is the one of its provider; the other is drift', () => {
    expect(configuredCluster(k3dConfigOf(), containers)?.provider).toBe('k3d')
    expect(configuredCluster(kindConfigOf(), containers)?.provider).toBe('kind')
    expect(providerOf(k3dConfigOf()).name).toBe('k3d')
    const other = PROVIDERS.k3d.find('dev', containers) as Cluster
    expect(clusterDrift(kindConfigOf(), other)).toEqual(['it is a k3d cluster, the config says kind'])
  })
})

describe('what Docker’s listing leaves out', () => {
  const k3dCluster = PROVIDERS.k3d.find('dev', containers) as Cluster

  test('kind: nothing to read, nothing run', async () => {
    const run = fakeRunner()
    const cluster = PROVIDERS.kind.find('dev', containers) as Cluster
    expect(await PROVIDERS.kind.observe(run, cluster)).toEqual(cluster)
    expect(PROVIDERS.kind.drift(kindConfigOf(), cluster)).toEqual([])
    expect(run.calls).toEqual([])
  })

  test('k3d: k3s’s arguments from each node’s command; a node that cannot be inspected keeps none', async () => {
    const run = fakeRunner([
      on(['docker', 'inspect', '--type', 'container', '--format', '{{json .Config.Cmd}}', 'k3d-dev-server-0'], '["server","--tls-san"]'),
    ])
    const observed = await PROVIDERS.k3d.observe(run, k3dCluster)
    expect(observed.nodes.map((n) => n.args)).toEqual([['server', '--tls-san'], undefined])
    expect(run.changes).toEqual([])
  })
})

/** docker events as kind's nodes start: one line per node container. */
const started = (...nodes: [string, string][]) => ({
  stdout: nodes
    .map(([name, role]) =>
      JSON.stringify({
        Type: 'container',
        Action: 'start',
        Actor: { Attributes: { name, 'io.x-k8s.kind.cluster': 'dev', 'io.x-k8s.kind.role': role } },
      }),
    )
    .join('\n'),
})

describe('create and delete, with the provider’s own CLI', () => {
  test('kind: the rendered config on stdin; a network other than kind only through KIND_EXPERIMENTAL_DOCKER_NETWORK', async () => {
    for (const [config, network] of [
      [kindConfigOf(), undefined],
      [kindConfigOf({ network: 'devnet' }), 'devnet'],
    ] as [Config, string | undefined][]) {
      const run = fakeRunner([on(['docker', 'events'], { stdout: '' })])
      expect(await PROVIDERS.kind.create(run, config, null)).toEqual({ changes: [], routed: [] })
      const call = run.calls.find((c) => c.kind === 'change')
      expect(call?.argv).toEqual(['kind', 'create', 'cluster', '--name', 'dev', '--config', '-'])
      expect(call?.opts?.input).toBe(kindConfig(config))
      expect(call?.opts?.input).toContain('containerdConfigPatches')
      expect(call?.opts?.env?.KIND_EXPERIMENTAL_DOCKER_NETWORK).toBe(network)
    }
  })

  test('kind: an image whose containerd reads certs.d already gets no containerd patch, so kind restarts nothing', async () => {
    const run = fakeRunner([on(['docker', 'events'], { stdout: '' })])
    await PROVIDERS.kind.create(run, kindConfigOf(), { readsCertsD: true })
    const input = run.calls.find((c) => c.argv[0] === 'kind')?.opts?.input
    expect(input).toBe(kindConfig(kindConfigOf(), { configPathPatch: false }))
    expect(input).not.toContain('containerdConfigPatches')
  })

  test('kind: each node gets its hosts.toml files as soon as Docker starts it, while kind goes on; the load balancer none', async () => {
    const config = kindConfigOf({ workers: 1 })
    const run = fakeRunner([
      on(
        ['docker', 'events', '--filter', 'type=container', '--filter', 'event=start', '--filter', 'label=io.x-k8s.kind.cluster=dev'],
        started(['dev-control-plane', 'control-plane'], ['dev-external-load-balancer', 'external-load-balancer'], ['dev-worker', 'worker']),
      ),
    ])
    const { changes: written, routed } = await PROVIDERS.kind.create(run, config, null)
    const execs = run.calls.filter((c) => c.argv[1] === 'exec')
    expect(execs.map((c) => c.argv[2])).toEqual(['dev-control-plane', 'dev-worker'])
    const dirs = [...PROVIDERS.kind.desiredMirrors(config).keys()].map((host) => `${PROVIDERS.kind.certsD}/${host}/hosts.toml`)
    for (const exec of execs) expect(exec.argv.filter((a) => a.endsWith('/hosts.toml'))).toEqual(dirs)
    expect(written).toEqual(['dev-control-plane', 'dev-worker'].flatMap((n) => dirs.map((d) => `${n}: wrote ${d}`)).sort())
    expect(routed).toEqual(['dev-control-plane', 'dev-worker'])
  })

  test('k3d: the registries.yaml written first, then the cluster on the config’s network with its agents and image', async () => {
    const run = fakeRunner()
    const config = k3dConfigOf({ workers: 2, nodeImage: 'rancher/k3s:v1.33.1-k3s1' })
    expect(await PROVIDERS.k3d.create(run, config, null)).toEqual({ changes: [], routed: [] })
    const [write, create] = run.calls
    expect(write.kind).toBe('writeFile')
    expect(write.content).toContain('mirrors:')
    expect(create.argv.slice(0, 12)).toEqual([
      'k3d',
      'cluster',
      'create',
      'dev',
      '--network',
      'k3d-dev',
      '--registry-config',
      write.argv[0],
      '--agents',
      '2',
      '--image',
      'rancher/k3s:v1.33.1-k3s1',
    ])
  })

  test.each([
    ['kind', 'kind delete cluster --name dev'],
    ['k3d', 'k3d cluster delete dev'],
  ] as const)('%s: delete', async (name, line) => {
    const run = fakeRunner()
    await PROVIDERS[name].delete(run, PROVIDERS[name].find('dev', containers) as Cluster)
    expect(run.changes).toEqual([line])
  })
})

describe('whether containerd reads certs.d', () => {
  const dump = (path: string) => nodeOutput({ containerd: { ...containerd23(path), version: 'containerd containerd.io 2.1.9' } })

  test('kind: from the node’s containerd config dump, which the config patch must have reached', () => {
    const check = PROVIDERS.kind.certsDCheck
    const reads = (text: string) => check?.reads(parseNodeOutput('n', text, { containerd: true }))
    expect(reads(dump(PROVIDERS.kind.certsD))).toBe(true)
    expect(reads(dump('/etc/containerd/elsewhere'))).toBe(false)
    expect(reads('')).toBe(false)
    expect(check?.fix).toContain('`just dev-up --recreate`')
  })

  test('k3d: k3s writes containerd’s config itself, so there is nothing to check', () => {
    expect(PROVIDERS.k3d.certsDCheck).toBeUndefined()
  })
})

describe('what the node image brings, before a cluster is made of it', () => {
  const image = 'kindest/node:v1.35.0'
  const id = `sha256:${'ab'.repeat(32)}`
  const env = { HOME: '/home/dev' }
  const config = kindConfigOf({ nodeImage: image })
  const machine = (answer: string) =>
    fakeRunner(
      [
        on(['docker', 'image', 'inspect', '--format', '{{.Id}}', image], id),
        on(['docker', 'run', '--rm', '--pull', 'never', '--network', 'none', '--entrypoint', 'sh', image], answer),
      ],
      { env },
    )
  const runs = (run: ReturnType<typeof fakeRunner>) => run.calls.filter((c) => c.argv[1] === 'run').length

  test('containerd 2.3 without config_path reads certs.d: asked once per image ID, then known from devreg’s state', async () => {
    const run = machine(nodeOutput({ containerd: containerd23('') }))
    expect(await PROVIDERS.kind.nodeImageFacts(run, config)).toEqual({ readsCertsD: true })
    expect(await PROVIDERS.kind.nodeImageFacts(run, config)).toEqual({ readsCertsD: true })
    expect(runs(run)).toBe(1)
    expect(JSON.parse(run.text(nodeImageFactsPath(env, id)) ?? '{}')).toMatchObject({
      image,
      certsD: '/etc/containerd/certs.d:/etc/docker/certs.d',
    })
  })

  test('an older containerd reads certs.d only with the patch', async () => {
    const run = machine(nodeOutput({ containerd: { ...containerd23(''), version: 'containerd containerd.io 1.7.24' } }))
    expect(await PROVIDERS.kind.nodeImageFacts(run, config)).toEqual({ readsCertsD: false })
  })

  test('an image not here, one without containerd, or kind’s default image: nothing known, and nothing pulled', async () => {
    expect(await PROVIDERS.kind.nodeImageFacts(fakeRunner([], { env }), config)).toBeNull()
    const broken = machine('')
    expect(await PROVIDERS.kind.nodeImageFacts(broken, config)).toBeNull()
    expect(broken.text(nodeImageFactsPath(env, id))).toBeNull()
    const none = fakeRunner()
    expect(await PROVIDERS.kind.nodeImageFacts(none, kindConfigOf())).toBeNull()
    expect(none.calls).toEqual([])
    expect(await PROVIDERS.k3d.nodeImageFacts(none, k3dConfigOf())).toBeNull()
  })
})

describe('the KEP-1755 fields each provider publishes', () => {
  test.each([
    ['kind', kindConfigOf(), { help: 'https://kind.sigs.k8s.io/docs/user/local-registry/' }],
    [
      'k3d',
      k3dConfigOf(),
      { hostFromContainerRuntime: 'kind-registry:5000', help: 'https://k3d.io/stable/usage/registries/#using-a-local-registry' },
    ],
  ] as const)('%s', (name, config, own) => {
    expect(PROVIDERS[name].localRegistryHosting(config)).toEqual({
      host: 'localhost:5001',
      hostFromClusterNetwork: 'kind-registry.devreg.svc.cluster.local:5000',
      ...own,
    })
  })
})

describe('hostname aliases in pods', () => {
  const GET = ['kubectl', '--context', 'k3d-dev', 'get', 'configmap', 'coredns-custom', '-n', 'kube-system', '-o', 'json']
  const notThere = on(GET, { exitCode: 1, stderr: 'Error from server (NotFound): configmaps "coredns-custom" not found' })
  const holding = (data: Record<string, string>) => on(GET, JSON.stringify({ data }))
  const aliased = k3dConfigOf({}, { aliases: ['registry.dev.local'] })
  const OVERRIDE = 'devreg.override'

  test('kind: no hook, so nothing is run or removed; dev-up says pods use the Service instead', async () => {
    const run = fakeRunner()
    let said = ''
    const write = process.stderr.write
    process.stderr.write = ((chunk: string) => {
      said += chunk
      return true
    }) as typeof process.stderr.write
    try {
      expect(await PROVIDERS.kind.ensurePodAliases(run, resolveConfig({ aliases: ['registry.dev.local'] }))).toEqual([])
    } finally {
      process.stderr.write = write
    }
    expect(said).toContain('registry.dev.local resolves on the nodes only')
    expect(said).toContain('pods use kind-registry.devreg.svc.cluster.local:5000')
    expect(await PROVIDERS.kind.removePodAliases(run, kindConfigOf())).toEqual([])
    expect(run.calls).toEqual([])
  })

  test('k3d without an alias and without coredns-custom: nothing changes', async () => {
    const run = fakeRunner([notThere])
    expect(await PROVIDERS.k3d.ensurePodAliases(run, k3dConfigOf())).toEqual([])
    expect(run.changes).toEqual([])
  })

  test('k3d with an alias and no coredns-custom: the ConfigMap is created with devreg’s key', async () => {
    const run = fakeRunner([notThere])
    expect(await PROVIDERS.k3d.ensurePodAliases(run, aliased)).toEqual([
      "created kube-system/coredns-custom with devreg.override (hostname aliases resolve to the local registry's Service in pods)",
    ])
    const apply = run.calls.find((c) => c.kind === 'change')
    expect(apply?.line).toBe('kubectl --context k3d-dev apply -f -')
    const manifest = JSON.parse(apply?.opts?.input as string)
    expect(manifest.metadata).toEqual({ name: 'coredns-custom', namespace: 'kube-system' })
    expect(manifest.data[OVERRIDE]).toContain('rewrite name exact registry.dev.local kind-registry.devreg.svc.cluster.local')
  })

  test('k3d with coredns-custom holding others’ keys: devreg’s key alone is merge-patched in, and out when the alias goes', async () => {
    const stale = fakeRunner([holding({ 'mine.override': 'log', [OVERRIDE]: 'old' })])
    expect(await PROVIDERS.k3d.ensurePodAliases(stale, aliased)).toEqual([`rewrote ${OVERRIDE} in kube-system/coredns-custom`])
    const patch = stale.calls.find((c) => c.kind === 'change')?.argv ?? []
    expect(patch.slice(3, 10)).toEqual(['patch', 'configmap', 'coredns-custom', '-n', 'kube-system', '--type', 'merge'])
    expect(Object.keys(JSON.parse(patch[11]).data)).toEqual([OVERRIDE])

    const gone = fakeRunner([holding({ 'mine.override': 'log', [OVERRIDE]: 'old' })])
    expect(await PROVIDERS.k3d.ensurePodAliases(gone, k3dConfigOf())).toEqual([
      `removed ${OVERRIDE} from kube-system/coredns-custom (no hostname alias)`,
    ])
    expect(JSON.parse(gone.calls.find((c) => c.kind === 'change')?.argv[11] as string)).toEqual({ data: { [OVERRIDE]: null } })
  })

  test('k3d removal: the ConfigMap goes when devreg’s key was all of it, else only the key; nothing without the key', async () => {
    const alone = fakeRunner([holding({ [OVERRIDE]: 'x' })])
    expect(await PROVIDERS.k3d.removePodAliases(alone, aliased)).toEqual([`${OVERRIDE} of kube-system/coredns-custom`])
    expect(alone.changes).toEqual(['kubectl --context k3d-dev delete configmap coredns-custom -n kube-system'])

    const shared = fakeRunner([holding({ 'mine.override': 'log', [OVERRIDE]: 'x' })])
    await PROVIDERS.k3d.removePodAliases(shared, aliased)
    expect(shared.changes).toHaveLength(1)
    expect(shared.changes[0]).toContain('patch configmap coredns-custom -n kube-system --type merge')

    const without = fakeRunner([holding({ 'mine.override': 'log' })])
    expect(await PROVIDERS.k3d.removePodAliases(without, aliased)).toEqual([])
    expect(without.changes).toEqual([])
  })

  test('k3d: an unreadable coredns-custom is an error naming it', async () => {
    const run = fakeRunner([on(GET, { exitCode: 1, stderr: 'Unable to connect to the server' })])
    await expect(PROVIDERS.k3d.ensurePodAliases(run, aliased)).rejects.toThrow(
      'cannot read kube-system/coredns-custom: Unable to connect to the server',
    )
  })
})

describe('routing words', () => {
  test('kind owns only the hosts.toml files it wrote; every k3d registries.yaml entry is devreg’s', () => {
    expect(PROVIDERS.kind.routing.ownEntry('server = "https://corp.example"\n')).toBe(false)
    expect(PROVIDERS.k3d.routing.ownEntry('{"endpoint":["x"]}')).toBe(true)
  })
})
