// dev-up and dev-down on the real kind CLI, with nodes of each containerd line
// the rig builds (kindest/node's 2.3, Debian sid's 2.x and trixie's 1.7): the
// mirrors phase, preflight, verify (dev-up's last phase), CRI pulls through
// the caches and a warm re-create on each, the rest on kindest/node's. Every
// node pull goes through CRI PullImage (crictl), the call the kubelet makes.
// The nodes run a real kubelet and kubeadm's control plane: what devreg
// applies is read back from the API server, and kubeadm's CoreDNS answers with
// kind's Corefile (test/e2e/pods.test.ts runs pods).
import { expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { $ } from 'zx'
import { containerdVersion, criConfigPath } from '../../scripts/lib/cluster/nodes.ts'
import { criPull, criRemove } from '../kit/cri.ts'
import { queryAFrom } from '../kit/dns.ts'
import { integration, rigNodeImages } from '../kit/fixture.ts'
import { REGISTRY_IMAGE, sampleImage } from '../kit/images.ts'
import { kube } from '../kit/kube.ts'
import { cacheMode, containerId, eventually, manifestBlobs, pull, servedBlobBytes, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const q = () => $({ quiet: true })
/** A port nothing listens on inside a node: a proxy there refuses every connection. */
const DEAD_PROXY = 'http://127.0.0.1:9'

for (const { line, image } of rigNodeImages())
  integration(`dev-up with the real kind CLI (${line} nodes)`, () => {
    const w = useWorld(
      {
        cluster: { provider: 'kind', nodeImage: image },
        seed: ['alpha', 'beta', 'gamma', 'zeta'],
        config: { aliases: ['docker.io/acme'] },
      },
      async (w) => {
        const r = await w.devUp()
        if (r.code !== 0) console.error(r.stderr)
        expect(r.code).toBe(0)
        for (const p of ['registries', 'cluster', 'mirrors', 'in-cluster', 'ready', 'verify'])
          expect(r.stderr).toMatch(new RegExp(`${p}: \\d+\\.\\d+s`))
        expect(r.stderr).toContain(`docker push localhost:${w.registry.port}/NAME:TAG`)
      },
    )
    const { fx, env, network, upstream, registry, cache, clusterName, node } = w
    // Every scenario runs on kindest/node's containerd; the other lines run what depends on containerd's version.
    const onDefaultLine = line === rigNodeImages()[0].line ? test : () => {}

    const cluster = () => kube(env, () => `kind-${clusterName}`)

    test('containerd reads certs.d for CRI pulls; kind patched it, and restarted it, only where it does not by default', async () => {
      const dump = (await q()`docker exec ${node} containerd config dump`).stdout
      const plugins = (parseToml(dump) as { plugins: Record<string, { registry?: { config_path?: string } }> }).plugins
      const version = containerdVersion((await q()`docker exec ${node} containerd --version`).stdout)
      const table = version?.[0] === 1 ? 'io.containerd.grpc.v1.cri' : 'io.containerd.cri.v1.images'
      // containerd 2.3 reads certs.d without config_path, and its dump shows it empty (TESTING.md).
      const byDefault = version !== null && (version[0] > 2 || (version[0] === 2 && version[1] >= 3))
      expect(criConfigPath(dump, version)?.split(':')).toContain('/etc/containerd/certs.d')
      expect(plugins[table].registry?.config_path).toBe(byDefault ? '' : '/etc/containerd/certs.d')
      // The restart kind makes after patching: systemd started containerd twice, else once.
      const starts = (await q()`docker exec ${node} journalctl -u containerd -o cat`).stdout.match(/starting containerd/g) ?? []
      if (byDefault) expect(starts.length).toBe(1)
      else expect(starts.length).toBeGreaterThanOrEqual(2)
    })

    test('preflight after dev-up finds every node reading certs.d and holding its mirror files', async () => {
      const r = await w.run('preflight-dns', ['--json'])
      const checks = JSON.parse(r.stdout).checks as { check: string; place: string; status: string; subject: string }[]
      const inNode = checks.filter((c) => c.place === node && ['containerd', 'mirror'].includes(c.check))
      expect(inNode.length).toBeGreaterThan(1)
      expect(inNode.filter((c) => c.status !== 'pass')).toEqual([])
    })

    test('every registry is on the cluster network, and the ConfigMap says where the local registry is', async () => {
      for (const name of [registry.name, cache.name]) {
        const nets = (await q()`docker inspect --format ${'{{json .NetworkSettings.Networks}}'} ${name}`).stdout
        expect(Object.keys(JSON.parse(nets))).toContain(network)
      }
      const cm = await cluster().get('configmap', 'local-registry-hosting', '-n', 'kube-public')
      expect(parseYaml(cm?.data?.['localRegistryHosting.v1'] ?? '')).toMatchObject({
        host: `localhost:${registry.port}`,
        hostFromClusterNetwork: `${registry.name}.devreg.svc.cluster.local:5000`,
      })
    })

    test('pods reach each registry by its Service, whose EndpointSlice holds the container’s address on the kind network', async () => {
      for (const name of [registry.name, cache.name]) {
        const slice = await cluster().get('endpointslice', name, '-n', 'devreg')
        expect(slice?.metadata.labels?.['kubernetes.io/service-name']).toBe(name)
        expect(slice?.endpoints).toEqual([{ addresses: [await w.addressOn(name)], conditions: { ready: true } }])
        // kube-proxy pairs the Service's port with the EndpointSlice's by name.
        expect(slice?.ports?.[0].name).toBe('registry')
        expect((await cluster().get('service', name, '-n', 'devreg'))?.spec?.ports?.[0].name).toBe('registry')
      }
      // kind's CoreDNS is left alone.
      expect(await cluster().get('configmap', 'coredns-custom', '-n', 'kube-system')).toBeNull()
    })

    test("CoreDNS, with kind's Corefile, resolves each registry's Service name to the Service's cluster IP", async () => {
      // Asked at kube-dns's cluster IP from inside the node, as a pod's resolver asks, once CoreDNS is up.
      const ready = async () => {
        const coredns = await cluster()
          .get('deployment', 'coredns', '-n', 'kube-system')
          .catch(() => null)
        return (coredns?.status?.readyReplicas ?? 0) > 0
      }
      await eventually('a CoreDNS pod ready', ready, 120_000)
      const dns = (await cluster().get('service', 'kube-dns', '-n', 'kube-system'))?.spec?.clusterIP ?? 'no kube-dns Service'
      for (const name of [registry.name, cache.name]) {
        const clusterIP = (await cluster().get('service', name, '-n', 'devreg'))?.spec?.clusterIP ?? 'no Service'
        const asked = `${name}.devreg.svc.cluster.local`
        expect(await queryAFrom(node, dns, asked)).toEqual({ rcode: 'NOERROR', answers: [{ name: asked, type: 'A', data: clusterIP }] })
      }
    })

    test('docker.io/library images pull through the docker.io cache, which fetches them from the upstream and keeps them', async () => {
      const before = await servedBlobBytes(upstream.name)
      const r = await criPull(node, 'docker.io/library/alpha:1')
      expect(r.error).toBeUndefined()
      expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
      await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/alpha', '1'))
    })

    test('an image pushed to localhost:PORT from the host pulls in the node under the same name and by the registry name', async () => {
      const ref = `127.0.0.1:${registry.port}/app:dev`
      await q()`docker tag ${sampleImage('delta')} ${ref}`
      await q()`docker push ${ref}`
      expect((await criPull(node, `localhost:${registry.port}/app:dev`)).error).toBeUndefined()
      expect((await criPull(node, `${registry.name}:5000/app:dev`)).error).toBeUndefined()
    })

    test('the docker.io/acme alias pulls from the local registry, while docker.io/library still comes through the cache', async () => {
      const ref = `127.0.0.1:${registry.port}/acme/app:dev`
      await q()`docker tag ${sampleImage('epsilon')} ${ref}`
      await q()`docker push ${ref}`
      expect((await criPull(node, 'docker.io/acme/app:dev')).error).toBeUndefined()
      const before = await servedBlobBytes(upstream.name)
      expect((await criPull(node, 'docker.io/library/beta:1')).error).toBeUndefined()
      expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
      await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/beta', '1'))
    })

    test('with the upstream stopped, a cached image still pulls', async () => {
      // Cached from the host, never seen by the node: every blob must come from the cache.
      expect((await pull(`127.0.0.1:${cache.port}/library/zeta:1`)).ok).toBe(true)
      await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/zeta', '1'))
      await w.stopped(upstream.name, async () => {
        const before = await servedBlobBytes(cache.name)
        expect((await criPull(node, 'docker.io/library/zeta:1')).error).toBeUndefined()
        expect(await servedBlobBytes(cache.name)).toBeGreaterThan(before)
      })
    })

    test('with the cache stopped, the node still pulls from the upstream', async () => {
      await w.stopped(cache.name, async () => {
        const before = await servedBlobBytes(upstream.name)
        expect((await criPull(node, 'docker.io/library/gamma:1')).error).toBeUndefined()
        expect(await servedBlobBytes(upstream.name)).toBeGreaterThan(before)
      })
    })

    onDefaultLine(
      'when the network dies under the running cache, a cached image pulls in the node within 20 s, with no restart',
      async () => {
        const startedAt = async () => (await q()`docker inspect --format {{.State.StartedAt}} ${cache.name}`).stdout.trim()
        await eventually('the cache in proxy mode', async () => (await cacheMode(cache.name)) === 'proxy', 30_000)
        const started = await startedAt()
        // zeta is cached (see above); the node must fetch it again.
        await criRemove(node, 'docker.io/library/zeta:1')
        await w.dropped(upstream.name, async () => {
          const deadline = Date.now() + 20_000
          // A pull already waiting on the dead upstream when the cache switches falls through to
          // `server` (dead too) and hangs on dial timeouts; the kubelet retries, and so does this,
          // no attempt running past the deadline.
          const attempt = () => criPull(node, 'docker.io/library/zeta:1', { timeoutMs: Math.min(5000, deadline - Date.now()) })
          let pulled = await attempt()
          while (pulled.error && Date.now() + 500 < deadline) {
            await Bun.sleep(500)
            pulled = await attempt()
          }
          expect(pulled.error).toBeUndefined()
          expect(await cacheMode(cache.name)).toBe('offline')
          expect(await startedAt()).toBe(started)
        })
        await eventually('the cache back in proxy mode', async () => (await cacheMode(cache.name)) === 'proxy', 40_000)
      },
    )

    test('re-running dev-up on a live cluster changes nothing and says so', async () => {
      const ids = [await containerId(registry.name), await containerId(cache.name), await containerId(node)]
      // What devreg applies, as the API server versions it: an apply the server finds unchanged writes nothing.
      const applied = [
        ['namespace', 'devreg'],
        ['service', registry.name, '-n', 'devreg'],
        ['endpointslice', registry.name, '-n', 'devreg'],
        ['configmap', 'local-registry-hosting', '-n', 'kube-public'],
      ]
      const versions = async () => Promise.all(applied.map(async (a) => (await cluster().get(...a))?.metadata.resourceVersion))
      const before = await versions()
      expect(before).not.toContain(undefined)
      const r = await w.devUp('--json')
      expect(r.code).toBe(0)
      expect(r.stderr).toContain('nothing changed')
      expect(JSON.parse(r.stdout).changes).toEqual([])
      expect([await containerId(registry.name), await containerId(cache.name), await containerId(node)]).toEqual(ids)
      expect(await versions()).toEqual(before)
    })

    onDefaultLine(
      'a registry recreated at another address: the next dev-up updates its EndpointSlice and changes nothing else',
      async () => {
        const before = await w.addressOn(registry.name)
        await q()`docker rm -f ${registry.name}`
        // Another container takes the freed address, so the registry cannot get it back.
        await q()`docker run -d --name ${fx.name('squatter')} --network ${network} ${REGISTRY_IMAGE}`
        const r = await w.devUp('--json')
        if (r.code !== 0) console.error(r.stderr)
        expect(r.code).toBe(0)
        const after = await w.addressOn(registry.name)
        expect(after).not.toBe(before)
        expect(JSON.parse(r.stdout).changes).toEqual([
          '1 registry created or updated',
          `endpointslice.discovery.k8s.io/${registry.name} configured (namespace devreg)`,
        ])
        expect((await cluster().get('endpointslice', registry.name, '-n', 'devreg'))?.endpoints?.[0].addresses).toEqual([after])
        const pre = await w.run('preflight-dns', ['--json'])
        const services = (JSON.parse(pre.stdout).checks as { check: string; subject: string; status: string }[]).filter(
          (c) => c.check === 'service',
        )
        expect(services.map((c) => [c.subject, c.status])).toEqual([
          [registry.name, 'pass'],
          [cache.name, 'pass'],
        ])
      },
    )

    onDefaultLine('a local image that shadows a cached docker.io image is named in a warning', async () => {
      // alpha is in the docker.io cache; the alias puts the local registry first for all of docker.io.
      await q()`docker tag ${sampleImage('delta')} ${`127.0.0.1:${registry.port}/library/alpha:1`}`
      await q()`docker push ${`127.0.0.1:${registry.port}/library/alpha:1`}`
      const r = await w.devUp()
      expect(r.code).toBe(0)
      expect(r.stderr).toMatch(/library\/alpha.*shadows/)
    })

    onDefaultLine(
      'a hand-edited hosts.toml is put back, and a cluster with another node count is only reported without --recreate',
      async () => {
        await q()`docker exec ${node} sh -c ${'echo "# edited" >> /etc/containerd/certs.d/docker.io/hosts.toml'}`
        const fixed = await w.devUp()
        expect(fixed.stderr).toContain('rewrote /etc/containerd/certs.d/docker.io/hosts.toml')
        w.config = w.configFile({ cluster: { workers: 1 } }, 'workers.yaml')
        const r = await w.devUp()
        expect(r.code).toBe(0)
        expect(r.stderr).toContain('differs from the config: it has 0 worker nodes, the config 1')
        expect(r.stderr).toContain('dev-up --recreate')
        expect(await containerId(node)).toBeTruthy()
        expect((await $({ quiet: true, nothrow: true })`docker inspect ${`${clusterName}-worker`}`).exitCode).not.toBe(0)
        w.config = w.configFile()
      },
    )

    test('dev-down then dev-up: the new cluster pulls the same images with zero blob bytes from the upstream', async () => {
      const down = await w.devDown()
      expect(down.code).toBe(0)
      expect(down.stderr).toContain('registries and caches kept')
      expect((await $({ quiet: true, nothrow: true })`docker inspect ${node}`).exitCode).not.toBe(0)
      expect(await containerId(cache.name)).toBeTruthy()
      const up = await w.devUp()
      expect(up.code).toBe(0)
      const before = await servedBlobBytes(upstream.name)
      // alpha is shadowed by now, gamma was fetched past the stopped cache: beta and zeta are cached.
      for (const name of ['beta', 'zeta']) expect((await criPull(node, `docker.io/library/${name}:1`)).error).toBeUndefined()
      expect(await servedBlobBytes(upstream.name)).toBe(before)
    })

    onDefaultLine(
      'behind a proxy the nodes still pull through the caches: devreg puts its registries in the NO_PROXY kind hands the nodes',
      async () => {
        expect((await w.devDown()).code).toBe(0)
        const proxy = { HTTP_PROXY: DEAD_PROXY, HTTPS_PROXY: DEAD_PROXY, http_proxy: DEAD_PROXY, https_proxy: DEAD_PROXY }
        const up = await w.run('dev-up', [], { env: proxy })
        if (up.code !== 0) console.error(up.stderr)
        expect(up.code).toBe(0)
        // kind copied the proxy into the node, so a pull that bypassed NO_PROXY would fail.
        const nodeEnv = (await q()`docker inspect --format ${'{{json .Config.Env}}'} ${node}`).stdout
        expect(nodeEnv).toContain(`HTTP_PROXY=${DEAD_PROXY}`)
        expect(nodeEnv).toContain(cache.name)
        await criRemove(node, 'docker.io/library/beta:1')
        const before = await servedBlobBytes(cache.name)
        expect((await criPull(node, 'docker.io/library/beta:1')).error).toBeUndefined()
        expect(await servedBlobBytes(cache.name)).toBeGreaterThan(before)
        expect((await criPull(node, `localhost:${registry.port}/app:dev`)).error).toBeUndefined()
      },
    )

    test('dev-down --purge removes what devreg applied in the cluster before deleting it', async () => {
      expect(await cluster().get('endpointslice', registry.name, '-n', 'devreg')).not.toBeNull()
      let r = { code: -1, stderr: '' }
      // The namespace is gone (DELETED comes once the namespace controller has emptied it) before the cluster is.
      const events = await cluster().watchDuring(['namespace', 'devreg'], async () => {
        r = await w.devDown('--purge', '--yes')
      })
      expect(r.code).toBe(0)
      expect(r.stderr).toContain('removed namespace devreg')
      expect(events.at(-1)).toBe('DELETED')
      expect((await $({ quiet: true, nothrow: true })`docker inspect ${node}`).exitCode).not.toBe(0)
    })

    test('dev-down of a cluster that does not exist says so and exits 0; --purge keeps the local registry', async () => {
      expect((await w.devDown()).code).toBe(0)
      const again = await w.devDown()
      expect(again.code).toBe(0)
      expect(again.stderr).toContain('nothing to delete')
      const purge = await w.devDown('--purge', '--yes')
      expect(purge.code).toBe(0)
      const volumes = (await q()`docker volume ls --format {{.Name}}`).stdout
      expect(volumes).toContain(registry.volume)
      expect(volumes).not.toContain(`${cache.name}-data`)
      expect(existsSync(fx.dir)).toBe(true)
    })
  })
