// verify on k3d (the stand-in: k3s's hosts.toml rendering on real containerd
// 2.x nodes, a server and an agent, with crictl at /bin/crictl as in k3s's
// image): every node × host passes after dev-up, and a broken route is
// caught on the right node and host.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { $ } from 'zx'
import { Fixture, freePort, integration, runScript, standInEnv, testRegistry, waitHttp } from '../kit/fixture.ts'
import { NODE_CONTAINERD2_IMAGE } from '../kit/images.ts'

const K3S_CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'
const q = () => $({ quiet: true })

interface Probe {
  node: string
  host: string
  status: string
  detail: string
  fix: string | null
}

integration('verify with k3d', () => {
  const fx = new Fixture()
  let env: Record<string, string>
  let network: string
  let upstream: { name: string; port: number; url: string }
  let registry: Awaited<ReturnType<typeof testRegistry>>
  let cache: { name: string; port: number }
  let config: string
  let server: string
  let agent: string
  const verify = async () => {
    const r = await runScript('verify', ['--config', config, '--json'], { env })
    return { code: r.code, ...(JSON.parse(r.stdout) as { elapsedMs: number; probes: Probe[] }) }
  }
  const failed = (probes: Probe[]) =>
    probes
      .filter((p) => p.status !== 'pass')
      .map((p) => `${p.node} ${p.host}`)
      .sort()

  beforeAll(async () => {
    env = standInEnv(fx)
    const name = fx.name('k')
    network = await fx.network('k3d')
    upstream = await fx.upstream(network)
    registry = await testRegistry(fx)
    cache = { name: fx.name('cache-docker-io'), port: await freePort() }
    server = `k3d-${name}-server-0`
    agent = `k3d-${name}-agent-0`
    config = fx.config({
      cluster: { provider: 'k3d', name, network, nodeImage: NODE_CONTAINERD2_IMAGE, workers: 1, waitTimeout: '60s' },
      registry,
      mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port }],
    })
    const up = await runScript('dev-up', ['--config', config, '--json'], { env })
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
    expect(JSON.parse(up.stdout).verify).toEqual({ pass: 6, fail: 0, skip: 0 })
  })
  afterAll(async () => {
    await runScript('dev-down', ['--config', config], { env })
    await fx.cleanup()
  })

  test('every node × host passes, through /bin/crictl in the nodes', async () => {
    const r = await verify()
    expect(r.code).toBe(0)
    expect(r.probes.length).toBe(6)
    expect(new Set(r.probes.map((p) => p.node))).toEqual(new Set([server, agent]))
    console.error(`verify on a 2-node k3d stand-in cluster: ${r.elapsedMs} ms`)
  })

  test("a hosts.toml missing from one node's k3s certs.d fails that node and host, with k3d's fix", async () => {
    const file = `${K3S_CERTS_D}/docker.io/hosts.toml`
    const saved = (await q()`docker exec ${agent} cat ${file}`).stdout
    await q()`docker exec ${agent} rm ${file}`
    try {
      const r = await verify()
      expect(r.code).toBe(1)
      expect(failed(r.probes)).toEqual([`${agent} docker.io`])
      const p = r.probes.find((x) => x.status === 'fail') as Probe
      expect(p.detail).toContain(`has no ${file}`)
      expect(p.fix).toContain('restarts the nodes')
    } finally {
      await $({ quiet: true, input: saved })`docker exec -i ${agent} sh -c ${`cat > ${file}`}`
    }
  })

  test('the cache stopped: docker.io fails on both nodes, and the upstream answered', async () => {
    await q()`docker stop ${cache.name}`
    try {
      const r = await verify()
      expect(r.code).toBe(1)
      expect(failed(r.probes)).toEqual([`${agent} docker.io`, `${server} docker.io`].sort())
      const p = r.probes.find((x) => x.status === 'fail') as Probe
      expect(p.detail).toContain(`${upstream.name} answered instead`)
    } finally {
      await q()`docker start ${cache.name}`
      await waitHttp(`http://127.0.0.1:${cache.port}/v2/`)
    }
  })

  test('the local registry disconnected from the cluster network fails its hosts on both nodes', async () => {
    await q()`docker network disconnect ${network} ${registry.name}`
    try {
      const r = await verify()
      expect(r.code).toBe(1)
      expect(failed(r.probes).length).toBe(4)
      const p = r.probes.find((x) => x.status === 'fail') as Probe
      expect(p.detail).toContain(`${registry.name} is not on ${network}`)
    } finally {
      await q()`docker network connect ${network} ${registry.name}`
    }
    expect((await verify()).code).toBe(0)
  })
})
