// dev-up's phases against a fake runner: what it runs on a live cluster that
// already matches the config, on none, and on one that drifted.
import { describe, expect, test } from 'bun:test'
import { up } from '../../scripts/dev-up.ts'
import { PROVIDERS } from '../../scripts/lib/cluster/providers/index.ts'
import { kindConfig } from '../../scripts/lib/cluster/render.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { LABEL } from '../../scripts/lib/core/labels.ts'
import { registryContainer } from '../../scripts/lib/registries/registry-containers.ts'
import { fakeRunner, type HttpReply, on, type Reply, v2Up } from '../kit/fake-runner.ts'

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
const hostsTomls = [...PROVIDERS.kind.desiredMirrors(config)].map(([host, content]) => [`${certsD}/${host}`, content])
const hostsFiles = hostsTomls.map(([dir, content]) => `\x1e${dir}\n${content}`).join('')

/** A machine with the registries up (answering GET /v2/) and kind, kubectl and a cluster network there; `ps` is what docker ps lists. */
const machine = (...ps: Reply[]): (Reply | HttpReply)[] => [
  ...ps,
  ...config.registries.map((r) => v2Up(r.address.url)),
  on(['sh', '-c', 'command -v "$1"'], '/usr/bin/tool'),
  on(['docker', 'network', 'inspect', '--format', '{{.Name}}'], 'kind'),
  on(
    ['docker', 'network', 'inspect', '--format', '{{json .Containers}}'],
    JSON.stringify(Object.fromEntries(config.registries.map((r, i) => [r.name, { Name: r.name, IPv4Address: `172.18.0.${i + 2}/16` }]))),
  ),
  on(['docker', 'exec', /./, 'sh', '-c'], hostsFiles),
  on(
    ['docker', 'exec', /./, 'containerd', 'config', 'dump'],
    `[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '${certsD}'\n`,
  ),
  on(['kubectl', '--context', 'kind-dev', 'apply'], (_argv, opts) =>
    opts?.input?.includes('local-registry-hosting') ? 'configmap/local-registry-hosting unchanged' : 'namespace/devreg unchanged',
  ),
]
const kubectlLines = [
  'kubectl --context kind-dev apply -f -',
  'kubectl --context kind-dev apply -f -',
  `kubectl --context kind-dev wait --for=condition=Ready nodes --all --timeout=${config.cluster.waitTimeout}`,
]

describe('dev-up', () => {
  test('on a live cluster that matches the config, it changes nothing: only kubectl re-applies and waits', async () => {
    const run = fakeRunner(machine(on(['docker', 'ps'], [...registries, ...node()].join('\n'))))
    const summary = await up(run, config, { verify: false })
    expect(summary.changes).toEqual([])
    expect(summary.created).toBe(false)
    expect(run.changes).toEqual(kubectlLines)
  })

  test('without a cluster, it creates one from the rendered kind config, then writes every hosts.toml into its node in one exec', async () => {
    const run = fakeRunner(
      machine(on(['docker', 'ps'], registries.join('\n'), 1), on(['docker', 'ps'], [...registries, ...node()].join('\n'))),
    )
    run.reply(on(['docker', 'exec', /./, 'sh', '-c', /read-hosts-files|for f/], ''))
    const summary = await up(run, config, { verify: false })
    expect(summary.created).toBe(true)
    const create = run.calls.find((c) => c.argv[0] === 'kind')
    expect(create?.argv).toEqual(['kind', 'create', 'cluster', '--name', 'dev', '--config', '-'])
    expect(create?.opts?.input).toBe(kindConfig(config))
    const [first, write, ...rest] = run.calls.filter((c) => c.kind === 'change')
    expect(first.line).toBe('kind create cluster --name dev --config -')
    expect(write.argv.slice(0, 4)).toEqual(['docker', 'exec', 'dev-control-plane', 'sh'])
    const args = write.argv.slice(write.argv.indexOf('node-files') + 1)
    expect(args.filter((_, i) => i % 3 === 1)).toEqual(hostsTomls.map(([dir]) => `${dir}/hosts.toml`))
    expect(rest.map((c) => c.line)).toEqual(kubectlLines)
    expect(summary.changes).toContain('created kind cluster dev')
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
    const on3d = k3d.registries.map((r) =>
      psLine(r.name, { [LABEL.managed]: 'true', [LABEL.hash]: registryContainer(r).hash }, { Networks: 'bridge' }),
    )
    const server = psLine('k3d-dev-server-0', { app: 'k3d', 'k3d.cluster': 'dev', 'k3d.role': 'server' }, { Image: 'rancher/k3s' })
    const run = fakeRunner([
      on(['docker', 'ps'], on3d.join('\n'), 1),
      on(['docker', 'ps'], [...on3d, server].join('\n')),
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
    expect(summary.changes).toEqual([
      'created k3d cluster dev',
      'attached 2 registries to network k3d-dev',
      "created kube-system/coredns-custom with devreg.override (hostname aliases resolve to the local registry's Service in pods)",
    ])
  })
})
