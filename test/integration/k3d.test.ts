// dev-up and dev-down with k3d: the network and registries exist before the
// cluster, routing goes through registries.yaml, which k3s (here: the k3d
// stand-in, on containerd 2 nodes) reads only when nodes start, and which k3d
// hands the nodes re-serialised, so devreg compares it as data.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { existsSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { $ } from 'zx'
import { criPull } from '../kit/cri.ts'
import { Fixture, freePort, integration, runScript, standInEnv, testRegistry } from '../kit/fixture.ts'
import { NODE_CONTAINERD2_IMAGE, REGISTRY_IMAGE, sampleImage } from '../kit/images.ts'
import { containerId, seed, servedBlobBytes } from '../kit/registry.ts'

const K3S_CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'

interface HostsToml {
  server?: string
  host: Record<string, unknown>
}

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
    cluster: { provider: 'k3d', name: clusterName, network, nodeImage: NODE_CONTAINERD2_IMAGE, waitTimeout: '60s' },
    registry,
    mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache.name, port: cache.port }],
    ...extra,
  })
  const inNode = async (...cmd: string[]) => (await $({ quiet: true })`docker exec ${server} ${cmd}`).stdout
  const hostsToml = async (host: string) => parseToml(await inNode('cat', `${K3S_CERTS_D}/${host}/hosts.toml`)) as unknown as HostsToml
  /** Every container of the cluster (nodes and load balancer) → when it last started. */
  const startTimes = async () => {
    const names = (await $({ quiet: true })`docker ps -a --filter ${`label=k3d.cluster=${clusterName}`} --format {{.Names}}`).stdout
      .trim()
      .split('\n')
    const started = await Promise.all(
      names.map(async (n) => (await $({ quiet: true })`docker inspect --format {{.State.StartedAt}} ${n}`).stdout.trim()),
    )
    return Object.fromEntries(names.map((n, i) => [n, started[i]]))
  }

  /** What the kubectl stand-in keeps for the cluster: namespace/kind-name.yaml, parsed; null when absent. */
  const applied = (path: string) => {
    const file = join(env.DEVREG_STANDIN_STATE, `k3d-${clusterName}`, path)
    return existsSync(file) ? parseYaml(readFileSync(file, 'utf8')) : null
  }
  const addressOn = async (container: string) =>
    (
      await $({ quiet: true })`docker inspect --format ${`{{(index .NetworkSettings.Networks "${network}").IPAddress}}`} ${container}`
    ).stdout.trim()

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
    // No hostname alias and no proxy: k3s keeps its defaults.
    expect(lines[at(/^k3d cluster create/)]).not.toContain('--k3s-arg')

    const r = await devUp()
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    expect(r.stderr).toContain(`created k3d cluster ${clusterName}`)
  })

  test('the nodes run containerd 2, whose effective config reads k3s’s certs.d under io.containerd.cri.v1.images', async () => {
    expect(await inNode('ctr', 'version')).toMatch(/Version:\s+2\./)
    const dump = parseToml(await inNode('containerd', 'config', 'dump')) as {
      plugins: Record<string, { registry?: { config_path?: string } }>
    }
    expect(dump.plugins['io.containerd.cri.v1.images'].registry?.config_path).toBe(K3S_CERTS_D)
  })

  test('k3d hands the nodes its own serialisation of registries.yaml, not devreg’s text', async () => {
    const mine = readFileSync(join(tmpdir(), `devreg-k3d-${clusterName}-registries.yaml`), 'utf8')
    const theirs = await inNode('cat', '/etc/rancher/k3s/registries.yaml')
    expect(theirs).not.toBe(mine)
    expect(theirs).toContain('configs: {}')
    expect(theirs.startsWith('mirrors:\n')).toBe(true)
  })

  test('nodes pull docker.io through the cache and the local registry by its host name, through CRI and the hosts.toml k3s wrote', async () => {
    // The test's upstream is no canonical one, so it is an endpoint too; k3s adds its default endpoint as server.
    expect(await hostsToml('docker.io')).toMatchObject({ server: 'https://registry-1.docker.io/v2' })
    expect(Object.keys((await hostsToml('docker.io')).host)).toEqual([`http://${cache.name}:5000/v2`, `${upstream.url}/v2`])
    const before = await servedBlobBytes(upstream.name)
    const pulled = await criPull(server, 'docker.io/library/alpha:1')
    expect(pulled.error).toBeUndefined()
    expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
    const ref = `127.0.0.1:${registry.port}/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('delta')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    expect((await criPull(server, `localhost:${registry.port}/app:dev`)).error).toBeUndefined()
  })

  test('a second dev-up restarts nothing and reports no change; the load balancer is not treated as a node', async () => {
    const started = await startTimes()
    expect(Object.keys(started).sort()).toEqual([server, `k3d-${clusterName}-serverlb`].sort())
    const id = await containerId(server)
    const r = await devUp('--json')
    expect(r.code).toBe(0)
    const summary = JSON.parse(r.stdout)
    expect(summary.changes).toEqual([])
    expect(summary.drift).toEqual([])
    expect(await startTimes()).toEqual(started)
    expect(await containerId(server)).toBe(id)
    const lb = await $({ quiet: true, nothrow: true })`docker exec ${`k3d-${clusterName}-serverlb`} cat /etc/rancher/k3s/registries.yaml`
    expect(lb.exitCode).not.toBe(0)
  })

  test('pods reach the local registry by its Service: the EndpointSlice holds its address on the network, which hostFromClusterNetwork names', async () => {
    for (const name of [registry.name, cache.name]) {
      expect(applied(`devreg/service-${name}.yaml`).spec.ports).toEqual([
        { name: 'registry', port: 5000, targetPort: 5000, protocol: 'TCP' },
      ])
      const slice = applied(`devreg/endpointslice-${name}.yaml`)
      expect(slice.metadata.labels['kubernetes.io/service-name']).toBe(name)
      expect(slice.endpoints).toEqual([{ addresses: [await addressOn(name)], conditions: { ready: true } }])
    }
    const hosting = parseYaml(applied('kube-public/configmap-local-registry-hosting.yaml').data['localRegistryHosting.v1'])
    expect(hosting.hostFromClusterNetwork).toBe(`${registry.name}.devreg.svc.cluster.local:5000`)
    expect(hosting.hostFromContainerRuntime).toBe(`${registry.name}:5000`)
    // No hostname alias yet: devreg puts nothing into CoreDNS.
    expect(applied('kube-system/configmap-coredns-custom.yaml')).toBeNull()
  })

  test('a registry recreated at another address: the next dev-up updates its EndpointSlice and changes nothing else', async () => {
    const before = await addressOn(registry.name)
    const service = applied(`devreg/service-${registry.name}.yaml`)
    await $({ quiet: true })`docker rm -f ${registry.name}`
    // Another container takes the freed address, so the registry cannot get it back.
    await $({ quiet: true })`docker run -d --name ${fx.name('squatter')} --network ${network} ${REGISTRY_IMAGE}`
    const r = await devUp('--json')
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    const after = await addressOn(registry.name)
    expect(after).not.toBe(before)
    expect(JSON.parse(r.stdout).changes).toEqual([
      '1 registry created or updated',
      `endpointslice.discovery.k8s.io/${registry.name} configured (namespace devreg)`,
    ])
    expect(applied(`devreg/endpointslice-${registry.name}.yaml`).endpoints[0].addresses).toEqual([after])
    expect(applied(`devreg/service-${registry.name}.yaml`)).toEqual(service)
    const pre = await runScript('preflight-dns', ['--config', config, '--json'], { env })
    const checks = (JSON.parse(pre.stdout).checks as { check: string; subject: string; status: string; detail: string }[]).filter(
      (c) => c.check === 'service',
    )
    expect(checks.map((c) => [c.subject, c.status])).toEqual([
      [registry.name, 'pass'],
      [cache.name, 'pass'],
    ])
    expect(JSON.parse((await devUp('--json')).stdout).changes).toEqual([])
  })

  test('preflight finds every node’s mirrors as devreg writes them, in k3d’s serialisation', async () => {
    const r = await runScript('preflight-dns', ['--config', config, '--json'], { env })
    const mirrors = (JSON.parse(r.stdout).checks as { check: string; subject: string; status: string; detail: string }[]).filter(
      (c) => c.check === 'mirror',
    )
    expect(mirrors.length).toBeGreaterThan(0)
    for (const c of mirrors) expect([c.subject, c.status, c.detail]).toEqual([c.subject, 'pass', 'as devreg writes it'])
  })

  test('a changed routing rewrites registries.yaml and restarts the nodes, since k3s reads it only at start', async () => {
    config = fx.config(doc({ aliases: ['docker.io/acme'] }), 'alias.yaml')
    const r = await devUp()
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('restarted them (k3s reads it only at start)')
    expect(Object.keys((await hostsToml('docker.io')).host)).toEqual([
      `http://${registry.name}:5000/v2`,
      `http://${cache.name}:5000/v2`,
      `${upstream.url}/v2`,
    ])
    const ref = `127.0.0.1:${registry.port}/acme/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('delta')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    expect((await criPull(server, 'docker.io/acme/app:dev')).error).toBeUndefined()
  })

  test('a hostname alias is drift on a live cluster; --recreate makes it strict, and docker.io keeps its upstream last', async () => {
    config = fx.config(doc({ aliases: ['docker.io/acme', 'registry.dev.local'] }), 'hostname-alias.yaml')
    const warned = await devUp('--json')
    expect(warned.code).toBe(0)
    expect(JSON.parse(warned.stdout).drift).toEqual([
      `node ${server} runs k3s without --disable-default-registry-endpoint, which the hostname alias registry.dev.local needs to have no public fallback`,
    ])
    expect(warned.stderr).toContain('dev-up --recreate')
    // Without the flag k3s falls back to the alias itself: what the flag is for.
    expect((await hostsToml('registry.dev.local')).server).toBe('https://registry.dev.local/v2')

    const r = await devUp('--recreate')
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    const cmd = JSON.parse((await $({ quiet: true })`docker inspect --format ${'{{json .Config.Cmd}}'} ${server}`).stdout)
    expect(cmd).toContain('--disable-default-registry-endpoint')
    expect(await hostsToml('registry.dev.local')).toEqual({
      host: { [`http://${registry.name}:5000/v2`]: { capabilities: ['pull', 'resolve'] } },
    })
    const hub = await hostsToml('docker.io')
    expect(hub.server).toBeUndefined()
    expect(Object.keys(hub.host)).toEqual([
      `http://${registry.name}:5000/v2`,
      `http://${cache.name}:5000/v2`,
      `${upstream.url}/v2`,
      'https://registry-1.docker.io/v2',
    ])
    const ref = `127.0.0.1:${registry.port}/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('delta')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    expect((await criPull(server, 'registry.dev.local/app:dev')).error).toBeUndefined()

    const again = await devUp('--json')
    expect(JSON.parse(again.stdout)).toMatchObject({ changes: [], drift: [] })
    // In pods the alias resolves to the Service: k3s's CoreDNS imports coredns-custom's *.override keys.
    expect(applied('kube-system/configmap-coredns-custom.yaml').data).toEqual({
      'devreg.override': `# Written by devreg (dev-up): hostname aliases of the local registry, as its Service.\nrewrite name exact registry.dev.local ${registry.name}.devreg.svc.cluster.local\n`,
    })
  })

  test('behind a proxy the nodes get NO_PROXY with every registry name, after the user’s own', async () => {
    // A closed port: anything sent to the proxy fails.
    const proxy = `http://127.0.0.1:${await freePort()}`
    const proxied = { ...env, HTTP_PROXY: proxy, HTTPS_PROXY: proxy, NO_PROXY: 'localhost,127.0.0.1' }
    // The nodes' environment is set when k3d creates them.
    const down = await runScript('dev-down', ['--config', config], { env })
    expect(down.code).toBe(0)
    const up = await runScript('dev-up', ['--config', config], { env: proxied })
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
    const nodeEnv = (JSON.parse((await $({ quiet: true })`docker inspect --format ${'{{json .Config.Env}}'} ${server}`).stdout) as string[])
      .filter((e) => /^no_proxy=/i.test(e))
      .map((e) => e.split('=', 2))
    expect(nodeEnv.map(([k]) => k).sort()).toEqual(['NO_PROXY', 'no_proxy'])
    for (const [, v] of nodeEnv) {
      expect(v.split(',').slice(0, 2)).toEqual(['localhost', '127.0.0.1'])
      expect(v.split(',').slice(-2)).toEqual([registry.name, cache.name])
    }
    expect((await criPull(server, 'docker.io/library/alpha:1')).error).toBeUndefined()
  })

  test('dev-down deletes the cluster and leaves the external network and the registries', async () => {
    const r = await runScript('dev-down', ['--config', config], { env })
    expect(r.code).toBe(0)
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${server}`).exitCode).not.toBe(0)
    expect((await $({ quiet: true, nothrow: true })`docker network inspect ${network}`).exitCode).toBe(0)
    expect(await containerId(cache.name)).toBeTruthy()
  })

  test('dev-down --purge removes what devreg applied in the cluster before deleting it', async () => {
    const up = await devUp()
    expect(up.code).toBe(0)
    expect(applied(`devreg/endpointslice-${registry.name}.yaml`)).not.toBeNull()
    const r = await runScript('dev-down', ['--config', config, '--purge', '--yes'], { env })
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('removed namespace devreg')
    expect(r.stderr).toContain('removed devreg.override of kube-system/coredns-custom')
    expect(applied('_cluster/namespace-devreg.yaml')).toBeNull()
    expect(applied(`devreg/service-${registry.name}.yaml`)).toBeNull()
    expect(applied('kube-system/configmap-coredns-custom.yaml')).toBeNull()
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${server}`).exitCode).not.toBe(0)
  })
})
