// dev-up, verify and dev-down on the real k3d CLI (v5.9.0, from its Go module)
// in the rig's engine, with the rig's k3s-like nodes (test/images/k3s-node):
// real containerd 2.x under k3s's paths, hosts.toml rendered from the
// registries.yaml k3d hands the nodes, as k3s renders it, at every start. The
// network and registries exist before the cluster; routing goes through
// registries.yaml, which k3s reads only when nodes start and which k3d
// re-serialises, so devreg compares it as data. Node pulls go through the
// nodes' own crictl, the kubelet's CRI path. The server runs a real control
// plane and CoreDNS as k3s deploys it (no kubelet yet): what devreg applies is
// read back from the API server, and names are asked of that CoreDNS.
import { expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { $ } from 'zx'
import type { Probe, VerifyResult } from '../../scripts/lib/cluster/verify-verdicts.ts'
import { criPull } from '../kit/cri.ts'
import { queryA } from '../kit/dns.ts'
import { freePort, integration } from '../kit/fixture.ts'
import { sampleImage } from '../kit/images.ts'
import { k3dRegistriesYaml } from '../kit/k3d-registries.ts'
import { kube } from '../kit/kube.ts'
import { containerId, eventually, manifestBlobs, servedBlobBytes, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const K3S_CERTS_D = '/var/lib/rancher/k3s/agent/etc/containerd/certs.d'
const q = () => $({ quiet: true })

interface HostsToml {
  server?: string
  host: Record<string, unknown>
}

integration('dev-up with the real k3d CLI', () => {
  // The fake upstream is reachable on the cluster network, as Docker Hub is from it.
  const w = useWorld({ cluster: { provider: 'k3d', name: 'k', workers: 1 }, seed: ['alpha', 'beta'] })
  const { env, network, upstream, registry, cache, clusterName } = w
  const [server, agent] = w.nodes
  const inNode = async (node: string, ...cmd: string[]) => (await q()`docker exec ${node} ${cmd}`).stdout
  const hostsToml = async (host: string, node = server) =>
    parseToml(await inNode(node, 'cat', `${K3S_CERTS_D}/${host}/hosts.toml`)) as unknown as HostsToml
  /** Every container of the cluster (nodes and load balancer) → when it last started. */
  const startTimes = async () => {
    const names = (await q()`docker ps -a --filter ${`label=k3d.cluster=${clusterName}`} --format {{.Names}}`).stdout.trim().split('\n')
    const started = await Promise.all(names.map(async (n) => (await q()`docker inspect --format {{.State.StartedAt}} ${n}`).stdout.trim()))
    return Object.fromEntries(names.map((n, i) => [n, started[i]]))
  }
  const cluster = () => kube(env, () => `k3d-${clusterName}`)
  const verify = async () => {
    const r = await w.run('verify', ['--json'])
    return { code: r.code, ...(JSON.parse(r.stdout) as VerifyResult) }
  }
  const failed = (probes: Probe[]) =>
    probes
      .filter((p) => p.status !== 'pass')
      .map((p) => `${p.node} ${p.domain}`)
      .sort()
  const pushLocal = async (sample: Parameters<typeof sampleImage>[0], path: string) => {
    const ref = `127.0.0.1:${registry.port}/${path}`
    await q()`docker tag ${sampleImage(sample)} ${ref}`
    await q()`docker push ${ref}`
  }

  test('the network and every registry exist before the cluster, which k3d creates on that network; verify passes on every node', async () => {
    // Without a network of its own, devreg creates k3d-<name> first.
    const fresh = w.configFile({ cluster: { network: null } }, 'fresh.yaml')
    const dry = await w.run('dev-up', ['--dry-run'], { config: fresh })
    expect(dry.code).toBe(0)
    const lines = dry.stdout.split('\n')
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l))
    expect(at(/^docker network create .*k3d-/)).toBeGreaterThanOrEqual(0)
    expect(at(/^docker network create/)).toBeLessThan(at(/^docker run .*--name \S+-cache-docker-io /))
    expect(at(/^docker run .*--name \S+-cache-docker-io /)).toBeLessThan(at(/^k3d cluster create/))
    expect(lines[at(/^k3d cluster create/)]).toContain(`--network k3d-${clusterName} --registry-config`)
    // No hostname alias and no proxy: k3s keeps its defaults.
    expect(lines[at(/^k3d cluster create/)]).not.toContain('--k3s-arg')

    const r = await w.devUp('--json')
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    expect(r.stderr).toContain(`created k3d cluster ${clusterName}`)
    // Every node × host (docker.io, the local registry's two names) pulled through its first registry.
    expect(JSON.parse(r.stdout).verify).toEqual({ pass: 6, fail: 0, skip: 0 })
  })

  test('k3d ran the image’s k3s with its own arguments: containerd 2 on k3s’s socket, reading k3s’s certs.d', async () => {
    const cmd = async (node: string) =>
      JSON.parse((await q()`docker inspect --format ${'{{json .Config.Cmd}}'} ${node}`).stdout) as string[]
    expect((await cmd(server)).slice(0, 2)).toEqual(['server', '--tls-san'])
    expect(await cmd(agent)).toEqual(['agent'])
    expect((await q()`docker logs ${server}`).stderr).toContain('k3s is up and running')
    expect(await inNode(server, 'ctr', 'version')).toMatch(/Server:\s+Version:\s+v2\./)
    const dump = parseToml(
      await inNode(server, 'containerd', '--config', '/var/lib/rancher/k3s/agent/etc/containerd/config.toml', 'config', 'dump'),
    ) as { plugins: Record<string, { registry?: { config_path?: string } }> }
    expect(dump.plugins['io.containerd.cri.v1.images'].registry?.config_path).toBe(K3S_CERTS_D)
  })

  test('k3d hands the nodes its own serialisation of registries.yaml, which the unit tests’ model of it matches', async () => {
    const mine = readFileSync(join(tmpdir(), `devreg-k3d-${clusterName}-registries.yaml`), 'utf8')
    const endpoints = parseYaml(mine).mirrors as Record<string, { endpoint: string[] }>
    for (const node of [server, agent]) {
      const theirs = await inNode(node, 'cat', '/etc/rancher/k3s/registries.yaml')
      expect(theirs).not.toBe(mine)
      expect(theirs).toBe(k3dRegistriesYaml(Object.fromEntries(Object.entries(endpoints).map(([h, m]) => [h, m.endpoint]))))
    }
  })

  test('nodes pull docker.io through the cache and the local registry by its host name, through crictl and the hosts.toml k3s wrote', async () => {
    // The test's upstream is no canonical one, so it is an endpoint too; k3s adds its default endpoint as server.
    expect(await hostsToml('docker.io')).toMatchObject({ server: 'https://registry-1.docker.io/v2' })
    expect(Object.keys((await hostsToml('docker.io', agent)).host)).toEqual([`http://${cache.name}:5000/v2`, `${upstream.url}/v2`])
    const before = await servedBlobBytes(upstream.name)
    expect((await criPull(agent, 'docker.io/library/alpha:1')).error).toBeUndefined()
    expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
    await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/alpha', '1'))
    await pushLocal('delta', 'app:dev')
    expect((await criPull(server, `localhost:${registry.port}/app:dev`)).error).toBeUndefined()
  })

  test('k3d wrote every registry on the cluster network into CoreDNS’s NodeHosts, in the manifest k3s stages', async () => {
    const manifest = parseAllDocuments(await inNode(server, 'cat', '/var/lib/rancher/k3s/server/manifests/coredns.yaml')).map((d) =>
      d.toJS(),
    )
    const nodeHosts = String(manifest.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'coredns').data.NodeHosts)
    for (const name of [registry.name, cache.name, upstream.name]) expect(nodeHosts).toContain(`${await w.addressOn(name)} ${name}\n`)
    expect(nodeHosts).toContain('host.k3d.internal')
    // k3s's deploy loop applies the rewritten manifest within 15 s.
    await eventually(
      'NodeHosts in the coredns ConfigMap',
      async () => {
        const coredns = await cluster()
          .get('configmap', 'coredns', '-n', 'kube-system')
          .catch(() => null)
        return coredns?.data?.NodeHosts === nodeHosts
      },
      40_000,
    )
  })

  test('a second dev-up restarts nothing and reports no change; the load balancer is not treated as a node', async () => {
    const started = await startTimes()
    expect(Object.keys(started).sort()).toEqual([agent, server, `k3d-${clusterName}-serverlb`].sort())
    const id = await containerId(server)
    const r = await w.devUp('--json')
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
      expect((await cluster().get('service', name, '-n', 'devreg'))?.spec?.ports).toEqual([
        { name: 'registry', port: 5000, targetPort: 5000, protocol: 'TCP' },
      ])
      const slice = await cluster().get('endpointslice', name, '-n', 'devreg')
      expect(slice?.metadata.labels?.['kubernetes.io/service-name']).toBe(name)
      expect(slice?.endpoints).toEqual([{ addresses: [await w.addressOn(name)], conditions: { ready: true } }])
    }
    const cm = await cluster().get('configmap', 'local-registry-hosting', '-n', 'kube-public')
    const hosting = parseYaml(cm?.data?.['localRegistryHosting.v1'] ?? '')
    expect(hosting.hostFromClusterNetwork).toBe(`${registry.name}.devreg.svc.cluster.local:5000`)
    expect(hosting.hostFromContainerRuntime).toBe(`${registry.name}:5000`)
    // No hostname alias yet: devreg puts nothing into CoreDNS.
    expect(await cluster().get('configmap', 'coredns-custom', '-n', 'kube-system')).toBeNull()
  })

  test('preflight finds every node’s mirrors as devreg writes them, in k3d’s serialisation, and every Service', async () => {
    const r = await w.run('preflight-dns', ['--json'])
    const checks = JSON.parse(r.stdout).checks as { check: string; subject: string; place: string; status: string; detail: string }[]
    const mirrors = checks.filter((c) => c.check === 'mirror')
    expect(new Set(mirrors.map((c) => c.place))).toEqual(new Set([server, agent]))
    for (const c of mirrors) expect([c.subject, c.status, c.detail]).toEqual([c.subject, 'pass', 'as devreg writes it'])
    expect(checks.filter((c) => c.check === 'service').map((c) => [c.subject, c.status])).toEqual([
      [registry.name, 'pass'],
      [cache.name, 'pass'],
    ])
  })

  test('verify: every node × host passes through /bin/crictl in the nodes', async () => {
    const r = await verify()
    expect(r.code).toBe(0)
    expect(r.probes.length).toBe(6)
    expect(new Set(r.probes.map((p) => p.node))).toEqual(new Set([server, agent]))
  })

  test("verify: a hosts.toml missing from one node's k3s certs.d fails that node and host, with k3d's fix", async () => {
    const file = `${K3S_CERTS_D}/docker.io/hosts.toml`
    await w.restoring(agent, file, async () => {
      await q()`docker exec ${agent} rm ${file}`
      const r = await verify()
      expect(r.code).toBe(1)
      expect(failed(r.probes)).toEqual([`${agent} docker.io`])
      const p = r.probes.find((x) => x.status === 'fail') as Probe
      expect(p.detail).toContain(`has no ${file}`)
      expect(p.fix).toContain('restarts the nodes')
    })
  })

  test('a changed routing rewrites registries.yaml and restarts the nodes, whose k3s renders it again', async () => {
    w.config = w.configFile({ aliases: ['docker.io/acme'] }, 'alias.yaml')
    const r = await w.devUp()
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('restarted them (k3s reads it only at start)')
    for (const node of [server, agent])
      expect(Object.keys((await hostsToml('docker.io', node)).host)).toEqual([
        `http://${registry.name}:5000/v2`,
        `http://${cache.name}:5000/v2`,
        `${upstream.url}/v2`,
      ])
    await pushLocal('epsilon', 'acme/app:dev')
    expect((await criPull(agent, 'docker.io/acme/app:dev')).error).toBeUndefined()
  })

  test('a hostname alias is drift on a live cluster; --recreate makes it strict, docker.io keeps its upstream last, and CoreDNS gets the alias', async () => {
    w.config = w.configFile({ aliases: ['docker.io/acme', 'registry.dev.local'] }, 'hostname-alias.yaml')
    const warned = await w.devUp('--json')
    expect(warned.code).toBe(0)
    // devreg names the first node it finds in docker's list, server or agent.
    expect(JSON.parse(warned.stdout).drift).toEqual([
      expect.stringMatching(
        new RegExp(
          `^node (${server}|${agent}) runs k3s without --disable-default-registry-endpoint, which the hostname alias registry.dev.local needs to have no public fallback$`,
        ),
      ),
    ])
    expect(warned.stderr).toContain('dev-up --recreate')
    // Without the flag k3s falls back to the alias itself: what the flag is for.
    expect((await hostsToml('registry.dev.local')).server).toBe('https://registry.dev.local/v2')

    const r = await w.devUp('--recreate')
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    for (const node of [server, agent]) {
      // k3d passed --k3s-arg's flag to k3s on every node, which then wrote no server.
      expect((await q()`docker inspect --format ${'{{json .Config.Cmd}}'} ${node}`).stdout).toContain('--disable-default-registry-endpoint')
      expect(await hostsToml('registry.dev.local', node)).toEqual({
        host: { [`http://${registry.name}:5000/v2`]: { capabilities: ['pull', 'resolve'] } },
      })
      const hub = await hostsToml('docker.io', node)
      expect(hub.server).toBeUndefined()
      expect(Object.keys(hub.host)).toEqual([
        `http://${registry.name}:5000/v2`,
        `http://${cache.name}:5000/v2`,
        `${upstream.url}/v2`,
        'https://registry-1.docker.io/v2',
      ])
    }
    await pushLocal('delta', 'app:dev')
    expect((await criPull(server, 'registry.dev.local/app:dev')).error).toBeUndefined()
    // Never pushed: the alias has nowhere else to go.
    expect((await criPull(server, 'registry.dev.local/never-pushed:1')).error).toBeDefined()

    const again = await w.devUp('--json')
    expect(JSON.parse(again.stdout)).toMatchObject({ changes: [], drift: [] })
    // In pods the alias resolves to the Service: k3s's CoreDNS imports coredns-custom's *.override keys.
    expect(await inNode(server, 'cat', '/var/lib/rancher/k3s/server/manifests/coredns.yaml')).toContain(
      'import /etc/coredns/custom/*.override',
    )
    expect((await cluster().get('configmap', 'coredns-custom', '-n', 'kube-system'))?.data).toEqual({
      'devreg.override': `# Written by devreg (dev-up): hostname aliases of the local registry, as its Service.\nrewrite name exact registry.dev.local ${registry.name}.devreg.svc.cluster.local\n`,
    })
    // CoreDNS answers the alias, under the name asked, with the Service's address, as it answers the Service's own name.
    const clusterIP = (await cluster().get('service', registry.name, '-n', 'devreg'))?.spec?.clusterIP ?? 'no Service'
    const dns = await w.addressOn(server)
    const service = `${registry.name}.devreg.svc.cluster.local`
    expect(await queryA(dns, service)).toEqual({ rcode: 'NOERROR', answers: [{ name: service, type: 'A', data: clusterIP }] })
    // The override reaches CoreDNS as a file of the coredns-custom volume, which its reload plugin re-reads.
    await eventually(
      'CoreDNS answering registry.dev.local',
      async () => (await queryA(dns, 'registry.dev.local').catch(() => null))?.rcode === 'NOERROR',
      90_000,
    )
    expect(await queryA(dns, 'registry.dev.local')).toEqual({
      rcode: 'NOERROR',
      answers: [{ name: 'registry.dev.local', type: 'A', data: clusterIP }],
    })
  })

  test('dev-down then dev-up: the new cluster pulls the same image with zero blob bytes from the upstream', async () => {
    const down = await w.devDown()
    expect(down.code).toBe(0)
    expect(down.stderr).toContain('registries and caches kept')
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${server}`).exitCode).not.toBe(0)
    const up = await w.devUp()
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
    const before = await servedBlobBytes(upstream.name)
    for (const node of [server, agent]) expect((await criPull(node, 'docker.io/library/alpha:1')).error).toBeUndefined()
    expect(await servedBlobBytes(upstream.name)).toBe(before)
  })

  test('behind a proxy the nodes get NO_PROXY with every registry name, after the user’s own', async () => {
    // A closed port: anything sent to the proxy fails.
    const proxy = `http://127.0.0.1:${await freePort()}`
    // 0.0.0.0 too: k3d's kubeconfig names the API server there, which Go's proxy rules do not count as loopback,
    // so kubectl behind a proxy needs it (a user's own kubectl as much as devreg's).
    const proxied = { HTTP_PROXY: proxy, HTTPS_PROXY: proxy, NO_PROXY: 'localhost,127.0.0.1,0.0.0.0' }
    // The nodes' environment is set when k3d creates them.
    expect((await w.devDown()).code).toBe(0)
    const up = await w.run('dev-up', [], { env: proxied })
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
    for (const node of [server, agent]) {
      const nodeEnv = (JSON.parse((await q()`docker inspect --format ${'{{json .Config.Env}}'} ${node}`).stdout) as string[])
        .filter((e) => /^no_proxy=/i.test(e))
        .map((e) => e.split('=', 2))
      expect(nodeEnv.map(([k]) => k).sort()).toEqual(['NO_PROXY', 'no_proxy'])
      for (const [, v] of nodeEnv) {
        expect(v.split(',').slice(0, 3)).toEqual(['localhost', '127.0.0.1', '0.0.0.0'])
        expect(v.split(',').slice(-2)).toEqual([registry.name, cache.name])
      }
    }
    expect((await criPull(agent, 'docker.io/library/beta:1')).error).toBeUndefined()
  })

  test('dev-down deletes the cluster and leaves the external network and the registries', async () => {
    const r = await w.devDown()
    expect(r.code).toBe(0)
    expect((await q()`docker ps -a --filter ${`label=k3d.cluster=${clusterName}`} --format {{.Names}}`).stdout.trim()).toBe('')
    expect((await q()`docker volume ls --filter ${`label=k3d.cluster=${clusterName}`} --format {{.Name}}`).stdout.trim()).toBe('')
    expect((await $({ quiet: true, nothrow: true })`docker network inspect ${network}`).exitCode).toBe(0)
    expect(await containerId(cache.name)).toBeTruthy()
    expect(await containerId(registry.name)).toBeTruthy()
  })

  test('dev-down --purge removes what devreg applied in the cluster before deleting it', async () => {
    const up = await w.devUp()
    expect(up.code).toBe(0)
    expect(await cluster().get('endpointslice', registry.name, '-n', 'devreg')).not.toBeNull()
    expect(await cluster().get('configmap', 'coredns-custom', '-n', 'kube-system')).not.toBeNull()
    let r = { code: -1, stderr: '' }
    // Both are gone (DELETED; the namespace once its controller has emptied it) before the cluster is.
    let namespace: string[] = []
    const custom = await cluster().watchDuring(['configmap', 'coredns-custom', '-n', 'kube-system'], async () => {
      namespace = await cluster().watchDuring(['namespace', 'devreg'], async () => {
        r = await w.devDown('--purge', '--yes')
      })
    })
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('removed namespace devreg')
    expect(r.stderr).toContain('removed devreg.override of kube-system/coredns-custom')
    expect(namespace.at(-1)).toBe('DELETED')
    expect(custom.at(-1)).toBe('DELETED')
    expect((await $({ quiet: true, nothrow: true })`docker inspect ${server}`).exitCode).not.toBe(0)
  })
})
