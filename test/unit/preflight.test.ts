// preflight's judgement without Docker: which names a run checks, the verdict
// and fix for what was observed, and the report.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import type { Lookup } from '../../scripts/lib/machine/dns.ts'
import { parseResolved } from '../../scripts/lib/machine/dns.ts'
import { DOCKER_CERTS_D, hostMirrorFiles } from '../../scripts/lib/machine/host-engine.ts'
import {
  type Check,
  desiredMirrors,
  type NodeView,
  type Observed,
  observe,
  parseV2Output,
  selectTargets,
} from '../../scripts/lib/machine/preflight.ts'
import { evaluate, renderReport } from '../../scripts/lib/machine/preflight-verdicts.ts'
import type { V2Answer } from '../../scripts/lib/registries/distribution.ts'
import { fakeRunner, on, v2Up } from '../kit/fake-runner.ts'

const config = resolveConfig({
  mirrors: [{ host: 'docker.io' }],
  aliases: ['registry.dev.local'],
  hosts: [
    { name: 'registry.dev.local', address: '127.0.0.1' },
    { name: 'api.dev.local', address: '10.0.0.5' },
  ],
})
const OK: V2Answer = { ok: true, status: 200, apiVersion: 'registry/2.0', error: null }
const found = (...addresses: string[]): Lookup => ({ addresses, error: null })
const node = (over: Partial<NodeView> = {}): NodeView => ({
  name: 'dev-control-plane',
  running: true,
  resolve: {
    resolved: new Map([
      ['registry.dev.local', found('172.18.0.2')],
      ['api.dev.local', found('10.0.0.5')],
      ['kind-registry', found('172.18.0.2')],
      ['kind-cache-docker-io', found('172.18.0.3')],
    ]),
    error: null,
  },
  v2: new Map([
    ['kind-registry', OK],
    ['kind-cache-docker-io', OK],
  ]),
  mirrors: desiredMirrors(config),
  readsCertsD: true,
  ...over,
})
/** Everything healthy; each test breaks one thing. */
const observed = (over: Partial<Observed> = {}): Observed => ({
  hostsFile: { path: '/etc/hosts', entries: [] },
  onHost: new Map([
    ['registry.dev.local', found('127.0.0.1')],
    ['api.dev.local', found('10.0.0.5')],
  ]),
  v2: new Map([
    ['kind-registry', OK],
    ['kind-cache-docker-io', OK],
  ]),
  states: new Map([
    ['kind-registry', 'running'],
    ['kind-cache-docker-io', 'running'],
  ]),
  daemonMirrors: ['http://localhost:5101/'],
  network: {
    name: 'kind',
    exists: true,
    addresses: new Map([
      ['kind-registry', '172.18.0.2'],
      ['kind-cache-docker-io', '172.18.0.3'],
    ]),
  },
  inNetwork: { resolved: node().resolve.resolved, error: null },
  image: 'registry:2',
  cluster: { provider: 'kind', name: 'dev', found: true },
  nodes: [node()],
  ...over,
})
const all = selectTargets(config, [])
const judge = (obs: Observed, sel = all) => {
  const checks = evaluate(config, sel, obs)
  return (check: string, subject: string, place: string) =>
    checks.find((c) => c.check === check && c.subject === subject && c.place === place) as Check
}

describe('selectTargets', () => {
  test('no names: every host, registry and registry host', () => {
    expect(all.hosts.map((h) => h.name)).toEqual(['registry.dev.local', 'api.dev.local'])
    expect(all.registries.map((r) => r.name)).toEqual(['kind-registry', 'kind-cache-docker-io'])
    expect(all.routes).toEqual(['localhost:5001', 'kind-registry:5000', 'docker.io', 'registry.dev.local'])
  })

  test('a name selects what it names: a hosts entry, a registry by container or upstream host, a mirror host with or without port', () => {
    const sel = selectTargets(config, ['docker.io', 'kind-registry'])
    expect(sel.hosts).toEqual([])
    expect(sel.registries.map((r) => r.name)).toEqual(['kind-registry', 'kind-cache-docker-io'])
    expect(sel.routes).toEqual(['kind-registry:5000', 'docker.io'])
    expect(selectTargets(config, ['registry.dev.local']).hosts.map((h) => h.name)).toEqual(['registry.dev.local'])
  })

  test('an unknown name is a usage error listing the names there are', () => {
    expect(() => selectTargets(config, ['regsitry.dev.local'])).toThrow(
      'regsitry.dev.local: not in the config; name one of registry.dev.local, api.dev.local, kind-registry, kind-cache-docker-io, localhost:5001',
    )
    let error: unknown
    try {
      selectTargets(config, ['x'])
    } catch (err) {
      error = err
    }
    expect((error as { exitCode?: number } | undefined)?.exitCode).toBe(2)
  })
})

describe('evaluate', () => {
  test('a healthy setup: nothing fails', () => {
    const checks = evaluate(config, all, observed())
    expect(checks.filter((c) => c.status !== 'pass')).toEqual([])
    // host x3 places for each hosts entry, 2 places per registry name, v2 from host and node, 4 mirrors, containerd, docker, shadow
    expect(checks).toHaveLength(6 + 4 + 4 + 4 + 1 + 1 + 1)
  })

  test('a loopback address is right on the host and wrong in a container, where any other address will do', () => {
    const loop = new Map([...(node().resolve.resolved as Map<string, Lookup>), ['registry.dev.local', found('127.0.0.1')]])
    const at = judge(observed({ inNetwork: { resolved: loop, error: null } }))
    expect(at('resolve', 'registry.dev.local', 'host').status).toBe('pass')
    expect(at('resolve', 'registry.dev.local', 'container')).toMatchObject({
      status: 'fail',
      detail: 'resolves to 127.0.0.1, which in a container is the container itself',
      fix: expect.stringContaining(
        'docker network disconnect kind kind-registry && docker network connect --alias registry.dev.local kind kind-registry',
      ),
    })
    expect(at('resolve', 'registry.dev.local', 'dev-control-plane')).toMatchObject({ status: 'pass', detail: '172.18.0.2' })
  })

  test('the wrong address on the host names the hosts file line to change', () => {
    const at = judge(
      observed({
        onHost: new Map([['api.dev.local', found('10.0.0.9')]]),
        hostsFile: { path: '/etc/hosts', entries: [{ line: 7, address: '10.0.0.9', names: ['api.dev.local'] }] },
      }),
      selectTargets(config, ['api.dev.local']),
    )
    expect(at('resolve', 'api.dev.local', 'host')).toEqual({
      check: 'resolve',
      subject: 'api.dev.local',
      place: 'host',
      status: 'fail',
      detail: 'resolves to 10.0.0.9, expected 10.0.0.5',
      fix: '/etc/hosts line 7 maps api.dev.local to 10.0.0.9: change it to 10.0.0.5 (devreg leaves lines it did not write alone)',
    })
  })

  test('without a cluster every node check is skipped, and without the network every container check', () => {
    const checks = evaluate(config, all, observed({ nodes: [], cluster: { provider: 'kind', name: 'dev', found: false }, inNetwork: null }))
    expect(checks.filter((c) => c.status === 'fail')).toEqual([])
    const nodes = checks.filter((c) => c.place === 'nodes')
    expect(
      nodes.every((c) => c.status === 'skip' && c.detail === 'no kind cluster dev: node checks skipped (`just dev-up` creates it)'),
    ).toBe(true)
    expect(nodes.map((c) => `${c.check} ${c.subject}`)).toContain('mirror docker.io')
    expect(checks.filter((c) => c.place === 'container').every((c) => c.detail === 'network kind does not exist yet')).toBe(true)
  })

  test('a stopped node fails each of its checks with how to start it', () => {
    const checks = evaluate(config, all, observed({ nodes: [node({ running: false })] }))
    const mine = checks.filter((c) => c.place === 'dev-control-plane')
    expect(new Set(mine.map((c) => c.fix))).toEqual(new Set(['`docker start dev-control-plane`, or `just dev-up`']))
  })

  test('a node whose containerd does not read certs.d', () => {
    const at = judge(observed({ nodes: [node({ readsCertsD: false })] }))
    expect(at('containerd', 'config_path', 'dev-control-plane')).toMatchObject({
      status: 'fail',
      fix: 'the node did not take the kind config patch: `just dev-up --recreate`',
    })
  })

  test('k3d: registries.yaml compared per host; a node without one fails every host with the restart in the fix', () => {
    const k3d = resolveConfig({ cluster: { provider: 'k3d' }, mirrors: [{ host: 'docker.io' }] })
    const desired = desiredMirrors(k3d)
    expect([...desired.keys()]).toEqual(['localhost:5001', 'kind-registry:5000', 'docker.io'])
    expect(desired.get('docker.io')).toBe(JSON.stringify({ endpoint: ['http://kind-cache-docker-io:5000'] }))
    const checks = evaluate(k3d, selectTargets(k3d, []), observed({ nodes: [node({ mirrors: null, readsCertsD: null })] }))
    const mirrors = checks.filter((c) => c.check === 'mirror')
    expect(mirrors.map((c) => [c.subject, c.status, c.detail])).toEqual([
      ['localhost:5001', 'fail', 'no /etc/rancher/k3s/registries.yaml'],
      ['kind-registry:5000', 'fail', 'no /etc/rancher/k3s/registries.yaml'],
      ['docker.io', 'fail', 'no /etc/rancher/k3s/registries.yaml'],
    ])
    expect(checks.some((c) => c.check === 'containerd')).toBe(false)
    const partial = new Map([...desired].filter(([host]) => host !== 'docker.io'))
    const without = evaluate(k3d, selectTargets(k3d, ['docker.io']), observed({ nodes: [node({ mirrors: partial, readsCertsD: null })] }))
    expect(without.find((c) => c.check === 'mirror')).toMatchObject({
      status: 'fail',
      detail: '/etc/rancher/k3s/registries.yaml has no mirror for docker.io',
      fix: '`just dev-up` rewrites it and restarts the nodes (k3s reads it only at start)',
    })
  })

  test('a registry the nodes cannot reach because it is not on the cluster network', () => {
    const refused: V2Answer = { ok: false, status: null, apiVersion: null, error: 'kind-cache-docker-io does not resolve' }
    const obs = observed({ nodes: [node({ v2: new Map([...node().v2, ['kind-cache-docker-io', refused]]) })] })
    obs.network.addresses.delete('kind-cache-docker-io')
    expect(judge(obs)('registry', 'kind-cache-docker-io', 'dev-control-plane')).toMatchObject({
      detail: 'no answer from http://kind-cache-docker-io:5000: kind-cache-docker-io is not on kind',
      fix: '`just dev-registry` attaches every registry to kind',
    })
  })

  test('the Docker daemon without the cache as a mirror: a warning with the snippet; a non-loopback bind also needs insecure-registries', () => {
    expect(judge(observed({ daemonMirrors: [] }))('docker-mirror', 'docker.io', 'host')).toMatchObject({
      status: 'warn',
      fix: expect.stringContaining('{"registry-mirrors":["http://127.0.0.1:5101"]}'),
    })
    const lan = resolveConfig({ registry: { bind: '192.168.5.2' }, mirrors: [{ host: 'docker.io' }] })
    const fix = evaluate(lan, selectTargets(lan, []), observed({ daemonMirrors: [] })).find((c) => c.check === 'docker-mirror')?.fix
    expect(fix).toContain('{"registry-mirrors":["http://192.168.5.2:5101"],"insecure-registries":["192.168.5.2:5101"]}')
  })

  test('something else on a registry port: it answered, but not as a registry', () => {
    const at = judge(
      observed({ v2: new Map([...observed().v2, ['kind-registry', { ok: false, status: 404, apiVersion: null, error: null }]]) }),
    )
    expect(at('registry', 'kind-registry', 'host')).toMatchObject({
      detail: '127.0.0.1:5001 answered HTTP 404 without the Docker-Distribution-Api-Version header',
      fix: 'something other than kind-registry answers there: stop it, or give kind-registry another port (registry.port)',
    })
  })
})

describe('renderReport', () => {
  test('a table of check by place, then each problem once with the places it shows in, then the tally', () => {
    const unresolved = new Map([...(node().resolve.resolved as Map<string, Lookup>), ['api.dev.local', found()]])
    const obs = observed({
      inNetwork: { resolved: unresolved, error: null },
      nodes: [node({ resolve: { resolved: unresolved, error: null } })],
    })
    const text = renderReport(evaluate(config, selectTargets(config, ['api.dev.local', 'kind-registry']), obs))
    expect(text).toBe(
      [
        'CHECK     NAME                HOST  CONTAINER  DEV-CONTROL-PLANE',
        'resolve   api.dev.local       ok    FAIL       FAIL',
        'resolve   kind-registry       -     ok         ok',
        'registry  kind-registry       ok    -          ok',
        'mirror    kind-registry:5000  -     -          ok',
        '',
        '✗ resolve api.dev.local (container, dev-control-plane): does not resolve on network kind',
        "    fix: make api.dev.local resolve on kind: `docker network connect --alias api.dev.local kind CONTAINER` (disconnect it first if it is on kind already) for the container serving it, or add it to your DNS (containers and nodes do not read this machine's /etc/hosts)",
        '',
        '6 passed, 2 failed, 0 warnings, 0 skipped',
      ].join('\n'),
    )
  })
})

describe('what the in-container scripts print', () => {
  test('resolve: one line per name, addresses after it; a name with none did not resolve', () => {
    expect(parseResolved(['a', 'b', 'c'], 'a 172.18.0.2 fd00::2\nb\n')).toEqual(
      new Map([
        ['a', found('172.18.0.2', 'fd00::2')],
        ['b', found()],
        ['c', found()],
      ]),
    )
  })

  test('GET /v2/: the last status line and the distribution header, or the first line of the error', () => {
    const out = [
      '\x1ehttp://r:5000',
      'HTTP/1.0 200 OK',
      'Docker-Distribution-Api-Version: registry/2.0',
      '',
      '{}\x1ehttp://c:5000',
      "nc: can't connect to remote host (172.18.0.3): Connection refused",
      '\x1ehttp://w:5000',
      'HTTP/1.1 404 Not Found',
      '',
    ].join('\n')
    expect(parseV2Output(['http://r:5000', 'http://c:5000', 'http://w:5000'], out)).toEqual(
      new Map([
        ['http://r:5000', { ok: true, status: 200, apiVersion: 'registry/2.0', error: null }],
        [
          'http://c:5000',
          { ok: false, status: null, apiVersion: null, error: "nc: can't connect to remote host (172.18.0.3): Connection refused" },
        ],
        ['http://w:5000', { ok: false, status: 404, apiVersion: null, error: null }],
      ]),
    )
  })
})

describe('observe, against a fake runner: no socket, no real /etc', () => {
  const cfg = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
  const [local, hub] = cfg.registries
  const recorded = JSON.parse(readFileSync(join(import.meta.dir, 'fixtures/docker-info/dockerd-28-containerd.json'), 'utf8'))
  const ps = cfg.registries
    .map((r) =>
      JSON.stringify({ ID: r.name, Names: r.name, State: 'running', Labels: 'devreg.managed=true', Networks: '', Ports: '', Image: 'x' }),
    )
    .join('\n')
  /** The registries running, the local one answering; the engine with `mirrors`; certs.d with devreg's hosts.toml for ghcr.io. */
  const machine = (mirrors: string[]) =>
    fakeRunner(
      [
        on(['docker', 'ps'], ps),
        on(['docker', 'info', '--format', '{{json .RegistryConfig.Mirrors}}'], JSON.stringify(mirrors)),
        on(['docker', 'info', '--format', '{{json .}}'], JSON.stringify({ ...recorded.info, RegistryConfig: { Mirrors: mirrors } })),
        on(['docker', 'version', '--format', '{{json .}}'], JSON.stringify(recorded.version)),
        v2Up(local.address.url),
      ],
      { files: { [join(DOCKER_CERTS_D, 'ghcr.io', 'hosts.toml')]: hostMirrorFiles(cfg).get('ghcr.io') as string } },
    )
  const checksOf = async (run: ReturnType<typeof machine>) => {
    const sel = selectTargets(cfg, [])
    const checks = evaluate(cfg, sel, await observe(run, cfg, sel, { path: '/etc/hosts', text: '127.0.0.1 localhost\n' }))
    return (check: string, subject: string) => checks.find((c) => c.check === check && c.subject === subject && c.place === 'host')
  }

  test('each registry is asked GET /v2/ on its host port; one that does not answer fails, naming its logs', async () => {
    const run = machine([hub.address.url])
    const at = await checksOf(run)
    expect(run.calls.filter((c) => c.kind === 'http').map((c) => c.line)).toEqual(cfg.registries.map((r) => `GET ${r.address.url}/v2/`))
    expect(at('registry', local.name)?.status).toBe('pass')
    expect(at('registry', hub.name)).toMatchObject({ status: 'fail', detail: expect.stringContaining('ECONNREFUSED') })
    expect(run.changes).toEqual([])
  })

  test('the host engine: docker.io through its cache by registry-mirrors, ghcr.io by the hosts.toml in certs.d', async () => {
    const at = await checksOf(machine([`${hub.address.url}/`]))
    expect(at('docker-mirror', 'docker.io')).toMatchObject({ status: 'pass', detail: `registry-mirrors has ${hub.address.url}` })
    expect(at('docker-mirror', 'ghcr.io')).toMatchObject({ status: 'pass', detail: 'hosts.toml in certs.d' })
  })

  test('a mirror at [::1] does not reach a cache published on 127.0.0.1: preflight warns, as status does', async () => {
    const at = await checksOf(machine([`http://[::1]:${hub.port}`]))
    expect(at('docker-mirror', 'docker.io')?.status).toBe('warn')
  })
})
