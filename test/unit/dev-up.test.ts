// dev-up's phases against a fake runner: what it runs on a live cluster that
// already matches the config, on none, and on one that drifted.
import { describe, expect, test } from 'bun:test'
import { up } from '../../scripts/dev-up.ts'
import { PROVIDERS } from '../../scripts/lib/cluster/providers/index.ts'
import { kindConfig } from '../../scripts/lib/cluster/render.ts'
import { probeImage, targets } from '../../scripts/lib/cluster/verify.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { LABEL } from '../../scripts/lib/core/labels.ts'
import { registryContainer } from '../../scripts/lib/registries/registry-containers.ts'
import { fakeRunner, type HttpReply, on, type Reply, v2Up } from '../kit/fake-runner.ts'
import { privateLockDir } from '../kit/lock-dir.ts'
import { containerd23, nodeOutput } from '../kit/node-output.ts'

const config = resolveConfig({ cluster: { name: 'dev' }, mirrors: [{ host: 'docker.io' }] })

const psLine = (name: string, labels: Record<string, string>, extra: Record<string, string> = {}) =>
  JSON.stringify({
    ID: name,
    Names: name,
    State: 'running',
    Labels: Object.entries(labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    Networks: 'kind',
    Ports: '',
    Image: 'registry:3',
    ...extra,
  })
const registries = config.registries.map((r) =>
  psLine(r.name, { [LABEL.managed]: 'true', [LABEL.hash]: registryContainer(r).hash }, { Ports: `${r.address.publish}->5000/tcp` }),
)
const node = (workers = 0) => [
  psLine('dev-control-plane', { 'io.x-k8s.kind.cluster': 'dev', 'io.x-k8s.kind.role': 'control-plane' }, { Image: 'kindest/node:v1.33.1' }),
  ...Array.from({ length: workers }, (_, i) =>
    psLine(`dev-worker${i || ''}`, { 'io.x-k8s.kind.cluster': 'dev', 'io.x-k8s.kind.role': 'worker' }, { Image: 'kindest/node:v1.33.1' }),
  ),
]
const { certsD } = PROVIDERS.kind
/** Each host's hosts.toml as dev-up writes it, by certs.d directory. */
const hostsTomls = [...PROVIDERS.kind.desiredMirrors(config)].map(([host, content]) => [`${certsD}/${host}`, content] as [string, string])
/** The node's clock before verify's pulls, as observe-node.sh prints it. */
const SINCE = '1735689600.000000001'
/** A kind node as its one exec reads it: every hosts.toml in place, containerd 2.3; verify's pulls all answered, unless held back. */
const nodeAnswer = (argv: string[], pulling = true) => {
  const refs = argv.includes('pull') && pulling ? argv.slice(argv.indexOf('pull') + 2) : []
  const pulls = Object.fromEntries(refs.map((ref) => [ref, { rc: 0, out: 'Image is up to date' }]))
  return nodeOutput({ hosts: hostsTomls, containerd: containerd23(''), env: {}, ...(refs.length ? { since: SINCE, pulls } : {}) })
}
const nodeExec = on(['docker', 'exec', /./, 'sh', '-c', /observe-node/, 'observe-node'], (argv) => nodeAnswer(argv))
/** The same exec with its pulls behind a gate: they run when its stdin says go. */
const gatedNodeExec = on(['docker', 'exec', '-i', /./, 'sh', '-c', /observe-node/, 'observe-node'], (argv) => ({
  stdout: (stdin: Buffer) => nodeAnswer(argv, stdin.toString() === 'go\n'),
}))
/** The node each observe-node exec ran in. */
const execNode = (argv: string[]) => argv[argv.indexOf('sh') - 1]

/** A machine with the registries up (answering GET /v2/) and kind, kubectl and a cluster network there; `ps` is what docker ps lists. */
const machine = (...ps: Reply[]): (Reply | HttpReply)[] => [
  ...ps,
  ...config.registries.map((r) => v2Up(r.address.url)),
  on(['sh', '-c', 'command -v "$1"'], '/usr/bin/tool'),
  on(
    ['docker', 'network', 'inspect', '--format', '{{json .Containers}}'],
    JSON.stringify(
      Object.fromEntries([
        ...config.registries.map((r, i) => [r.name, { Name: r.name, IPv4Address: `172.18.0.${i + 2}/16` }]),
        // Every node at the address the registries' logs show (verifyReplies).
        ...['dev-control-plane', 'dev-worker'].map((n) => [n, { Name: n, IPv4Address: '172.18.0.9/16' }]),
      ]),
    ),
  ),
  nodeExec,
  gatedNodeExec,
  on(['docker', 'events'], { stdout: '' }),
  on(['kubectl', '--context', 'kind-dev', 'apply'], 'configmap/local-registry-hosting unchanged\nnamespace/devreg unchanged\n'),
]
/** One apply for the ConfigMap and the objects in namespace devreg, one wait. */
const kubectlLines = [
  'kubectl --context kind-dev apply --validate=false --openapi-patch=false -f -',
  `kubectl --context kind-dev wait --for=condition=Ready nodes --all --timeout=${config.cluster.waitTimeout}`,
]
const sorted = (lines: string[]) => [...lines].sort()
/** A node as `kubectl get nodes -o json` lists it once its kubelet says Ready. */
const readyNode = { status: { conditions: [{ type: 'Ready', status: 'True' }] } }
/** What verify reads besides the nodes: the probe image in each registry, the nodes' addresses, every probe in the logs. */
const verifyReplies = [
  on(['docker', 'cp', /^kind-.*:\/var\/lib\/registry\//, '-'], 'tar'),
  on(['docker', 'inspect', '--type', 'container'], (argv) =>
    argv
      .slice(6)
      .map((n) => `/${n} ${JSON.stringify({ kind: { IPAddress: '172.18.0.9' } })}`)
      .join('\n'),
  ),
  on(['docker', 'logs', '--since', SINCE], (argv) =>
    targets(config)
      .filter((t) => t.first === argv.at(-1))
      .map(
        (t) =>
          `level=info msg="response completed" http.request.host="${t.first}:5000" http.request.method=HEAD http.request.remoteaddr="172.18.0.9:40000" http.request.uri="/v2/devreg-probe/verify/manifests/${probeImage().digest}?ns=${t.domain}" http.response.status=200`,
      )
      .join('\n'),
  ),
]
/** docker events as a kind node starts. */
const started = (name: string) => JSON.stringify({ Actor: { Attributes: { name, 'io.x-k8s.kind.role': 'control-plane' } } })

describe('dev-up', () => {
  const { env } = privateLockDir()

  test('on a live cluster that matches the config, it changes nothing: only kubectl re-applies and waits', async () => {
    const run = fakeRunner(machine(on(['docker', 'ps'], [...registries, ...node()].join('\n'))))
    const summary = await up(run, config, { verify: false })
    expect(summary.changes).toEqual([])
    expect(summary.created).toBe(false)
    expect(sorted(run.changes)).toEqual(sorted(kubectlLines))
  })

  test('a no-op with verify: each read once and at once, one exec per node with verify’s pulls in it, one log read per registry', async () => {
    const cache = config.registries[1]
    const run = fakeRunner([
      ...machine(on(['docker', 'ps'], [...registries, ...node(1)].join('\n'))),
      ...verifyReplies,
      on(['kubectl', '--context', 'kind-dev', 'get', 'nodes', '-o', 'json'], JSON.stringify({ items: [readyNode, readyNode] })),
    ])
    const summary = await up(run, config)
    expect(summary.changes).toEqual([])
    expect(summary.verify).toEqual({ pass: 6, fail: 0, skip: 0 })
    // Every node Ready at the first read: nothing to wait for.
    expect(run.changes).toEqual([kubectlLines[0]])
    const argvs = run.calls.map((c) => c.argv)
    const count = (...prefix: string[]) => argvs.filter((a) => prefix.every((p, i) => a[i] === p)).length
    // Docker's listing and the network once; every registry answers /v2/ and holds the probe image.
    expect([count('docker', 'ps'), count('docker', 'network', 'inspect')]).toEqual([1, 1])
    expect(run.calls.filter((c) => c.kind === 'http').map((c) => c.line)).toEqual(config.registries.map((r) => `GET ${r.address.url}/v2/`))
    expect(argvs.filter((a) => a[1] === 'cp').map((a) => a[2].split(':')[0])).toEqual(config.registries.map((r) => r.name))
    // One exec per node: its hosts.toml files, containerd's version and config, its proxy variables and every probe pull.
    const execs = argvs.filter((a) => a.includes('observe-node'))
    expect(execs.map(execNode)).toEqual(['dev-control-plane', 'dev-worker'])
    for (const a of execs)
      expect(a.slice(a.indexOf('observe-node') + 1, a.indexOf('pull') + 2)).toEqual([
        'hosts',
        certsD,
        'containerd',
        'env',
        'gate',
        'pull',
        '5',
      ])
    // Each exec read at once; its pulls went once the probe image was known to be in every registry.
    expect(run.calls.filter((c) => c.argv.includes('observe-node')).map((c) => c.stdin?.toString())).toEqual(['go\n', 'go\n'])
    expect(execs[0].filter((x) => x.includes('@sha256:'))).toEqual(
      targets(config).map((t) => `${t.domain}/devreg-probe/verify@${probeImage().digest}`),
    )
    // One log read per registry, from the nodes' clock at the pulls on; the nodes' addresses from the one network listing;
    // nothing else asks the nodes or the registries.
    expect(argvs.filter((a) => a[1] === 'logs').map((a) => a.at(-1))).toEqual([config.registries[0].name, cache.name])
    expect(argvs.filter((a) => a[1] === 'inspect')).toEqual([])
    expect(count('docker', 'exec')).toBe(execs.length)
    expect(argvs.filter((a) => a[0] === 'kubectl').map((a) => a[3])).toEqual(['apply', 'get'])
  })

  test('nodes not all Ready at the first read are waited for, within cluster.waitTimeout', async () => {
    const notReady = { status: { conditions: [{ type: 'Ready', status: 'False' }] } }
    const run = fakeRunner([
      ...machine(on(['docker', 'ps'], [...registries, ...node(1)].join('\n'))),
      on(['kubectl', '--context', 'kind-dev', 'get', 'nodes', '-o', 'json'], JSON.stringify({ items: [readyNode, notReady] })),
    ])
    await up(run, config, { verify: false })
    expect(sorted(run.changes)).toEqual(sorted(kubectlLines))
  })

  test('a probe image that cannot be placed holds back every pull: dev-up fails saying why, and no node pulled', async () => {
    const run = fakeRunner([...machine(on(['docker', 'ps'], [...registries, ...node()].join('\n'))), ...verifyReplies], { env: env() })
    run.reply(
      on(['docker', 'cp', new RegExp(`^${config.registries[1].name}:`), '-'], { exitCode: 1, stderr: 'Could not find the file' }),
      on(['docker', 'create'], { exitCode: 1, stderr: 'Error response from daemon: no space left on device' }),
    )
    await expect(up(run, config)).rejects.toThrow('no space left on device')
    const execs = run.calls.filter((c) => c.argv.includes('observe-node'))
    expect(execs.map((c) => c.stdin?.toString())).toEqual(['stop\n'])
    expect(run.calls.some((c) => c.argv[1] === 'logs')).toBe(false)
  })

  test('without a cluster, it creates one from the rendered kind config, writing every hosts.toml into its node as Docker starts it', async () => {
    const run = fakeRunner(
      machine(on(['docker', 'ps'], registries.join('\n'), 1), on(['docker', 'ps'], [...registries, ...node()].join('\n'))),
    )
    run.reply(on(['docker', 'events'], { stdout: `${started('dev-control-plane')}\n` }))
    const summary = await up(run, config, { verify: false })
    expect(summary.created).toBe(true)
    const create = run.calls.find((c) => c.argv[0] === 'kind')
    expect(create?.argv).toEqual(['kind', 'create', 'cluster', '--name', 'dev', '--config', '-'])
    expect(create?.opts?.input).toBe(kindConfig(config))
    const [first, ...rest] = run.calls.filter((c) => c.kind === 'change')
    expect(first.line).toBe('kind create cluster --name dev --config -')
    const writes = rest.filter((c) => c.argv.includes('node-files'))
    expect(writes.map((c) => c.argv[2])).toEqual(['dev-control-plane'])
    const args = writes[0].argv.slice(writes[0].argv.indexOf('node-files') + 1)
    expect(args.filter((_, i) => i % 3 === 1)).toEqual(hostsTomls.map(([dir]) => `${dir}/hosts.toml`))
    // After create, the node's one exec finds them in place: nothing written twice.
    expect(sorted(rest.filter((c) => !c.argv.includes('node-files')).map((c) => c.line))).toEqual(sorted(kubectlLines))
    expect(summary.changes).toEqual([
      'created kind cluster dev',
      ...hostsTomls.map(([dir]) => `dev-control-plane: wrote ${dir}/hosts.toml`).sort(),
    ])
  })

  test('a new cluster whose nodes were routed as they booted: one exec per node after create, verify’s pulls in it', async () => {
    const run = fakeRunner([
      ...machine(on(['docker', 'ps'], registries.join('\n'), 1), on(['docker', 'ps'], [...registries, ...node()].join('\n'))),
      ...verifyReplies,
    ])
    run.reply(on(['docker', 'events'], { stdout: `${started('dev-control-plane')}\n` }))
    const summary = await up(run, config)
    expect(summary.verify).toEqual({ pass: 3, fail: 0, skip: 0 })
    const execs = run.calls.filter((c) => c.argv.includes('observe-node')).map((c) => c.argv)
    expect(execs).toHaveLength(1)
    expect(execs[0]).toContain('pull')
  })

  test('a node the boot-time watch missed is routed after create, and verify pulls in an exec of its own after that', async () => {
    const run = fakeRunner([
      ...machine(on(['docker', 'ps'], registries.join('\n'), 1), on(['docker', 'ps'], [...registries, ...node()].join('\n'))),
      ...verifyReplies,
    ])
    // Before the mirrors phase writes them, the node has no hosts.toml at all.
    run.reply(
      on(
        ['docker', 'exec', /./, 'sh', '-c', /observe-node/, 'observe-node', 'hosts', certsD, 'containerd'],
        nodeOutput({ containerd: containerd23('') }),
        1,
      ),
    )
    const summary = await up(run, config)
    expect(summary.verify).toEqual({ pass: 3, fail: 0, skip: 0 })
    const lines = run.calls.map((c) =>
      c.argv.includes('observe-node') ? `exec${c.argv.includes('pull') ? ' pull' : ''}` : c.argv.includes('node-files') ? 'write' : '',
    )
    expect(lines.filter(Boolean)).toEqual(['exec', 'write', 'exec pull'])
  })

  test('a node image whose containerd reads certs.d already is known before create, and kind gets no containerd patch', async () => {
    const image = 'kindest/node:v1.35.0'
    const withImage = resolveConfig({ cluster: { name: 'dev', nodeImage: image }, mirrors: [{ host: 'docker.io' }] })
    const run = fakeRunner(
      [
        ...machine(on(['docker', 'ps'], registries.join('\n'), 1), on(['docker', 'ps'], [...registries, ...node()].join('\n'))),
        on(['docker', 'image', 'inspect', '--format', '{{.Id}}', image], `sha256:${'cd'.repeat(32)}`),
        on(['docker', 'run', '--rm', '--pull', 'never'], nodeOutput({ containerd: containerd23('') })),
      ],
      { env: { HOME: '/home/dev' } },
    )
    await up(run, withImage, { verify: false })
    const lines = run.calls.map((c) => c.line)
    expect(lines.findIndex((l) => l.startsWith('docker run --rm'))).toBeLessThan(lines.findIndex((l) => l.startsWith('kind create')))
    expect(run.calls.find((c) => c.argv[0] === 'kind')?.opts?.input).toBe(kindConfig(withImage, { configPathPatch: false }))
  })

  test('with --recreate, a cluster with other nodes than the config is deleted and created again', async () => {
    const run = fakeRunner(
      machine(on(['docker', 'ps'], [...registries, ...node(1)].join('\n'), 1), on(['docker', 'ps'], [...registries, ...node()].join('\n'))),
    )
    const summary = await up(run, config, { verify: false, recreate: true })
    expect(summary.drift).toEqual(['it has 1 worker nodes, the config 0'])
    expect(run.changes.slice(0, 2)).toEqual(['kind delete cluster --name dev', 'kind create cluster --name dev --config -'])
  })

  test('k3d without a network: the network and registries come first, k3d creates the cluster routed, and no node file is touched after', async () => {
    const k3d = resolveConfig({
      cluster: { provider: 'k3d', name: 'dev' },
      mirrors: [{ host: 'docker.io' }],
      aliases: ['registry.dev.local'],
    })
    const on3d = (Networks: string) =>
      k3d.registries.map((r) => psLine(r.name, { [LABEL.managed]: 'true', [LABEL.hash]: registryContainer(r).hash }, { Networks }))
    const server = psLine('k3d-dev-server-0', { app: 'k3d', 'k3d.cluster': 'dev', 'k3d.role': 'server' }, { Image: 'rancher/k3s' })
    const run = fakeRunner([
      on(['docker', 'ps'], on3d('bridge').join('\n'), 1),
      on(['docker', 'ps'], [...on3d('bridge,k3d-dev'), server].join('\n')),
      on(['docker', 'network', 'inspect'], { exitCode: 1, stderr: 'Error response from daemon: network k3d-dev not found' }, 1),
      on(['sh', '-c', 'command -v "$1"'], '/usr/bin/tool'),
      on(
        ['docker', 'network', 'inspect', '--format', '{{json .Containers}}'],
        JSON.stringify(Object.fromEntries(k3d.registries.map((r, i) => [r.name, { Name: r.name, IPv4Address: `172.19.0.${i + 2}/16` }]))),
      ),
      on(['kubectl', '--context', 'k3d-dev', 'get', 'configmap'], { exitCode: 1, stderr: 'Error from server (NotFound): configmaps' }),
      ...k3d.registries.map((r) => v2Up(r.address.url)),
    ])
    const summary = await up(run, k3d, { verify: false })
    expect(summary.created).toBe(true)
    expect(run.calls.filter((c) => c.argv[0] === 'sh').map((c) => c.argv.at(-1))).toEqual(['k3d', 'kubectl'])
    const create = run.changes.findIndex((l) => l.startsWith('k3d cluster create dev --network k3d-dev --registry-config '))
    expect(run.changes.slice(0, create)).toEqual([
      'docker network create --label devreg.managed=true k3d-dev',
      'docker network connect k3d-dev kind-registry',
      'docker network connect k3d-dev kind-cache-docker-io',
      `# write ${run.changes[create].split(' ')[7]}`,
    ])
    expect(run.calls.filter((c) => c.argv[0] === 'docker' && c.argv[1] === 'exec')).toEqual([])
    expect(run.changes.filter((l) => l.startsWith('docker network connect'))).toHaveLength(2)
    expect(summary.changes).toEqual([
      'attached 2 registries to network k3d-dev',
      'created k3d cluster dev',
      "created kube-system/coredns-custom with devreg.override (hostname aliases resolve to the local registry's Service in pods)",
    ])
  })

  test('k3d: a live cluster whose registries.yaml differs is restarted before anything is applied in it or waited for', async () => {
    const k3d = resolveConfig({ cluster: { provider: 'k3d', name: 'dev' }, mirrors: [{ host: 'docker.io' }] })
    const ps = [
      ...k3d.registries.map((r) =>
        psLine(r.name, { [LABEL.managed]: 'true', [LABEL.hash]: registryContainer(r).hash }, { Networks: 'bridge,k3d-dev' }),
      ),
      psLine('k3d-dev-server-0', { app: 'k3d', 'k3d.cluster': 'dev', 'k3d.role': 'server' }, { Image: 'rancher/k3s' }),
    ]
    const run = fakeRunner([
      on(['docker', 'ps'], ps.join('\n')),
      on(
        ['docker', 'network', 'inspect', '--format', '{{json .Containers}}'],
        JSON.stringify(Object.fromEntries(k3d.registries.map((r, i) => [r.name, { Name: r.name, IPv4Address: `172.19.0.${i + 2}/16` }]))),
      ),
      on(['docker', 'inspect', '--type', 'container', '--format', '{{json .Config.Cmd}}'], '["server"]'),
      on(['sh', '-c', 'command -v "$1"'], '/usr/bin/tool'),
      on(['docker', 'exec', 'k3d-dev-server-0', 'sh'], nodeOutput({ files: { '/etc/rancher/k3s/registries.yaml': 'mirrors: {}\n' } })),
      on(['kubectl', '--context', 'k3d-dev', 'get', 'configmap'], { exitCode: 1, stderr: 'Error from server (NotFound): configmaps' }),
      ...k3d.registries.map((r) => v2Up(r.address.url)),
    ])
    const summary = await up(run, k3d, { verify: false })
    expect(summary.changes[0]).toContain('restarted them (k3s reads it only at start)')
    const lines = run.changes.filter((l) => !l.startsWith('# write') && !l.startsWith('docker exec'))
    expect(lines.slice(0, 2)).toEqual(['k3d cluster stop dev', 'k3d cluster start dev'])
    expect(sorted(lines.slice(2))).toEqual(
      sorted([
        'kubectl --context k3d-dev apply --validate=false --openapi-patch=false -f -',
        `kubectl --context k3d-dev wait --for=condition=Ready nodes --all --timeout=${k3d.cluster.waitTimeout}`,
      ]),
    )
  })
})
