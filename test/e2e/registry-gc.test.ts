// registry-gc keeps what a running node holds: the node is a real kind node
// (containerd 2.x) that pulled the tag through CRI, as the kubelet would.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { criPull } from '../kit/cri.ts'
import { Fixture, freePort, integration, kindEnv, rigNodeImages, runScript, testRegistry } from '../kit/fixture.ts'
import { layer, manifestStatus, pushImage, tagsOf } from '../kit/push.ts'

const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000)

integration('registry-gc with a running kind cluster', () => {
  const fx = new Fixture()
  let env: Record<string, string>
  let config: string
  let registry: Awaited<ReturnType<typeof testRegistry>>
  let node: string

  beforeAll(async () => {
    env = kindEnv(fx)
    const network = await fx.network('kind')
    const upstream = await fx.upstream(network)
    registry = await testRegistry(fx)
    const clusterName = fx.name('c')
    node = `${clusterName}-control-plane`
    config = fx.config({
      cluster: { provider: 'kind', name: clusterName, network, nodeImage: rigNodeImages()[0].image, waitTimeout: '60s' },
      registry,
      mirrors: [{ host: 'docker.io', upstream: upstream.url, name: fx.name('cache-docker-io'), port: await freePort() }],
    })
  })
  afterAll(async () => {
    await runScript('dev-down', ['--config', config], { env })
    await fx.cleanup()
  })

  test('a tag a running node holds survives --apply', async () => {
    const up = await runScript('dev-up', ['--config', config], { env })
    expect(up.code, up.stderr).toBe(0)
    const local = `http://127.0.0.1:${registry.port}`
    const old = await pushImage(local, 'gc/held', 'old', { layers: [layer(80_000)], created: daysAgo(4) })
    await pushImage(local, 'gc/held', 'mid', { layers: [layer(80_000)], created: daysAgo(3) })
    await pushImage(local, 'gc/held', 'new', { layers: [layer(80_000)], created: daysAgo(1) })
    const pulled = await criPull(node, `localhost:${registry.port}/gc/held:old`)
    expect(pulled.error).toBeUndefined()
    const r = await runScript('registry-gc', ['--config', config, '--keep-last', '1', '--repo', 'gc/held', '--apply', '--yes'], { env })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/keep +gc\/held:old +a running node holds it/)
    expect(await tagsOf(local, 'gc/held')).toEqual(['new', 'old'])
    expect(await manifestStatus(local, 'gc/held', old.digest)).toBe(200)
  })
})
