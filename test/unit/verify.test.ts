// verify's judgement without Docker: which hosts it probes and from where,
// which log lines count, the verdict and fix for each way a route breaks,
// and the matrix.
import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/config.ts'
import {
  type Facts,
  type Hit,
  judge,
  type Probe,
  parseFacts,
  parseProbeOutput,
  planProbes,
  probeHits,
  proxyFor,
  renderMatrix,
  type Target,
  targets,
} from '../../scripts/lib/verify.ts'

const config = resolveConfig({
  mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io', remotes: [{ url: 'https://harbor.example.com', path: '/v2/ghcr' }] }],
  aliases: ['registry.dev.local'],
})
const NODE = 'dev-control-plane'
const NODE_IP = '172.18.0.5'

describe('targets and probes', () => {
  test('every routed host is probed at the registry its route tries first', () => {
    expect(targets(config).map((t) => [t.host, t.first])).toEqual([
      ['localhost:5001', 'kind-registry'],
      ['kind-registry:5000', 'kind-registry'],
      ['docker.io', 'kind-cache-docker-io'],
      ['ghcr.io', 'kind-cache-ghcr-io'],
      ['registry.dev.local', 'kind-registry'],
    ])
    const ghcr = targets(config).find((t) => t.host === 'ghcr.io') as Target
    expect(ghcr.rest).toEqual(['https://harbor.example.com/v2/ghcr', 'https://ghcr.io'])
  })

  test('a docker.io/acme alias puts the local registry first for docker.io', () => {
    const c = resolveConfig({ mirrors: [{ host: 'docker.io' }], aliases: ['docker.io/acme'] })
    expect(targets(c).find((t) => t.host === 'docker.io')?.first).toBe('kind-registry')
  })

  test('each node × host gets a reference of its own under devreg-probe/verify', () => {
    const probes = planProbes(targets(config), ['a', 'b'], 'f00d')
    expect(probes.length).toBe(10)
    expect(new Set(probes.map((p) => p.tag)).size).toBe(10)
    expect(probes[2].ref).toBe('docker.io/devreg-probe/verify:f00d-2-0')
    expect(probes[7].ref).toBe('docker.io/devreg-probe/verify:f00d-2-1')
  })
})

describe('log matching', () => {
  const line = (uri: string, addr: string, method = 'HEAD') =>
    `time="2026-11-30T12:22:01.9Z" level=error msg="response completed with error" err.code="manifest unknown" http.request.host="kind-registry:5000" http.request.method=${method} http.request.remoteaddr="${addr}:48584" http.request.uri="${uri}" http.response.status=404 http.response.written=96`

  test('response completed lines for probe manifests count, with the client address and without ?ns', () => {
    const text = [
      line('/v2/devreg-probe/verify/manifests/f00d-2-0?ns=docker.io', NODE_IP),
      line('/v2/library/alpine/manifests/3', NODE_IP),
      `${NODE_IP} - - [30/Nov/2026:12:22:01 +0000] "HEAD /v2/devreg-probe/verify/manifests/f00d-2-0 HTTP/1.1" 404 96 "" "containerd/2.1.9"`,
      '{"msg":"response completed","http.request.method":"GET","http.request.uri":"/v2/devreg-probe/verify/manifests/f00d-1-0","http.request.remoteaddr":"[fd00::5]:1234","http.response.status":404}',
    ].join('\n')
    expect(probeHits('kind-registry', text)).toEqual([
      { container: 'kind-registry', tag: 'f00d-2-0', method: 'HEAD', address: NODE_IP, status: 404 },
      { container: 'kind-registry', tag: 'f00d-1-0', method: 'GET', address: 'fd00::5', status: 404 },
    ])
  })

  test("the probe script's output: exit code, reference and crictl's line per probe", () => {
    const out =
      '\x1e1 docker.io/devreg-probe/verify:x-0-0 E1130 crictl.go] pulling image: rpc error: code = NotFound desc = x\n\x1e127 a/b:c sh: crictl: not found\n'
    expect(parseProbeOutput(out).get('a/b:c')).toEqual({ rc: 127, out: 'sh: crictl: not found' })
    expect(parseProbeOutput(out).get('docker.io/devreg-probe/verify:x-0-0')?.rc).toBe(1)
  })

  test("the facts script's output: hosts with a hosts.toml and containerd's proxy variables", () => {
    const f = parseFacts('hosts.toml docker.io\nenv HTTP_PROXY=http://p:3128\nenv NO_PROXY=a,b=c\n')
    expect([...f.hostsToml]).toEqual(['docker.io'])
    expect(f.env).toEqual({ HTTP_PROXY: 'http://p:3128', NO_PROXY: 'a,b=c' })
  })
})

describe('proxyFor, as Go reads the proxy variables', () => {
  const env = { HTTP_PROXY: 'http://proxy:3128' }
  test.each([
    [{}, 'kind-registry:5000', null],
    [env, 'kind-registry:5000', 'http://proxy:3128'],
    [{ ...env, NO_PROXY: 'localhost,kind-registry' }, 'kind-registry:5000', null],
    [{ ...env, NO_PROXY: '.example.com' }, 'cache.example.com:5000', null],
    [{ ...env, NO_PROXY: 'kind-registry:6000' }, 'kind-registry:5000', 'http://proxy:3128'],
    [{ ...env, NO_PROXY: '*' }, 'kind-registry:5000', null],
    [{ ...env, no_proxy: 'kind-registry' }, 'kind-registry:5000', null],
    [env, 'localhost:5001', null],
    [{ http_proxy: 'http://p' }, 'x:5000', 'http://p'],
  ])('%o for %s → %s', (e, host, want) => expect(proxyFor(e as Record<string, string>, host)).toBe(want))
})

describe('judge', () => {
  const ts = targets(config)
  const docker = ts.find((t) => t.host === 'docker.io') as Target
  const probe = planProbes([docker], [NODE], 'n')[0] as Probe
  const facts = (over: Partial<Facts> = {}): Facts => ({
    provider: 'kind',
    network: 'kind',
    containers: new Map([
      ['kind-registry', { state: 'running', networks: ['kind'] }],
      ['kind-cache-docker-io', { state: 'running', networks: ['bridge', 'kind'] }],
    ]),
    nodes: new Map([[NODE, { hostsToml: new Set(['docker.io']), env: {}, readsCertsD: true }]]),
    ...over,
  })
  const hit = (container: string, address = NODE_IP): Hit => ({ container, tag: probe.tag, method: 'HEAD', address, status: 404 })

  test('passes when the first registry logged it from the node', () => {
    expect(judge(probe, docker, [hit('kind-cache-docker-io')], [NODE_IP], null, facts())).toEqual({
      status: 'pass',
      detail: 'kind-cache-docker-io answered (HEAD 404)',
      fix: null,
    })
  })

  test('a route that starts at a remote is skipped, saying why', () => {
    const remote: Target = { host: 'quay.io', first: null, firstUrl: 'https://harbor.example.com', rest: [] }
    expect(judge(probe, remote, [], [NODE_IP], null, facts()).status).toBe('skip')
  })

  test('the cache down: the upstream answered, and dev-registry starts it', () => {
    const v = judge(
      probe,
      docker,
      [hit('upstream')],
      [NODE_IP],
      null,
      facts({ containers: new Map([['kind-cache-docker-io', { state: 'exited', networks: ['kind'] }]]) }),
    )
    expect(v.status).toBe('fail')
    expect(v.detail).toBe(
      'kind-cache-docker-io is exited; upstream answered instead: the upstream answered, so pulls of this host cost its rate limit',
    )
    expect(v.fix).toContain('`just dev-registry` starts it')
  })

  test('a registry off the cluster network: reattach it', () => {
    const v = judge(
      probe,
      docker,
      [],
      [NODE_IP],
      null,
      facts({ containers: new Map([['kind-cache-docker-io', { state: 'running', networks: ['bridge'] }]]) }),
    )
    expect(v.detail).toContain('kind-cache-docker-io is not on kind')
    expect(v.detail).toContain('nothing on the cluster network logged it')
    expect(v.fix).toContain('docker network connect kind kind-cache-docker-io')
  })

  test('a missing hosts.toml names the file; on k3d the fix restarts the nodes', () => {
    const none = { hostsToml: new Set<string>(), env: {}, readsCertsD: true }
    const kind = judge(probe, docker, [], [NODE_IP], null, facts({ nodes: new Map([[NODE, none]]) }))
    expect(kind.detail).toContain(`${NODE} has no /etc/containerd/certs.d/docker.io/hosts.toml`)
    expect(kind.fix).toBe('`just dev-up` writes it')
    const k3d = judge(
      probe,
      docker,
      [],
      [NODE_IP],
      null,
      facts({ provider: 'k3d', nodes: new Map([[NODE, { ...none, readsCertsD: null }]]) }),
    )
    expect(k3d.detail).toContain('/var/lib/rancher/k3s/agent/etc/containerd/certs.d/docker.io/hosts.toml')
    expect(k3d.fix).toContain('restarts the nodes')
  })

  test('containerd not reading certs.d: recreate', () => {
    const v = judge(
      probe,
      docker,
      [],
      [NODE_IP],
      null,
      facts({ nodes: new Map([[NODE, { hostsToml: new Set(['docker.io']), env: {}, readsCertsD: false }]]) }),
    )
    expect(v.detail).toContain('does not read /etc/containerd/certs.d')
    expect(v.fix).toContain('dev-up --recreate')
  })

  test("a proxy in containerd's environment without the registry in NO_PROXY", () => {
    const env = { HTTP_PROXY: 'http://127.0.0.1:9', NO_PROXY: 'localhost' }
    const v = judge(
      probe,
      docker,
      [],
      [NODE_IP],
      null,
      facts({ nodes: new Map([[NODE, { hostsToml: new Set(['docker.io']), env, readsCertsD: true }]]) }),
    )
    expect(v.detail).toContain('sends http://kind-cache-docker-io:5000 to the proxy http://127.0.0.1:9')
    expect(v.fix).toContain('NO_PROXY')
  })

  test('logged from another address: something forwards the pulls', () => {
    const v = judge(probe, docker, [hit('kind-cache-docker-io', '10.0.0.9')], [NODE_IP], null, facts())
    expect(v.detail).toContain('logged it from 10.0.0.9')
  })

  test('no crictl in the node', () => {
    const v = judge(probe, docker, [], [NODE_IP], { rc: 127, out: 'sh: crictl: not found' }, facts())
    expect(v.detail).toContain('has no crictl')
  })
})

describe('renderMatrix', () => {
  test('a row per host, a column per node, each failure once with its fix', () => {
    const probes = planProbes(targets(config), ['dev-control-plane', 'dev-worker'], 'n').map((p) => ({
      ...p,
      status: p.host === 'docker.io' ? ('fail' as const) : ('pass' as const),
      detail: p.host === 'docker.io' ? 'kind-cache-docker-io is exited; upstream answered instead' : 'ok',
      fix: p.host === 'docker.io' ? '`just dev-registry` starts it' : null,
    }))
    const text = renderMatrix({ probes, elapsedMs: 1234 })
    const lines = text.split('\n')
    expect(lines[0]).toMatch(/^HOST\s+FIRST REGISTRY\s+DEV-CONTROL-PLANE\s+DEV-WORKER$/)
    expect(text).toMatch(/docker\.io\s+kind-cache-docker-io\s+FAIL\s+FAIL/)
    expect(text).toMatch(/localhost:5001\s+kind-registry\s+ok\s+ok/)
    expect(text).toContain('✗ docker.io (dev-control-plane, dev-worker): kind-cache-docker-io is exited; upstream answered instead')
    expect(text.match(/fix: `just dev-registry` starts it/g)?.length).toBe(1)
    expect(lines.at(-1)).toBe('8 passed, 2 failed, 0 skipped in 1.2s')
  })
})
