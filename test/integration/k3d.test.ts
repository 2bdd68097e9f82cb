// dev-up and dev-down with k3d: the network and registries exist before the
// cluster, routing goes through registries.yaml, which k3s (here: the k3d
// stand-in) reads only when nodes start.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { $ } from 'zx'
import { Fixture, freePort, integration, runScript, standInEnv, testRegistry } from '../support/fixture.ts'
import { NODE_IMAGE, sampleImage } from '../support/images.ts'
import { containerId, nodePull, seed, servedBlobBytes } from '../support/registry.ts'

const K3S_CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'

integration('dev-up with k3d', () => {
  const fx = new Fixture()
  let env: Record<string, string>
  let upstream: { name: string; port: number; url: string }
  let registry: Awaited<ReturnType<typeof testRegistry>>
  let cache: { name: string; port: number }
  let clusterName: string
  let network: string
  let server: string
  let config: string
  const devUp = (...args: string[]) => runScript('dev-up', ['--config', config, ...args], { env })
  const doc = (extra: Record<string, unknown> = {}) => ({
    cluster: { provider: 'k3d', name: clusterName, network, nodeImage: NODE_IMAGE, waitTimeout: '60s' },
    registry,
    mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port }],
    ...extra,
  })

  beforeAll(async () => {
    env = standInEnv(fx)
    clusterName = fx.name('k')
    // The fake upstream is reachable on the cluster network, as Docker Hub is from it.
    network = await fx.network('k3d')
    upstream = await fx.upstream(network)
    await seed(upstream.port, 'alpha', 'library/alpha')
    registry = await testRegistry(fx)
    cache = { name: fx.name('cache'), port: await freePort() }
    server = `k3d-${clusterName}-server-0`
    config = fx.config(doc())
  })
  afterAll(async () => {
    await runScript('dev-down', ['--config', config], { env })
    await fx.cleanup()
  })

  test('the network and every registry exist before the cluster, which is created on that network', async () => {
    // Without a network of its own, devreg creates k3d-<name> first.
    const fresh = fx.config({ ...doc(), cluster: { ...doc().cluster, network: null } }, 'fresh.yaml')
    const dry = await runScript('dev-up', ['--config', fresh, '--dry-run'], { env })
    expect(dry.code).toBe(0)
    const lines = dry.stdout.split('\n')
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l))
    expect(at(/^docker network create .*k3d-/)).toBeGreaterThanOrEqual(0)
    expect(at(/^docker network create/)).toBeLessThan(at(/^docker run .*--name \S+-cache /))
    expect(at(/^docker run .*--name \S+-cache /)).toBeLessThan(at(/^k3d cluster create/))
    expect(lines[at(/^k3d cluster create/)]).toContain(`--network k3d-${clusterName} --registry-config`)

    const r = await devUp()
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    expect(r.stderr).toContain(`created k3d cluster ${clusterName}`)
  })

  test('nodes pull docker.io through the cache and the local registry by its host name, via the hosts.toml k3s wrote', async () => {
    const hosts = (await $({ quiet: true })`docker exec ${server} cat ${`${K3S_CERTS_D}/docker.io/hosts.toml`}`).stdout
    expect(hosts).toContain(`[host."http://${cache.name}:5000/v2"]`)
    const before = await servedBlobBytes(upstream.name)
    expect((await nodePull(server, 'docker.io/library/alpha:1', K3S_CERTS_D)).ok).toBe(true)
    expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
    const ref = `127.0.0.1:${registry.port}/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('delta')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    expect((await nodePull(server, `localhost:${registry.port}/app:dev`, K3S_CERTS_D)).ok).toBe(true)
  })

  test('the load balancer is not treated as a node, and a re-run changes nothing', async () => {
    const id = await containerId(server)
    const r = await devUp('--json')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout).changes).toEqual([])
    expect(await containerId(server)).toBe(id)
    const lb = await $({ quiet: true, nothrow: true })`docker exec ${`k3d-${clusterName}-serverlb`} cat /etc/rancher/k3s/registries.yaml`
    expect(lb.exitCode).not.toBe(0)
  })

  test('a changed routing rewrites registries.yaml and restarts the nodes, since k3s reads it only at start', async () => {
    config = fx.config(doc({ aliases: ['registry.dev.local'] }), 'alias.yaml')
    const r = await devUp()
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('restarted them (k3s reads it only at start)')
    const hosts = (await $({ quiet: true })`docker exec ${server} cat ${`${K3S_CERTS_D}/registry.dev.local/hosts.toml`}`).stdout
    expect(hosts).toContain(`[host."http://${registry.name}:5000/v2"]`)
    expect((await nodePull(server, 'registry.dev.local/app:dev', K3S_CERTS_D)).ok).toBe(true)
  })

  test('dev-down deletes the cluster and leaves the external network and the registries', async () => {
    const r = await runScript('dev-down', ['--config', config], { env })
    expect(r.code).toBe(0)
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${server}`).exitCode).not.toBe(0)
    expect((await $({ quiet: true, nothrow: true })`docker network inspect ${network}`).exitCode).toBe(0)
    expect(await containerId(cache.name)).toBeTruthy()
  })
})
