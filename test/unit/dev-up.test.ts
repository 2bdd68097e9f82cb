// dev-up's phases against a fake runner: what it runs on a live cluster that
// already matches the config, on none, and on one that drifted.
import { describe, expect, test } from 'bun:test'
import { up } from '../../scripts/dev-up.ts'
import { resolveConfig } from '../../scripts/lib/config.ts'
import { LABEL } from '../../scripts/lib/labels.ts'
import { CERTS_D, kindHostsFiles } from '../../scripts/lib/providers/kind.ts'
import { registryContainer } from '../../scripts/lib/registry-containers.ts'
import { kindConfig } from '../../scripts/lib/render.ts'
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
const hostsFiles = [...kindHostsFiles(config)].map(([dir, content]) => `\x1e${dir}\n${content}`).join('')

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
    `[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '${CERTS_D}'\n`,
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
    expect(args.filter((_, i) => i % 3 === 1)).toEqual([...kindHostsFiles(config).keys()].map((dir) => `${dir}/hosts.toml`))
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
})
