// host-mirrors on real engines: sid's dockerd 28, once with the containerd
// image store and once with the classic one, each a private engine of this
// file's own (test/kit/private-engine.ts: own network and mount namespace,
// so its /etc/docker is a temp dir and the machine's is never touched). In
// each, devreg's caches run in front of fake upstreams, host-mirrors writes
// the engine's daemon.json and certs.d, and `docker pull` shows in the
// caches' and upstreams' access logs which way it went.
// Needs root (namespaces) and sid's dockerd (downloaded once into the rig's
// cache); here rather than under test/e2e because it needs neither the rig's
// engine nor kind, and its engines must be separate from the rig's anyway.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { NO_DOCKER_LOGIN, ROOT } from '../kit/fixture.ts'
import { REGISTRY_IMAGE } from '../kit/images.ts'
import { type PrivateEngine, startPrivateEngine } from '../kit/private-engine.ts'
import { blobBytesInLog, eventually } from '../kit/registry.ts'

const root = process.getuid?.() === 0
if (!root) {
  if (process.env.DEVREG_REQUIRE_DOCKER === '1')
    throw new Error('DEVREG_REQUIRE_DOCKER=1 but host-mirrors tests need root for their private engines')
  console.error('SKIPPING host-mirrors integration tests: they need root (network and mount namespaces for a private dockerd)')
}

const BUN = process.execPath
const SCRIPT = join(ROOT, 'scripts/dev-registry.ts')
// The daemon.json a user had, written oddly on purpose: --undo must give it back byte for byte.
const C8D_DAEMON_JSON = '{\n\t"log-level":   "info",\n\t"features": {"containerd-snapshotter": true},\n\t"max-concurrent-downloads": 4\n}\n'
const CLASSIC_DAEMON_JSON = '{ "log-level": "info", "max-concurrent-downloads": 4 }'

interface World {
  engine: PrivateEngine
  config: string
  /** Fake upstream container → its address on the network. */
  upstreams: Record<string, string>
  caches: { hub: string; ghcr: string }
}

const script = (w: World, ...args: string[]) =>
  w.engine.run([BUN, SCRIPT, ...args, '--config', w.config], { env: { NO_COLOR: '1', DEVREG_CONFIG: '', DOCKER_CONFIG: NO_DOCKER_LOGIN } })
const hostMirrors = (w: World, ...args: string[]) =>
  script(w, 'host-mirrors', '--daemon-json', w.engine.daemonJson, '--certs-d', w.engine.certsD, ...args)
const logsOf = async (w: World, name: string) => {
  const r = await w.engine.docker('logs', name)
  return `${r.stdout}\n${r.stderr}`
}
const ok = (r: { code: number; stdout: string; stderr: string }) => {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`)
  return r
}
const reload = async (w: World, mirrors: string) => {
  process.kill(w.engine.pid(), 'SIGHUP')
  for (let i = 0; i < 40; i++) {
    if ((await w.engine.docker('info', '--format', '{{json .RegistryConfig.Mirrors}}')).stdout.trim() === mirrors) return
    await Bun.sleep(250)
  }
  throw new Error(`the engine did not reload registry-mirrors to ${mirrors}`)
}

/** A private engine with the test images, fake upstreams for docker.io and ghcr.io, and a config whose caches use them. */
async function world(daemonJson: string, subnet: string, seedGhcr: boolean): Promise<World> {
  const engine = await startPrivateEngine({ daemonJson, subnet })
  try {
    ok(await engine.run([BUN, join(ROOT, 'test/kit/images.ts')]))
    const net = `${engine.name}-net`
    ok(await engine.docker('network', 'create', '--subnet', `${subnet}.7.0/24`, net))
    const upstreams = { 'hm-up-hub': `${subnet}.7.10`, 'hm-up-ghcr': `${subnet}.7.11` }
    for (const [i, [name, ip]] of Object.entries(upstreams).entries())
      ok(
        await engine.docker('run', '-d', '--name', name, '--network', net, '--ip', ip, '-p', `127.0.0.1:${15010 + i}:5000`, REGISTRY_IMAGE),
      )
    // Images the engine has never held (a pushed sample would leave its layers in the engine, and a pull
    // would then fetch no blob): pushed through the registry API from inside the namespace.
    const push = async (port: number, repo: string, sizes: number[]) => {
      const code = `import { layer, pushImage } from ${JSON.stringify(join(ROOT, 'test/kit/push.ts'))}
        await pushImage('http://127.0.0.1:${port}', ${JSON.stringify(repo)}, '1', { layers: ${JSON.stringify(sizes)}.map(layer), created: new Date() })`
      // The upstream serves once its container has started, which a loaded machine can take a while to do.
      const deadline = Date.now() + 60_000
      for (;;) {
        const r = await engine.run([BUN, '-e', code])
        if (r.code === 0) break
        if (Date.now() > deadline) ok(r)
        await Bun.sleep(250)
      }
    }
    await push(15010, 'library/alpha', [1_500_000, 700_000])
    if (seedGhcr) {
      await push(15011, 'acme/beta', [900_000])
      await push(15011, 'acme/delta', [800_000])
    }
    const caches = { hub: 'hm-cache-docker-io', ghcr: 'hm-cache-ghcr-io' }
    const config = join(engine.etcDocker, '..', 'devreg.yaml')
    await Bun.write(
      config,
      stringify({
        cluster: { network: net },
        registry: { name: 'hm-registry', port: 15001, image: REGISTRY_IMAGE, volume: 'hm-registry-data' },
        mirrors: [
          { host: 'docker.io', upstream: `http://${upstreams['hm-up-hub']}:5000`, name: caches.hub, port: 15101 },
          { host: 'ghcr.io', upstream: `http://${upstreams['hm-up-ghcr']}:5000`, name: caches.ghcr, port: 15102 },
        ],
      }),
    )
    return { engine, config, upstreams, caches }
  } catch (err) {
    console.error(`private engine log: ${engine.log}`)
    await engine.stop()
    throw err
  }
}

const certsDFiles = (w: World) =>
  existsSync(w.engine.certsD)
    ? readdirSync(w.engine.certsD, { recursive: true })
        .map(String)
        .filter((f) => f.endsWith('.toml'))
    : []

describe.skipIf(!root)('host-mirrors on dockerd 28', () => {
  let c8d: World
  let classic: World
  beforeAll(async () => {
    const [a, b] = await Promise.allSettled([world(C8D_DAEMON_JSON, '10.231', true), world(CLASSIC_DAEMON_JSON, '10.232', false)])
    if (a.status === 'fulfilled') c8d = a.value
    if (b.status === 'fulfilled') classic = b.value
    for (const r of [a, b]) if (r.status === 'rejected') throw r.reason
  }, 170_000)
  afterAll(async () => {
    await Promise.all([c8d?.engine.stop(), classic?.engine.stop()])
  }, 60_000)

  test('no cache running: --dry-run says to run dev-registry first, exit 1', async () => {
    const r = await hostMirrors(classic, '--dry-run')
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('run `just dev-registry` first')
  })

  test('containerd store: the diff first, then registry-mirrors and a hosts.toml per cached host; a second run changes nothing', async () => {
    ok(await script(c8d, 'up'))
    const dry = ok(await hostMirrors(c8d, '--dry-run'))
    expect(dry.stdout).toContain('+\t"registry-mirrors": ["http://127.0.0.1:15101"]')
    expect(dry.stdout).toContain(`# new ${c8d.engine.certsD}/ghcr.io/hosts.toml`)
    expect(readFileSync(c8d.engine.daemonJson, 'utf8')).toBe(C8D_DAEMON_JSON)
    expect(certsDFiles(c8d)).toEqual([])
    // Without a terminal and without --yes: refused, nothing written.
    const asked = await hostMirrors(c8d)
    expect(asked.code).toBe(2)
    expect(readFileSync(c8d.engine.daemonJson, 'utf8')).toBe(C8D_DAEMON_JSON)

    const r = ok(await hostMirrors(c8d, '--yes'))
    expect(r.stderr).toContain('SIGHUP')
    expect(readFileSync(`${c8d.engine.daemonJson}.devreg-backup`, 'utf8')).toBe(C8D_DAEMON_JSON)
    expect(certsDFiles(c8d).sort()).toEqual(['docker.io/hosts.toml', 'ghcr.io/hosts.toml'])
    const again = ok(await hostMirrors(c8d, '--yes'))
    expect(again.stderr).toContain('nothing to do')
    await reload(c8d, '["http://127.0.0.1:15101/"]')
  }, 90_000)

  test('containerd store: docker.io and ghcr.io pulls go through their caches, which fetch from the upstreams', async () => {
    ok(await c8d.engine.docker('pull', 'docker.io/library/alpha:1'))
    ok(await c8d.engine.docker('pull', 'ghcr.io/acme/beta:1'))
    expect(blobBytesInLog(await logsOf(c8d, c8d.caches.hub), 'library/alpha')).toBeGreaterThan(2_000_000)
    expect(blobBytesInLog(await logsOf(c8d, 'hm-up-hub'), 'library/alpha')).toBeGreaterThan(2_000_000)
    expect(blobBytesInLog(await logsOf(c8d, c8d.caches.ghcr), 'acme/beta')).toBeGreaterThan(800_000)
    expect(blobBytesInLog(await logsOf(c8d, c8d.caches.hub), 'acme/beta')).toBe(0)
    // status reads the engine's certs.d where DEVREG_DOCKER_CERTS_D says (here the private engine's /etc/docker).
    const env = { NO_COLOR: '1', DEVREG_CONFIG: '', DOCKER_CONFIG: NO_DOCKER_LOGIN, DEVREG_DOCKER_CERTS_D: c8d.engine.certsD }
    const status = JSON.parse(ok(await c8d.engine.run([BUN, SCRIPT, 'status', '--json', '--config', c8d.config], { env })).stdout)
    expect(status.hostEngine.map((h: { domain: string; status: string }) => [h.domain, h.status])).toEqual([
      ['docker.io', 'pass'],
      ['ghcr.io', 'pass'],
    ])
  }, 60_000)

  test('containerd store: with the upstream stopped a cached image still pulls; with the cache stopped the upstream serves', async () => {
    ok(await c8d.engine.docker('rmi', 'docker.io/library/alpha:1'))
    ok(await c8d.engine.docker('stop', 'hm-up-hub'))
    // The cache notices within seconds and serves what it holds read-only (templates/cache-entrypoint.sh).
    await eventually('the docker.io cache to go offline', async () => {
      const mode = await c8d.engine.docker('exec', c8d.caches.hub, 'cat', '/tmp/devreg-mode')
      return mode.stdout.trim() === 'offline' && (await c8d.engine.run(['curl', '-sf', 'http://127.0.0.1:15101/v2/'])).code === 0
    })
    ok(await c8d.engine.docker('pull', 'docker.io/library/alpha:1'))

    ok(await c8d.engine.docker('stop', c8d.caches.ghcr))
    const before = blobBytesInLog(await logsOf(c8d, 'hm-up-ghcr'), 'acme/delta')
    ok(await c8d.engine.docker('pull', 'ghcr.io/acme/delta:1'))
    expect(blobBytesInLog(await logsOf(c8d, 'hm-up-ghcr'), 'acme/delta')).toBeGreaterThan(before + 700_000)
  }, 60_000)

  test('containerd store: --undo leaves daemon.json as it was, byte for byte, and no hosts.toml of devreg’s', async () => {
    ok(await c8d.engine.docker('start', c8d.caches.ghcr))
    const undo = ok(await hostMirrors(c8d, '--undo', '--yes'))
    expect(readFileSync(c8d.engine.daemonJson, 'utf8')).toBe(C8D_DAEMON_JSON)
    expect(existsSync(`${c8d.engine.daemonJson}.devreg-backup`)).toBe(false)
    expect(certsDFiles(c8d)).toEqual([])
    // The file has no registry-mirrors key any more, which SIGHUP does not reset: the output says to restart.
    expect(undo.stderr).toContain('restart the engine')
    expect(ok(await hostMirrors(c8d, '--undo', '--yes')).stderr).toContain('nothing to undo')
  }, 30_000)

  test('classic store: only docker.io is wired, the output says why; pulls go through the cache; --undo restores the file', async () => {
    ok(await script(classic, 'up'))
    const r = ok(await hostMirrors(classic, '--yes', '--json'))
    const out = JSON.parse(r.stdout)
    expect(out.engine).toMatchObject({ containerdStore: false, major: 28 })
    expect(out.changes.map((c: { what: string }) => c.what)).toEqual(['backup', 'daemon.json'])
    expect(out.skipped).toEqual([{ domains: ['ghcr.io'], hosts: ['ghcr.io'], why: expect.stringContaining('classic image store') }])
    expect(certsDFiles(classic)).toEqual([])
    expect(readFileSync(classic.engine.daemonJson, 'utf8')).toBe(
      '{ "log-level": "info", "max-concurrent-downloads": 4, "registry-mirrors": ["http://127.0.0.1:15101"] }',
    )
    const human = ok(await hostMirrors(classic, '--dry-run'))
    expect(human.stderr).toContain('skipped ghcr.io: the engine uses the classic image store')
    await reload(classic, '["http://127.0.0.1:15101/"]')
    ok(await classic.engine.docker('pull', 'docker.io/library/alpha:1'))
    expect(blobBytesInLog(await logsOf(classic, classic.caches.hub), 'library/alpha')).toBeGreaterThan(2_000_000)
    ok(await hostMirrors(classic, '--undo', '--yes'))
    expect(readFileSync(classic.engine.daemonJson, 'utf8')).toBe(CLASSIC_DAEMON_JSON)
  }, 90_000)
})
