// verify's judgement without Docker: which registry domains it probes and from where,
// which log lines count, the verdict and fix for each way a route breaks,
// and the matrix.

import { describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseNodeOutput } from '../../scripts/lib/cluster/nodes.ts'
import {
  judgeProbes,
  PROBE_PLATFORMS,
  planProbes,
  planVerify,
  probeHits,
  probeImage,
  targets,
  verify,
} from '../../scripts/lib/cluster/verify.ts'
import { factsOf } from '../../scripts/lib/cluster/verify-nodes.ts'
import { type Facts, type Hit, judge, type Probe, proxyFor, renderMatrix, type Target } from '../../scripts/lib/cluster/verify-verdicts.ts'
import { type Registry, resolveConfig } from '../../scripts/lib/core/config.ts'
import { classifyPath } from '../../scripts/lib/registries/registry-layout.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'
import { FakeVolume } from '../kit/fake-volume.ts'
import { privateLockDir } from '../kit/lock-dir.ts'
import { nodeOutput } from '../kit/node-output.ts'

const config = resolveConfig({
  mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io', remotes: [{ url: 'https://harbor.example.com', path: '/v2/ghcr' }] }],
  aliases: ['registry.dev.local'],
})
const NODE = 'dev-control-plane'
const NODE_IP = '172.18.0.5'

describe('targets and probes', () => {
  test('every routed domain is probed at the registry its route tries first', () => {
    expect(targets(config).map((t) => [t.domain, t.first])).toEqual([
      ['localhost:5001', 'kind-registry'],
      ['kind-registry:5000', 'kind-registry'],
      ['docker.io', 'kind-cache-docker-io'],
      ['ghcr.io', 'kind-cache-ghcr-io'],
      ['registry.dev.local', 'kind-registry'],
    ])
    const ghcr = targets(config).find((t) => t.domain === 'ghcr.io') as Target
    expect(ghcr.rest).toEqual(['https://harbor.example.com/v2/ghcr', 'https://ghcr.io'])
  })

  test('a docker.io/acme alias puts the local registry first for docker.io', () => {
    const c = resolveConfig({ mirrors: [{ host: 'docker.io' }], aliases: ['docker.io/acme'] })
    expect(targets(c).find((t) => t.domain === 'docker.io')?.first).toBe('kind-registry')
  })

  test('each node × domain pulls the probe image by digest under that domain', () => {
    const probes = planProbes(targets(config), ['a', 'b'], 'sha256:f00d')
    expect(probes.length).toBe(10)
    expect(probes[2].ref).toBe('docker.io/devreg-probe/verify@sha256:f00d')
    expect(probes[7]).toMatchObject({ node: 'b', domain: 'docker.io', first: 'kind-cache-docker-io' })
  })
})

describe('the probe image', () => {
  const image = probeImage()
  const file = (hex: string) => image.files.find((f) => f.path.endsWith(`/${hex}/data`))?.body as Buffer
  const json = (digest: string) => JSON.parse(file(digest.slice(7)).toString())
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`

  test('is the same on every run: its digest is a constant', () => {
    expect(probeImage()).toEqual(image)
    expect(image.digest).toMatch(/^sha256:[0-9a-f]{64}$/)
  })

  test('is an index of one manifest per platform, each with a config and a 1 KiB empty tar layer', () => {
    const index = json(image.digest)
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json')
    expect(index.manifests.map((m: { platform: unknown }) => m.platform)).toEqual(PROBE_PLATFORMS)
    for (const m of index.manifests) {
      const manifest = json(m.digest)
      expect(manifest.layers.length).toBe(1)
      expect(manifest.layers[0].size).toBe(1024)
      const config = json(manifest.config.digest)
      expect({ os: config.os, architecture: config.architecture }).toEqual(m.platform)
      expect(config.rootfs.diff_ids).toEqual([manifest.layers[0].digest])
    }
  })

  test('is stored as distribution lays it out: every blob under its digest, linked into devreg-probe/verify, no tag', () => {
    const kinds = image.files.map((f) => classifyPath(f.path))
    expect(kinds.every(Boolean)).toBe(true)
    expect(kinds.map((k) => k?.kind)).toEqual([...Array(6).fill('blob'), ...Array(3).fill('layer'), ...Array(3).fill('revision')])
    for (const [i, f] of image.files.entries()) {
      const k = kinds[i]
      if (k?.kind === 'blob') expect(sha(f.body)).toBe(k.digest as string)
      else {
        expect(k?.repository).toBe('devreg-probe/verify')
        expect(f.body.toString()).toBe(k?.digest as string)
      }
    }
    expect(kinds.some((k) => k?.kind === 'revision' && k.digest === image.digest)).toBe(true)
  })
})

describe('log matching', () => {
  const line = (uri: string, addr: string, method = 'HEAD') =>
    `time="2026-11-30T12:22:01.9Z" level=error msg="response completed with error" err.code="manifest unknown" http.request.host="kind-registry:5000" http.request.method=${method} http.request.remoteaddr="${addr}:48584" http.request.uri="${uri}" http.response.status=404 http.response.written=96`

  test('response completed lines for probe manifests count, with the client address, and the registry domain from ?ns or else Host', () => {
    const d = `sha256:${'ab'.repeat(32)}`
    const text = [
      line(`/v2/devreg-probe/verify/manifests/${d}?ns=localhost%3A5001`, NODE_IP),
      line('/v2/library/alpine/manifests/3', NODE_IP),
      `${NODE_IP} - - [30/Nov/2026:12:22:01 +0000] "HEAD /v2/devreg-probe/verify/manifests/${d} HTTP/1.1" 200 96 "" "containerd/2.1.9"`,
      line(`/v2/devreg-probe/verify/manifests/${d}`, NODE_IP),
      `{"msg":"response completed","http.request.host":"kind-cache-docker-io:5000","http.request.method":"GET","http.request.uri":"/v2/devreg-probe/verify/manifests/${d}?ns=docker.io","http.request.remoteaddr":"[fd00::5]:1234","http.response.status":200}`,
    ].join('\n')
    expect(probeHits('kind-registry', text)).toEqual([
      { container: 'kind-registry', domain: 'localhost:5001', reference: d, method: 'HEAD', address: NODE_IP, status: 404 },
      { container: 'kind-registry', domain: 'kind-registry:5000', reference: d, method: 'HEAD', address: NODE_IP, status: 404 },
      { container: 'kind-registry', domain: 'docker.io', reference: d, method: 'GET', address: 'fd00::5', status: 200 },
    ])
  })

  test("a node's one exec: its clock before the pulls, then each pull's exit code, reference and crictl's line", () => {
    const out =
      '\x1esince 1767225600.123456789\n\x1epull 1 docker.io/devreg-probe/verify@sha256:x E1130 crictl.go] pulling image: rpc error: code = NotFound desc = x\n\x1epull 127 a/b:c sh: crictl: not found\n'
    const s = parseNodeOutput(NODE, out)
    expect(s.since).toBe('1767225600.123456789')
    expect(s.pulls.get('a/b:c')).toEqual({ rc: 127, out: 'sh: crictl: not found' })
    expect(s.pulls.get('docker.io/devreg-probe/verify@sha256:x')?.rc).toBe(1)
  })

  test("the facts from the same exec: registry domains with a hosts.toml, containerd's proxy variables, whether it reads certs.d", () => {
    const out = [
      '\x1ehosts /etc/containerd/certs.d/docker.io\nserver = "https://registry-1.docker.io"\n',
      "\x1econtainerd-version\ncontainerd github.com/containerd/containerd/v2 v2.3.4 x\n\x1econtainerd-config\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = ''\n",
      '\x1eenv\nHTTP_PROXY=http://p:3128\nNO_PROXY=a,b=c\n',
    ].join('')
    const snapshots = new Map([[NODE, parseNodeOutput(NODE, out, { containerd: true, env: true })]])
    const facts = factsOf(config, snapshots, []).nodes.get(NODE)
    expect([...(facts?.hostsToml ?? [])]).toEqual(['docker.io'])
    expect(facts?.env).toEqual({ HTTP_PROXY: 'http://p:3128', NO_PROXY: 'a,b=c' })
    expect(facts?.readsCertsD).toBe(true)
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
  ])('%o for %s → %s', (e, address, want) => expect(proxyFor(e as Record<string, string>, address)).toBe(want))
})

describe('judge', () => {
  const ts = targets(config)
  const docker = ts.find((t) => t.domain === 'docker.io') as Target
  const probe = planProbes([docker], [NODE], 'sha256:f00d')[0] as Probe
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
  /** judge() of the docker.io probe from the node, on what the registries logged and the facts (and crictl's failure). */
  const judged = (hits: Hit[], over: Partial<Facts> = {}, crictl: Parameters<typeof judge>[4] = null) =>
    judge(probe, docker, hits, [NODE_IP], crictl, facts(over))
  const hit = (container: string, address = NODE_IP): Hit => ({
    container,
    domain: 'docker.io',
    reference: 'sha256:f00d',
    method: 'HEAD',
    address,
    status: 404,
  })

  test('a request for another domain from the node does not count for this one', () => {
    const other = { ...hit('kind-cache-docker-io'), domain: 'ghcr.io' }
    expect(judged([other]).status).toBe('fail')
  })

  test('passes when the first registry logged it from the node', () => {
    expect(judged([hit('kind-cache-docker-io')])).toEqual({
      status: 'pass',
      detail: 'kind-cache-docker-io answered (HEAD 404)',
      fix: null,
    })
  })

  test('a route that starts at a remote is skipped, saying why', () => {
    const remote: Target = { domain: 'quay.io', first: null, firstUrl: 'https://harbor.example.com', rest: [] }
    expect(judge(probe, remote, [], [NODE_IP], null, facts()).status).toBe('skip')
  })

  test('the cache down: the upstream answered, and dev-registry starts it', () => {
    const v = judged([hit('upstream')], { containers: new Map([['kind-cache-docker-io', { state: 'exited', networks: ['kind'] }]]) })
    expect(v.status).toBe('fail')
    expect(v.detail).toBe(
      'kind-cache-docker-io is exited; upstream answered instead: the upstream answered, so pulls of this domain cost its rate limit',
    )
    expect(v.fix).toContain('`just dev-registry` starts it')
  })

  test('a registry off the cluster network: reattach it', () => {
    const v = judged([], { containers: new Map([['kind-cache-docker-io', { state: 'running', networks: ['bridge'] }]]) })
    expect(v.detail).toContain('kind-cache-docker-io is not on kind')
    expect(v.detail).toContain('nothing on the cluster network logged it')
    expect(v.fix).toContain('docker network connect kind kind-cache-docker-io')
  })

  test('a missing hosts.toml names the file; on k3d the fix restarts the nodes', () => {
    const none = { hostsToml: new Set<string>(), env: {}, readsCertsD: true }
    const kind = judged([], { nodes: new Map([[NODE, none]]) })
    expect(kind.detail).toContain(`${NODE} has no /etc/containerd/certs.d/docker.io/hosts.toml`)
    expect(kind.fix).toBe('`just dev-up` writes it')
    const k3d = judged([], { provider: 'k3d', nodes: new Map([[NODE, { ...none, readsCertsD: null }]]) })
    expect(k3d.detail).toContain('/var/lib/rancher/k3s/agent/etc/containerd/certs.d/docker.io/hosts.toml')
    expect(k3d.fix).toContain('restarts the nodes')
  })

  test('containerd not reading certs.d: recreate', () => {
    const v = judged([], { nodes: new Map([[NODE, { hostsToml: new Set(['docker.io']), env: {}, readsCertsD: false }]]) })
    expect(v.detail).toContain('does not read /etc/containerd/certs.d')
    expect(v.fix).toContain('dev-up --recreate')
  })

  test("a proxy in containerd's environment without the registry in NO_PROXY", () => {
    const env = { HTTP_PROXY: 'http://127.0.0.1:9', NO_PROXY: 'localhost' }
    const v = judged([], { nodes: new Map([[NODE, { hostsToml: new Set(['docker.io']), env, readsCertsD: true }]]) })
    expect(v.detail).toContain('sends http://kind-cache-docker-io:5000 to the proxy http://127.0.0.1:9')
    expect(v.fix).toContain('NO_PROXY')
  })

  test('logged from another address: something forwards the pulls', () => {
    const v = judged([hit('kind-cache-docker-io', '10.0.0.9')])
    expect(v.detail).toContain('logged it from 10.0.0.9')
  })

  test('no crictl in the node', () => {
    const v = judged([], {}, { rc: 127, out: 'sh: crictl: not found' })
    expect(v.detail).toContain('has no crictl')
  })
})

describe('renderMatrix', () => {
  test('a row per registry domain, a column per node, each failure once with its fix', () => {
    const probes = planProbes(targets(config), ['dev-control-plane', 'dev-worker'], 'sha256:f00d').map((p) => ({
      ...p,
      status: p.domain === 'docker.io' ? ('fail' as const) : ('pass' as const),
      detail: p.domain === 'docker.io' ? 'kind-cache-docker-io is exited; upstream answered instead' : 'ok',
      fix: p.domain === 'docker.io' ? '`just dev-registry` starts it' : null,
    }))
    const text = renderMatrix({ probes, elapsedMs: 1234 })
    const lines = text.split('\n')
    expect(lines[0]).toMatch(/^REGISTRY\s+FIRST REGISTRY\s+DEV-CONTROL-PLANE\s+DEV-WORKER$/)
    expect(text).toMatch(/docker\.io\s+kind-cache-docker-io\s+FAIL\s+FAIL/)
    expect(text).toMatch(/localhost:5001\s+kind-registry\s+ok\s+ok/)
    expect(text).toContain('✗ docker.io (dev-control-plane, dev-worker): kind-cache-docker-io is exited; upstream answered instead')
    expect(text.match(/fix: `just dev-registry` starts it/g)?.length).toBe(1)
    expect(lines.at(-1)).toBe('8 passed, 2 failed, 0 skipped in 1.2s')
  })
})

describe('verify, orchestrated against a fake runner', () => {
  const { env, locks } = privateLockDir()
  const kind = resolveConfig({ cluster: { name: 'dev' }, mirrors: [{ host: 'docker.io', upstream: 'http://127.0.0.1:9' }] })
  const cache = kind.registries.find((r) => r.role === 'cache') as Registry
  const digest = probeImage().digest
  const ps = (name: string, labels: string) =>
    JSON.stringify({ ID: name, Names: name, State: 'running', Labels: labels, Networks: 'kind', Ports: '', Image: 'registry:3' })
  const SINCE = '1735689600.000000001'
  const logLine = (t: Target) =>
    `time="2025-01-01T00:00:00Z" level=info msg="response completed" http.request.host="${t.first}:5000" http.request.method=HEAD http.request.remoteaddr="${NODE_IP}:40000" http.request.uri="/v2/devreg-probe/verify/manifests/${digest}?ns=${t.domain}" http.response.status=200`

  test('places the probe image where it is missing, holding that registry’s lock, then passes each probe its first registry logged', async () => {
    const volume = new FakeVolume(cache)
    let heldWhileStaging: string | null = null
    let pulled = false
    const run = fakeRunner(
      [
        on(
          ['docker', 'ps'],
          [
            ...kind.registries.map((r) => ps(r.name, 'devreg.managed=true')),
            ps(NODE, 'io.x-k8s.kind.cluster=dev,io.x-k8s.kind.role=control-plane'),
          ].join('\n'),
        ),
        on(['docker', 'inspect', '--type', 'container'], `/${NODE} ${JSON.stringify({ kind: { IPAddress: NODE_IP } })}`),
        on(['docker', 'cp', /^kind-registry:/, '-'], 'tar'),
        on(['docker', 'cp', new RegExp(`^${cache.name}:`), '-'], {
          exitCode: 1,
          stderr: 'Error response from daemon: Could not find the file',
        }),
        on(['docker', 'exec', NODE, 'sh', '-c', /observe-node/, 'observe-node'], (argv) => {
          pulled = true
          const refs = argv.slice(argv.indexOf('pull') + 2)
          return nodeOutput({ since: SINCE, pulls: Object.fromEntries(refs.map((ref) => [ref, { rc: 0, out: 'Image is up to date' }])) })
        }),
        on(['docker', 'logs', '--since', SINCE], (argv) =>
          pulled
            ? targets(kind)
                .filter((t) => t.first === argv.at(-1))
                .map(logLine)
                .join('\n')
            : '',
        ),
        ...volume.replies({}, () => {
          heldWhileStaging = readFileSync(join(locks(), `registry-${cache.name}.lock`), 'utf8')
        }),
      ],
      { env: env() },
    )
    const result = await verify(run, kind, { seconds: 1 })
    expect(result.summary).toEqual({ pass: 3, fail: 0, skip: 0 })
    // One exec per node, one log read per registry, from the node's clock at the pulls on.
    expect(run.calls.filter((c) => c.argv.includes('observe-node')).map((c) => c.argv[2])).toEqual([NODE])
    expect(run.calls.filter((c) => c.argv[1] === 'logs').map((c) => c.argv.slice(2))).toEqual(
      kind.registries.map((r) => ['--since', SINCE, r.name]),
    )
    expect(JSON.parse(heldWhileStaging ?? 'null')).toMatchObject({ pid: process.pid })
    for (const f of probeImage().files) expect(volume.files.get(f.path)).toEqual(f.body)
    // Only the cache lacked it; the lock went with the placement.
    expect(run.calls.filter((c) => c.kind === 'stream').map((c) => c.argv.join(' '))).toEqual([expect.stringContaining(cache.volume)])
    expect(existsSync(join(locks(), `registry-${cache.name}.lock`))).toBe(false)
  })

  test('judged from a network listing that knows the node by another address: every address and every log are read before a verdict', async () => {
    const containers = [
      ...kind.registries.map((r) => ({
        id: r.name,
        name: r.name,
        state: 'running',
        labels: { 'devreg.managed': 'true' },
        networks: ['kind'],
        ports: '',
        image: 'registry:3',
      })),
      {
        id: NODE,
        name: NODE,
        state: 'running',
        labels: { 'io.x-k8s.kind.cluster': 'dev', 'io.x-k8s.kind.role': 'control-plane' },
        networks: ['kind', 'other'],
        ports: '',
        image: 'kindest/node',
      },
    ]
    const plan = planVerify(kind, containers)
    const snapshot = parseNodeOutput(
      NODE,
      nodeOutput({ since: SINCE, pulls: Object.fromEntries(plan.probes.map((p) => [p.ref, { rc: 0, out: '' }])) }),
    )
    const run = fakeRunner([
      on(
        ['docker', 'inspect', '--type', 'container'],
        `/${NODE} ${JSON.stringify({ kind: { IPAddress: '172.18.0.7' }, other: { IPAddress: NODE_IP } })}`,
      ),
      on(['docker', 'logs', '--since', SINCE], (argv) =>
        targets(kind)
          .filter((t) => t.first === argv.at(-1))
          .map(logLine)
          .join('\n'),
      ),
    ])
    const result = await judgeProbes(run, kind, plan, new Map([[NODE, snapshot]]), { network: new Map([[NODE, '172.18.0.7']]) })
    expect(result.summary).toEqual({ pass: 3, fail: 0, skip: 0 })
    expect(run.calls.filter((c) => c.argv[1] === 'inspect')).toHaveLength(1)
  })
})
