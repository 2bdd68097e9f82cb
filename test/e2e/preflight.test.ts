// preflight-dns against real resolution: this machine's resolver reading an
// /etc/hosts of the test's own (bind-mounted in a private mount namespace),
// Docker's DNS on the cluster network (a container's network alias), the
// nodes' own /etc/hosts, real registries, and the nodes of the real kind and
// k3d CLIs.
import { beforeAll, describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import type { Check } from '../../scripts/lib/machine/preflight.ts'
import { integration, ROOT, rigK3sImage } from '../kit/fixture.ts'
import { REGISTRY_IMAGE } from '../kit/images.ts'
import { eventually } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const q = () => $({ quiet: true })

interface Report {
  code: number
  stdout: string
  stderr: string
  checks: Check[]
  /** The one check with this name, subject and place. */
  at: (check: string, subject: string, place: string) => Check
}

integration('preflight-dns', () => {
  const w = useWorld({ cluster: { provider: 'kind' }, config: { aliases: ['registry.dev.local'] } })
  const { fx, env, network, registry, cache, node } = w
  const names = {
    /** A container's alias on the cluster network, and in the test's /etc/hosts. */
    svc: `${fx.prefix}svc.test`,
    /** Only in the node's /etc/hosts. */
    nodeOnly: `${fx.prefix}node-only.test`,
    /** Mapped to another address than the config's, on the host and in the node. */
    wrong: `${fx.prefix}wrong.test`,
    /** Nowhere. */
    missing: `${fx.prefix}missing.invalid`,
  }
  let service: { name: string; ip: string }
  let hostsText: string

  beforeAll(async () => {
    const svc = fx.name('svc')
    await q()`docker run -d --name ${svc} --network ${network} --network-alias ${names.svc} ${REGISTRY_IMAGE}`
    service = { name: svc, ip: await w.addressOn(svc) }
    hostsText = `127.0.0.1 localhost\n${service.ip} ${names.svc}\n10.99.0.1 ${names.wrong}\n`
    w.amend({ hosts: [{ name: names.svc, address: service.ip }] })
    const up = await w.devUp()
    if (up.code !== 0) console.error(up.stderr)
    expect(up.code).toBe(0)
  })

  /** Runs preflight with `hostsText` as this machine's /etc/hosts, in a mount namespace of its own. */
  async function preflight(args: string[], opts: { config?: string; hosts?: string } = {}): Promise<Report> {
    const hostsFile = join(fx.dir, `hosts-${Math.random().toString(36).slice(2)}`)
    writeFileSync(hostsFile, opts.hosts ?? hostsText)
    const bun = join(ROOT, 'node_modules/.bin/bun')
    const mountHosts = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
    const p = await $({
      nothrow: true,
      quiet: true,
      input: '',
      env: { ...process.env, ...env, NO_COLOR: '1', DEVREG_CONFIG: '' },
    })`unshare -m sh -c ${mountHosts} sh ${hostsFile} ${bun} ${join(ROOT, 'scripts/preflight-dns.ts')} --config ${opts.config ?? w.config} --json ${args}`
    let checks: Check[] = []
    try {
      checks = JSON.parse(p.stdout).checks
    } catch {
      throw new Error(`preflight printed no JSON (exit ${p.exitCode}):\n${p.stdout}\n${p.stderr}`)
    }
    const at = (check: string, subject: string, place: string) => {
      const found = checks.filter((c) => c.check === check && c.subject === subject && c.place === place)
      if (found.length !== 1)
        throw new Error(`${found.length} checks ${check} ${subject} @ ${place} in:\n${JSON.stringify(checks, null, 1)}`)
      return found[0]
    }
    return { code: p.exitCode ?? -1, stdout: p.stdout, stderr: p.stderr, checks, at }
  }

  test('a healthy setup passes everywhere: names, registries, every mirror file, containerd; exit 0', async () => {
    const r = await preflight([])
    if (r.code !== 0) console.error(r.stdout, r.stderr)
    expect(r.code).toBe(0)
    for (const place of ['host', 'container', node]) expect(r.at('resolve', names.svc, place)).toMatchObject({ status: 'pass' })
    expect(r.at('resolve', names.svc, node).detail).toBe(service.ip)
    for (const reg of [registry.name, cache.name]) {
      expect(r.at('resolve', reg, 'container').status).toBe('pass')
      expect(r.at('resolve', reg, node).status).toBe('pass')
      expect(r.at('registry', reg, 'host')).toMatchObject({ status: 'pass', detail: 'HTTP 200, registry/2.0' })
      expect(r.at('registry', reg, node)).toMatchObject({ status: 'pass', detail: 'HTTP 200, registry/2.0' })
    }
    for (const host of [`localhost:${registry.port}`, `${registry.name}:5000`, 'docker.io', 'registry.dev.local'])
      expect(r.at('mirror', host, node).status).toBe('pass')
    expect(r.at('containerd', 'config_path', node).status).toBe('pass')
    expect(r.checks.filter((c) => c.status === 'fail')).toEqual([])
  })

  test('the human report is a table of check by place, with a tally', async () => {
    const r = await preflight([names.svc])
    const human = await $({
      nothrow: true,
      quiet: true,
      input: '',
      env: { ...process.env, ...env, NO_COLOR: '1' },
    })`${join(ROOT, 'node_modules/.bin/bun')} ${join(ROOT, 'scripts/preflight-dns.ts')} --config ${w.config} ${registry.name}`
    expect(human.exitCode).toBe(0)
    const lines = human.stdout.split('\n')
    // The cluster column holds checks of the cluster's API objects (the registry's Service).
    expect(lines[0].split(/\s+/)).toEqual(['CHECK', 'NAME', 'HOST', 'CONTAINER', node.toUpperCase(), 'CLUSTER'])
    expect(lines[1].split(/\s+/)).toEqual(['resolve', registry.name, '-', 'ok', 'ok', '-'])
    expect(lines[2].split(/\s+/)).toEqual(['registry', registry.name, 'ok', '-', 'ok', '-'])
    expect(human.stdout).toMatch(/\n\d+ passed, 0 failed, 0 warnings, 0 skipped\n$/)
    expect(r.code).toBe(0)
  })

  test('a name that does not resolve, one that resolves to the wrong address, one only a node knows: each with its fix', async () => {
    await q()`docker exec ${node} sh -c ${`printf '10.77.0.1 %s\n10.99.0.3 %s\n' "$1" "$2" >> /etc/hosts`} sh ${names.nodeOnly} ${names.wrong}`
    const withAll = w.configFile(
      {
        hosts: [
          { name: names.svc, address: service.ip },
          { name: names.nodeOnly, address: '10.77.0.1' },
          { name: names.wrong, address: '10.99.0.2' },
          { name: names.missing, address: '10.88.0.1' },
        ],
      },
      'names.yaml',
    )
    const r = await preflight([names.nodeOnly, names.wrong, names.missing], { config: withAll })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('checks failed')

    // ENOTFOUND where a DNS server says no such name, EAI_AGAIN where none answers (the rig's network namespace).
    expect(r.at('resolve', names.missing, 'host')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/^does not resolve \((ENOTFOUND|EAI_AGAIN)\)$/),
    })
    expect(r.at('resolve', names.missing, 'host').fix).toContain(
      `\`just preflight --fix-hosts\` adds "10.88.0.1 ${names.missing}" to /etc/hosts`,
    )
    for (const place of ['container', node]) {
      expect(r.at('resolve', names.missing, place)).toMatchObject({ status: 'fail', detail: `does not resolve on network ${network}` })
      expect(r.at('resolve', names.missing, place).fix).toContain(`docker network connect --alias ${names.missing} ${network} CONTAINER`)
    }

    expect(r.at('resolve', names.wrong, 'host')).toMatchObject({
      status: 'fail',
      detail: 'resolves to 10.99.0.1, expected 10.99.0.2',
      fix: `/etc/hosts line 3 maps ${names.wrong} to 10.99.0.1: change it to 10.99.0.2 (devreg leaves lines it did not write alone)`,
    })
    expect(r.at('resolve', names.wrong, node)).toMatchObject({ status: 'fail', detail: 'resolves to 10.99.0.3, expected 10.99.0.2' })
    expect(r.at('resolve', names.wrong, node).fix).toContain(`\`docker exec ${node} cat /etc/hosts\``)

    expect(r.at('resolve', names.nodeOnly, node)).toMatchObject({ status: 'pass', detail: '10.77.0.1' })
    expect(r.at('resolve', names.nodeOnly, 'container').status).toBe('fail')
    expect(r.at('resolve', names.nodeOnly, 'container').fix).toContain("containers and nodes do not read this machine's /etc/hosts")
    // Named on the command line: nothing else was checked.
    expect(new Set(r.checks.map((c) => c.subject))).toEqual(new Set([names.nodeOnly, names.wrong, names.missing]))
  })

  test('a registry that is down fails from the host and from the node, with how to bring it back', async () => {
    await w.stopped(cache.name, async () => {
      const r = await preflight([cache.name])
      expect(r.code).toBe(1)
      expect(r.at('registry', cache.name, 'host')).toMatchObject({
        status: 'fail',
        detail: `no answer from 127.0.0.1:${cache.port}: ${cache.name} is exited`,
        fix: '`just dev-registry` starts it',
      })
      expect(r.at('registry', cache.name, node)).toMatchObject({ status: 'fail', fix: '`just dev-registry` starts it' })
      expect(r.at('resolve', cache.name, 'container')).toMatchObject({
        status: 'fail',
        detail: `does not resolve: ${cache.name} is exited`,
      })
    })
    await eventually('the cache to answer', async () => (await preflight([cache.name])).code === 0)
  })

  test('a node missing a hosts.toml, or with one devreg did not write that way, fails until dev-up puts it back', async () => {
    await q()`docker exec ${node} rm -rf /etc/containerd/certs.d/docker.io`
    await q()`docker exec ${node} sh -c ${'echo "# edited" >> "/etc/containerd/certs.d/$1/hosts.toml"'} sh ${`localhost:${registry.port}`}`
    const r = await preflight([])
    expect(r.code).toBe(1)
    expect(r.at('mirror', 'docker.io', node)).toMatchObject({
      status: 'fail',
      detail: 'no /etc/containerd/certs.d/docker.io/hosts.toml',
      fix: '`just dev-up` writes it',
    })
    expect(r.at('mirror', `localhost:${registry.port}`, node)).toMatchObject({
      status: 'fail',
      detail: `/etc/containerd/certs.d/localhost:${registry.port}/hosts.toml differs from what devreg writes`,
      fix: '`just dev-up` rewrites it',
    })
    const up = await w.devUp()
    expect(up.code).toBe(0)
    expect((await preflight([])).code).toBe(0)
  })

  test('a hosts.toml devreg wrote for a host no longer in the config is stale', async () => {
    const fewer = w.configFile({ aliases: [] }, 'fewer.yaml')
    const r = await preflight([], { config: fewer })
    expect(r.code).toBe(1)
    expect(r.at('mirror', 'registry.dev.local', node)).toMatchObject({
      status: 'fail',
      detail: "/etc/containerd/certs.d/registry.dev.local/hosts.toml is devreg's but no longer in the config",
      fix: '`just dev-up` removes it',
    })
  })

  test("the host's Docker daemon without the docker.io cache as a mirror is a warning with the snippet, not a failure", async () => {
    const r = await preflight([cache.name])
    expect(r.code).toBe(0)
    const w = r.at('docker-mirror', 'docker.io', 'host')
    expect(w.status).toBe('warn')
    expect(w.detail).toContain('`docker build` FROM lines and node-image pulls bypass the cache')
    expect(w.fix).toContain(`{"registry-mirrors":["http://127.0.0.1:${cache.port}"]}`)
  })

  test('an /etc/hosts line sending docker.io to 127.0.0.1 is warned about', async () => {
    const r = await preflight([], { hosts: `${hostsText}127.0.0.1 docker.io\n` })
    expect(r.at('shadow', 'docker.io', 'host')).toMatchObject({
      status: 'warn',
      detail: '/etc/hosts line 4 maps docker.io to 127.0.0.1: pulls from docker.io on this machine go there and fail',
    })
    expect(r.code).toBe(0)
  })

  test('a preflight image this machine does not have fails the container checks without pulling', async () => {
    const other = w.configFile({ preflight: { image: 'devreg-test/not-here:1' } }, 'image.yaml')
    const r = await preflight([names.svc], { config: other })
    expect(r.code).toBe(1)
    expect(r.at('resolve', names.svc, 'container').detail).toContain('No such image: devreg-test/not-here:1')
    expect(r.at('resolve', names.svc, 'container').fix).toContain('set preflight.image to an image this machine has')
  })

  test('without a cluster, node checks are skipped, not failed', async () => {
    const none = w.configFile({ cluster: { name: fx.name('none') } }, 'none.yaml')
    const r = await preflight([], { config: none })
    expect(r.code).toBe(0)
    const nodes = r.checks.filter((c) => c.place === 'nodes')
    expect(nodes.length).toBeGreaterThan(5)
    for (const c of nodes) expect(c).toMatchObject({ status: 'skip', detail: expect.stringContaining('no kind cluster') })
    expect(r.checks.some((c) => c.place === node)).toBe(false)
  })

  describe('with k3d', () => {
    let k3d: string
    let server: string
    beforeAll(async () => {
      const name = fx.name('k')
      server = `k3d-${name}-server-0`
      k3d = w.configFile({ cluster: { provider: 'k3d', name, network: await fx.network('k3d'), nodeImage: rigK3sImage() } }, 'k3d.yaml')
      const up = await w.run('dev-up', [], { config: k3d })
      if (up.code !== 0) console.error(up.stderr)
      expect(up.code).toBe(0)
    })

    test("registries.yaml in every node is compared per registry host; an edited one fails with k3s's restart in the fix", async () => {
      const ok = await preflight(['docker.io', 'registry.dev.local'], { config: k3d })
      expect(ok.at('mirror', 'docker.io', server).status).toBe('pass')
      expect(ok.at('mirror', 'registry.dev.local', server).status).toBe('pass')
      expect(ok.checks.some((c) => c.check === 'containerd')).toBe(false)

      await q()`docker exec ${server} sed -i ${`s/${cache.name}/${cache.name}-x/`} /etc/rancher/k3s/registries.yaml`
      const r = await preflight(['docker.io', 'registry.dev.local'], { config: k3d })
      expect(r.code).toBe(1)
      expect(r.at('mirror', 'docker.io', server)).toMatchObject({
        status: 'fail',
        detail: 'the docker.io mirror in /etc/rancher/k3s/registries.yaml differs from what devreg writes',
        fix: '`just dev-up` rewrites it and restarts the nodes (k3s reads it only at start)',
      })
      expect(r.at('mirror', 'registry.dev.local', server).status).toBe('pass')
    })
  })
})
