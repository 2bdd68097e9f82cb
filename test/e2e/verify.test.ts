// verify on the real kind CLI (kindest/node's containerd, a control plane and a
// worker): every node × registry host passes on a fresh cluster, and each way
// a route silently breaks is caught on the right node and host, with its fix.
// Probe pulls go through the nodes' crictl (cri-tools', as kindest/node ships it).
import { expect, test } from 'bun:test'
import { $ } from 'zx'
import type { VerifyResult } from '../../scripts/lib/cluster/verify-verdicts.ts'
import { integration } from '../kit/fixture.ts'
import { useWorld } from '../kit/world.ts'

const q = () => $({ quiet: true })
const DEAD_PROXY = 'http://127.0.0.1:9'
const PROXY_DROP_IN = '/etc/systemd/system/containerd.service.d/devreg-test-proxy.conf'
const CONTAINERD_CONFIG = '/etc/containerd/config.toml'

integration("verify on the real kind CLI (kindest/node's containerd 2.3, two nodes)", () => {
  const w = useWorld({ cluster: { provider: 'kind', name: 'v', workers: 1 }, config: { aliases: ['registry.dev.local'] } }, async (w) => {
    const r = await w.devUp('--json')
    if (r.code !== 0) console.error(r.stderr)
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/verify: \d+\.\ds/)
    expect(JSON.parse(r.stdout).verify).toEqual({ pass: 8, fail: 0, skip: 0 })
  })
  const { network, upstream, registry, cache, nodes } = w
  const [control, worker] = nodes

  const verify = async () => {
    const r = await w.run('verify', ['--json'])
    return { code: r.code, stderr: r.stderr, ...(JSON.parse(r.stdout) as VerifyResult) }
  }
  /** The registry domains every node is probed for. */
  const hosts = () => [`localhost:${registry.port}`, `${registry.name}:5000`, 'docker.io', 'registry.dev.local']
  /** Runs verify, which must exit 1 failing exactly these probes (NODE DOMAIN); the failed probes. */
  const verifyFails = async (expected: string[]) => {
    const r = await verify()
    expect(r.code).toBe(1)
    const f = r.probes.filter((p) => p.status !== 'pass')
    expect(f.map((p) => `${p.node} ${p.domain}`).sort()).toEqual(expected.sort())
    return f
  }
  // These tests restart containerd more often than systemd's start limit (5 in 10 s) allows; reset-failed clears its count.
  const restartContainerd = async (node: string) => {
    await q()`docker exec ${node} sh -c ${'systemctl daemon-reload && systemctl reset-failed containerd; systemctl restart containerd && until ctr version >/dev/null 2>&1; do sleep 0.2; done'}`
  }
  /** Edits the worker's containerd config with `script` (sh, the file as $1), restarts containerd, checks, and puts both back. */
  const withContainerdConfig = (script: string, check: () => Promise<void>) =>
    w.restoring(
      worker,
      CONTAINERD_CONFIG,
      async () => {
        await q()`docker exec ${worker} sh -c ${script} sh ${CONTAINERD_CONFIG}`
        await restartContainerd(worker)
        await check()
      },
      () => restartContainerd(worker),
    )

  test('a fresh cluster passes for every node × host', async () => {
    const r = await verify()
    expect(r.code).toBe(0)
    expect(r.probes.map((p) => `${p.node} ${p.domain} ${p.status}`).sort()).toEqual(
      [control, worker].flatMap((n) => hosts().map((h) => `${n} ${h} pass`)).sort(),
    )
    const byDomain = Object.fromEntries(r.probes.map((p) => [p.domain, p.answeredBy[0]]))
    expect(byDomain['docker.io']).toBe(cache.name)
    expect(byDomain['registry.dev.local']).toBe(registry.name)
    // How long it takes is the bench's to measure (bench/kind.ts), not a test's.
    console.error(`verify on a warm 2-node cluster: ${r.elapsedMs} ms`)
    const human = await w.run('verify')
    expect(human.stdout).toMatch(new RegExp(`REGISTRY\\s+FIRST REGISTRY\\s+${control.toUpperCase()}\\s+${worker.toUpperCase()}`))
    expect(human.stdout).toMatch(/docker\.io\s+\S+cache-docker-io\s+ok\s+ok/)
    expect(human.stdout).toContain('8 passed, 0 failed, 0 skipped')
  })

  test('the Docker Hub-style upstream sees no request at all for devreg-probe: the cache answers the probe digest from its own storage', async () => {
    // Every verify so far passed (dev-up's and the test above): the whole log counts.
    await verify()
    const logs = await q()`docker logs ${upstream.name}`
    const cacheLogs = await q()`docker logs ${cache.name}`
    const probeLines = (text: string) =>
      text.split('\n').filter((l) => l.includes('response completed') && l.includes('devreg-probe/verify'))
    expect(probeLines(`${logs.stdout}\n${logs.stderr}`)).toEqual([])
    // The cache did serve them from its storage: manifests (and a node's first pull, blobs) by digest, for docker.io, 200.
    const served = probeLines(`${cacheLogs.stdout}\n${cacheLogs.stderr}`)
    expect(served.length).toBeGreaterThan(0)
    expect(
      served.filter((l) => !/\/(manifests|blobs)\/sha256:[0-9a-f]{64}\?ns=docker\.io/.test(l) || !/http\.response\.status=200/.test(l)),
    ).toEqual([])
  })

  test('a hosts.toml removed from one node fails that node and host only, and says dev-up writes it', async () => {
    const file = '/etc/containerd/certs.d/docker.io/hosts.toml'
    await w.restoring(worker, file, async () => {
      await q()`docker exec ${worker} rm ${file}`
      const f = await verifyFails([`${worker} docker.io`])
      expect(f[0].detail).toContain(`has no ${file}`)
      expect(f[0].fix).toContain('`just dev-up` writes it')
    })
  })

  test('a node whose containerd config lacks config_path still reads certs.d: containerd 2.3 defaults to it, and every probe passes', async () => {
    await withContainerdConfig('sed -i /config_path/d "$1"', async () => {
      const dump = (await q()`docker exec ${worker} containerd config dump`).stdout
      expect(dump).toContain("config_path = ''")
      const r = await verify()
      expect(r.probes.filter((p) => p.status !== 'pass')).toEqual([])
      expect(r.code).toBe(0)
    })
  })

  test('a node whose containerd reads another hosts directory fails every host there, with the recreate fix', async () => {
    // A node created without kind's patch (containerd 2.3 reads certs.d by default) gets the CRI registry table here.
    const elsewhere = `grep -q config_path "$1" && sed -i 's#config_path = .*#config_path = "/etc/containerd/elsewhere"#' "$1" || printf '%s\\n' '[plugins."io.containerd.grpc.v1.cri".registry]' '  config_path = "/etc/containerd/elsewhere"' >> "$1"`
    await withContainerdConfig(elsewhere, async () => {
      const f = await verifyFails(hosts().map((h) => `${worker} ${h}`))
      expect(f[0].detail).toContain('does not read /etc/containerd/certs.d')
      expect(f[0].fix).toContain('dev-up --recreate')
    })
  })

  test('with the cache stopped, docker.io fails on both nodes and the report says the upstream answered', async () => {
    await w.stopped(cache.name, async () => {
      const f = await verifyFails([`${control} docker.io`, `${worker} docker.io`])
      expect(f[0].detail).toContain(`${cache.name} is exited`)
      expect(f[0].detail).toContain(`${upstream.name} answered instead`)
      expect(f[0].detail).toContain('the upstream answered')
      expect(f[0].answeredBy).toEqual([upstream.name])
      expect(f[0].fix).toContain('`just dev-registry` starts it')
    })
  })

  test('a registry disconnected from the cluster network fails its host, with the reattach fix', async () => {
    await w.disconnected(cache.name, async () => {
      const f = await verifyFails([`${control} docker.io`, `${worker} docker.io`])
      expect(f[0].detail).toContain(`${cache.name} is not on ${network}`)
      expect(f[0].fix).toContain(`docker network connect ${network} ${cache.name}`)
    })
  })

  test("a proxy in one node's containerd without the registries in NO_PROXY fails that node, and dev-up exits 1 showing it", async () => {
    const dropIn = `[Service]\nEnvironment=HTTP_PROXY=${DEAD_PROXY} HTTPS_PROXY=${DEAD_PROXY}\n`
    await $({
      quiet: true,
      input: dropIn,
    })`docker exec -i ${worker} sh -c ${`mkdir -p $(dirname ${PROXY_DROP_IN}) && cat > ${PROXY_DROP_IN}`}`
    await restartContainerd(worker)
    try {
      const f = await verifyFails(hosts().map((h) => `${worker} ${h}`))
      expect(f[0].detail).toContain(`to the proxy ${DEAD_PROXY}`)
      expect(f[0].fix).toContain('NO_PROXY')
      const up = await w.devUp()
      expect(up.code).toBe(1)
      expect(up.stderr).toContain(`to the proxy ${DEAD_PROXY}`)
      expect(up.stderr).toContain('verify: 4 of 8 probes did not reach their first registry')
      const skipped = await w.devUp('--no-verify', '--json')
      expect(skipped.code).toBe(0)
      expect(JSON.parse(skipped.stdout).verify).toBeNull()
    } finally {
      await q()`docker exec ${worker} rm -f ${PROXY_DROP_IN}`
      await restartContainerd(worker)
    }
    expect((await verify()).code).toBe(0)
  })
})
