// dev-up and dev-down with kind: the kind and kubectl stand-ins run real
// containerd nodes; pulls inside them use the hosts.toml files devreg wrote.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { Fixture, freePort, integration, runScript, standInEnv, testRegistry } from '../support/fixture.ts'
import { NODE_IMAGE, sampleImage } from '../support/images.ts'
import { containerId, manifestBlobs, nodePull, pull, seed, servedBlobBytes, waitStored } from '../support/registry.ts'

integration('dev-up with kind', () => {
  const fx = new Fixture()
  let env: Record<string, string>
  let network: string
  let upstream: { name: string; port: number; url: string }
  let registry: Awaited<ReturnType<typeof testRegistry>>
  let cache: { name: string; port: number }
  let config: string
  let clusterName: string
  let node: string
  const devUp = (...args: string[]) => runScript('dev-up', ['--config', config, ...args], { env })
  const devDown = (...args: string[]) => runScript('dev-down', ['--config', config, ...args], { env })
  const doc = (extra: Record<string, unknown> = {}) => ({
    cluster: { provider: 'kind', name: clusterName, network, nodeImage: NODE_IMAGE, waitTimeout: '60s', ...extra },
    registry,
    mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port }],
    aliases: ['docker.io/acme'],
  })

  beforeAll(async () => {
    env = standInEnv(fx)
    network = await fx.network('kind')
    upstream = await fx.upstream(network)
    for (const s of ['alpha', 'beta', 'gamma', 'zeta'] as const) await seed(upstream.port, s, `library/${s}`)
    registry = await testRegistry(fx)
    cache = { name: fx.name('cache-docker-io'), port: await freePort() }
    clusterName = fx.name('c')
    node = `${clusterName}-control-plane`
    config = fx.config(doc())
    const r = await devUp()
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    for (const p of ['registries', 'cluster', 'mirrors', 'configmap', 'ready']) expect(r.stderr).toMatch(new RegExp(`${p}: \\d+\\.\\d+s`))
    expect(r.stderr).toContain(`docker push localhost:${registry.port}/NAME:TAG`)
  })
  afterAll(async () => {
    await runScript('dev-down', ['--config', config], { env })
    await fx.cleanup()
  })

  test("the node's containerd really reads certs.d (config dump shows config_path)", async () => {
    const dump = await $({ quiet: true })`docker exec ${node} containerd config dump`
    expect(dump.stdout).toContain('config_path = "/etc/containerd/certs.d"')
  })

  test('every registry is on the cluster network, and the ConfigMap says where the local registry is', async () => {
    for (const name of [registry.name, cache.name]) {
      const nets = (await $({ quiet: true })`docker inspect --format ${'{{json .NetworkSettings.Networks}}'} ${name}`).stdout
      expect(Object.keys(JSON.parse(nets))).toContain(network)
    }
    const cm = readFileSync(
      join(env.DEVREG_STANDIN_STATE, `kind-${clusterName}`, 'kube-public', 'configmap-local-registry-hosting.yaml'),
      'utf8',
    )
    expect(cm).toContain(`host: localhost:${registry.port}`)
    expect(cm).toContain(`hostFromClusterNetwork: ${registry.name}:5000`)
  })

  test('1. docker.io/library images pull through the docker.io cache, which fetches them from the upstream and keeps them', async () => {
    const before = await servedBlobBytes(upstream.name)
    const r = await nodePull(node, 'docker.io/library/alpha:1')
    expect(r.output).toContain('done')
    expect(r.ok).toBe(true)
    expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
    await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/alpha', '1'))
  })

  test('2. an image pushed to localhost:PORT from the host pulls in the node under the same name', async () => {
    const ref = `127.0.0.1:${registry.port}/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('delta')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    expect((await nodePull(node, `localhost:${registry.port}/app:dev`)).ok).toBe(true)
    expect((await nodePull(node, `${registry.name}:5000/app:dev`)).ok).toBe(true)
  })

  test('3. the docker.io/acme alias pulls from the local registry, while docker.io/library still comes through the cache', async () => {
    const ref = `127.0.0.1:${registry.port}/acme/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('epsilon')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    expect((await nodePull(node, 'docker.io/acme/app:dev')).ok).toBe(true)
    const before = await servedBlobBytes(upstream.name)
    expect((await nodePull(node, 'docker.io/library/beta:1')).ok).toBe(true)
    expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
    await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/beta', '1'))
  })

  test('4. with the upstream stopped, a cached image still pulls', async () => {
    // Cached from the host, never seen by the node: every blob must come from the cache.
    expect((await pull(`127.0.0.1:${cache.port}/library/zeta:1`)).ok).toBe(true)
    await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/zeta', '1'))
    await $({ quiet: true })`docker stop ${upstream.name}`
    try {
      const before = await servedBlobBytes(cache.name)
      expect((await nodePull(node, 'docker.io/library/zeta:1')).ok).toBe(true)
      // The blobs really came again, from the cache.
      expect(await servedBlobBytes(cache.name)).toBeGreaterThan(before)
    } finally {
      await $({ quiet: true })`docker start ${upstream.name}`
    }
  })

  test('5. with the cache stopped, the node still pulls from the upstream', async () => {
    await $({ quiet: true })`docker stop ${cache.name}`
    try {
      const before = await servedBlobBytes(upstream.name)
      expect((await nodePull(node, 'docker.io/library/gamma:1')).ok).toBe(true)
      expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
    } finally {
      await $({ quiet: true })`docker start ${cache.name}`
    }
  })

  test('7. re-running dev-up on a live cluster changes nothing and says so', async () => {
    const ids = [await containerId(registry.name), await containerId(cache.name), await containerId(node)]
    const r = await devUp('--json')
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('nothing changed')
    expect(JSON.parse(r.stdout).changes).toEqual([])
    expect([await containerId(registry.name), await containerId(cache.name), await containerId(node)]).toEqual(ids)
  })

  test('a hand-edited hosts.toml is put back, and a cluster with another node count is only reported without --recreate', async () => {
    await $({ quiet: true })`docker exec ${node} sh -c ${'echo "# edited" >> /etc/containerd/certs.d/docker.io/hosts.toml'}`
    const fixed = await devUp()
    expect(fixed.stderr).toContain('rewrote /etc/containerd/certs.d/docker.io/hosts.toml')
    config = fx.config(doc({ workers: 1 }), 'workers.yaml')
    const r = await devUp()
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('differs from the config: it has 0 worker nodes, the config 1')
    expect(r.stderr).toContain('dev-up --recreate')
    expect(await containerId(node)).toBeTruthy()
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${`${clusterName}-worker`}`).exitCode).not.toBe(0)
    config = fx.config(doc(), 'devreg.yaml')
  })

  test('6. dev-down then dev-up: the new cluster pulls the same images with zero blob bytes from the upstream', async () => {
    const down = await devDown()
    expect(down.code).toBe(0)
    expect(down.stderr).toContain('registries and caches kept')
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${node}`).exitCode).not.toBe(0)
    expect(await containerId(cache.name)).toBeTruthy()
    const up = await devUp()
    expect(up.code).toBe(0)
    const before = await servedBlobBytes(upstream.name)
    for (const image of ['alpha', 'beta']) expect((await nodePull(node, `docker.io/library/${image}:1`)).ok).toBe(true)
    expect(await servedBlobBytes(upstream.name)).toBe(before)
  })

  test('dev-down of a cluster that does not exist says so and exits 0; --purge keeps the local registry', async () => {
    expect((await devDown()).code).toBe(0)
    const again = await devDown()
    expect(again.code).toBe(0)
    expect(again.stderr).toContain('nothing to delete')
    const purge = await devDown('--purge', '--yes')
    expect(purge.code).toBe(0)
    const volumes = (await $({ quiet: true })`docker volume ls --format {{.Name}}`).stdout
    expect(volumes).toContain(registry.volume)
    expect(volumes).not.toContain(`${cache.name}-data`)
    expect(existsSync(fx.dir)).toBe(true)
  })
})
