// host-mirrors without Docker: engine detection from recorded `docker info`,
// daemon.json edits and their exact undo, the hosts.toml files, and the plan.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { UserError } from '../../scripts/lib/core/log.ts'
import { addMirror, DAEMON_JSON, daemonJsonMirrors, removeMirror } from '../../scripts/lib/machine/daemon-json.ts'
import {
  BACKUP_SUFFIX,
  DOCKER_CERTS_D,
  type DockerInfo,
  type DockerVersion,
  type Engine,
  engineFacts,
  hostMirrorFiles,
  isHostMirrorFile,
  judgeHostRoutes,
  type Observed,
  pullsThroughCache,
  support,
} from '../../scripts/lib/machine/host-engine.ts'
import { hostMirrors, planHostMirrors } from '../../scripts/lib/machine/host-mirrors.ts'
import { type FakeOptions, fakeRunner, on } from '../kit/fake-runner.ts'

const sample = (name: string) => {
  const s = JSON.parse(readFileSync(join(import.meta.dir, 'fixtures/docker-info', `${name}.json`), 'utf8'))
  return engineFacts(s.info as DockerInfo, s.version as DockerVersion)
}

const config = resolveConfig({
  mirrors: [
    { host: 'docker.io' },
    { host: 'ghcr.io', upstream: 'http://10.231.7.11:5000' },
    { host: 'quay.io', remotes: [{ url: 'https://harbor.example.com', path: '/v2/quay-proxy' }] },
  ],
})
const URL_ = 'http://127.0.0.1:5101'
const paths = { daemonJson: '/etc/docker/daemon.json', certsD: '/etc/docker/certs.d' }

describe('engine detection from docker info', () => {
  test.each([
    ['debian-20.10', { version: '20.10.24+dfsg1', major: 20, containerdStore: false, rootless: false, desktop: false, podman: false }],
    ['dockerd-28-containerd', { major: 28, containerdStore: true, rootless: false, desktop: false, podman: false }],
    ['dockerd-28-classic', { major: 28, containerdStore: false, rootless: false }],
    ['rootless-27', { major: 27, rootless: true }],
    ['desktop-27', { desktop: true, containerdStore: true }],
    ['podman-5', { podman: true }],
  ])('%s', (name, facts) => expect(sample(name)).toMatchObject(facts))

  test('what each engine gets: hosts.toml only on the containerd store of 28+, nothing on rootless, Desktop or Podman', () => {
    expect(support(sample('dockerd-28-containerd'))).toEqual({ daemonJson: null, hostsToml: null })
    expect(support(sample('dockerd-28-classic')).hostsToml).toContain('classic image store')
    expect(support(sample('debian-20.10'))).toMatchObject({ daemonJson: null })
    const c8d27: Engine = { ...sample('dockerd-28-containerd'), version: '27.5.1', major: 27 }
    expect(support(c8d27).hostsToml).toContain('from 28.0 on')
    for (const n of ['rootless-27', 'desktop-27', 'podman-5']) {
      const s = support(sample(n))
      expect(s.daemonJson).not.toBeNull()
      expect(s.hostsToml).toBe(s.daemonJson)
    }
  })
})

describe('daemon.json: devreg adds its mirror and takes exactly it away again', () => {
  const files: Record<string, string> = {
    'two spaces': '{\n  "log-level": "info",\n  "features": {\n    "containerd-snapshotter": true\n  }\n}\n',
    tabs: '{\n\t"data-root": "/srv/docker",\n\t"dns": ["1.1.1.1"]\n}',
    'one line': '{"log-level": "debug", "bip": "10.9.0.1/24"}\n',
    'CRLF, four spaces': '{\r\n    "log-level": "warn"\r\n}\r\n',
    'empty object': '{}\n',
    'mirrors already, on lines': '{\n  "registry-mirrors": [\n    "https://mirror.example.com"\n  ],\n  "debug": true\n}\n',
    'mirrors already, one line': '{ "registry-mirrors": ["https://a.example", "https://b.example"] }',
    'mirrors key in the middle, strings with braces':
      '{\n  "labels": ["a}b", "c\\"]"],\n  "registry-mirrors": ["https://m.example"],\n  "x": {"y": [1, {"z": null}]}\n}\n',
  }
  test.each(Object.entries(files))('%s', (_, text) => {
    const added = addMirror(text, URL_)
    expect(daemonJsonMirrors(added)[0]).toBe(URL_)
    const { 'registry-mirrors': _m, ...rest } = JSON.parse(added)
    const { 'registry-mirrors': _n, ...was } = JSON.parse(text)
    expect(rest).toEqual(was)
    expect(removeMirror(added, URL_)).toBe(text)
  })

  test('a new key goes after the last one in the file’s indentation; an existing list gets the cache first', () => {
    expect(addMirror(files['two spaces'], URL_)).toBe(
      '{\n  "log-level": "info",\n  "features": {\n    "containerd-snapshotter": true\n  },\n  "registry-mirrors": ["http://127.0.0.1:5101"]\n}\n',
    )
    expect(addMirror(files['one line'], URL_)).toBe(
      '{"log-level": "debug", "bip": "10.9.0.1/24", "registry-mirrors": ["http://127.0.0.1:5101"]}\n',
    )
    expect(addMirror(files['mirrors already, on lines'], URL_)).toContain(
      '[\n    "http://127.0.0.1:5101",\n    "https://mirror.example.com"\n  ]',
    )
  })

  test('no file, or an empty one, becomes a small new file', () => {
    expect(addMirror('', URL_)).toBe('{\n  "registry-mirrors": ["http://127.0.0.1:5101"]\n}\n')
  })

  test('a file that is not JSON is refused as a usage error, nothing changed', () => {
    expect(() => addMirror('{"a": 1,', URL_)).toThrow(/not valid JSON/)
    expect(() => addMirror('{"registry-mirrors": "x"}', URL_)).toThrow(/not a list/)
  })
})

describe('hosts.toml for the host engine', () => {
  const files = hostMirrorFiles(config)
  test('one per cached host, marked as devreg’s: the cache on loopback, remotes and a non-default upstream, then the upstream as server', () => {
    expect([...files.keys()]).toEqual(['docker.io', 'ghcr.io', 'quay.io'])
    for (const f of files.values()) expect(isHostMirrorFile(f)).toBe(true)
    const ghcr = parseToml(files.get('ghcr.io') as string) as { server: string; host: Record<string, unknown> }
    expect(ghcr.server).toBe('https://ghcr.io')
    expect(Object.keys(ghcr.host)).toEqual(['http://127.0.0.1:5102', 'http://10.231.7.11:5000'])
    const hub = parseToml(files.get('docker.io') as string) as { server: string; host: Record<string, unknown> }
    expect(hub.server).toBe('https://registry-1.docker.io')
    expect(Object.keys(hub.host)).toEqual(['http://127.0.0.1:5101'])
    const quay = parseToml(files.get('quay.io') as string) as { host: Record<string, { override_path?: boolean }> }
    expect(quay.host['https://harbor.example.com/v2/quay-proxy']).toMatchObject({ override_path: true })
  })

  test('a cache on a LAN address: hosts.toml reaches it over plain HTTP, registry-mirrors is left to the user', () => {
    const lan = resolveConfig({ registry: { bind: '192.168.5.2' }, mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
    expect(hostMirrorFiles(lan).get('ghcr.io')).toContain('[host."http://192.168.5.2:5102"]')
    const plan = planHostMirrors(
      lan,
      sample('dockerd-28-containerd'),
      { daemonJson: null, backup: null, hostsTomls: new Map() },
      paths,
      false,
    )
    expect(plan.skipped[0]).toMatchObject({ domains: ['docker.io'], why: expect.stringContaining('insecure-registries') })
    expect(plan.changes.map((c) => c.what)).toEqual(['hosts.toml', 'hosts.toml'])
  })
})

describe('the plan', () => {
  const c8d = sample('dockerd-28-containerd')
  const classic = sample('dockerd-28-classic')
  const empty: Observed = { daemonJson: null, backup: null, hostsTomls: new Map() }
  const original = '{\n  "log-level": "info"\n}\n'

  test('containerd store: daemon.json (with a backup of the file as it was) and a hosts.toml per host', () => {
    const plan = planHostMirrors(config, c8d, { ...empty, daemonJson: original }, paths, false)
    expect(plan.changes.map((c) => [c.what, c.path])).toEqual([
      ['backup', '/etc/docker/daemon.json.devreg-backup'],
      ['daemon.json', '/etc/docker/daemon.json'],
      ['hosts.toml', '/etc/docker/certs.d/docker.io/hosts.toml'],
      ['hosts.toml', '/etc/docker/certs.d/ghcr.io/hosts.toml'],
      ['hosts.toml', '/etc/docker/certs.d/quay.io/hosts.toml'],
    ])
    expect(plan.changes[0].after).toBe(original)
    expect(plan.skipped).toEqual([])
  })

  test('classic store: only docker.io, and the others are named with the reason', () => {
    const plan = planHostMirrors(config, classic, empty, paths, false)
    expect(plan.changes.map((c) => c.what)).toEqual(['daemon.json'])
    expect(plan.skipped).toEqual([{ domains: ['ghcr.io', 'quay.io'], why: expect.stringContaining('classic image store') }])
  })

  test('Podman: nothing, every registry domain skipped with why', () => {
    const plan = planHostMirrors(config, sample('podman-5'), empty, paths, false)
    expect(plan.changes).toEqual([])
    expect(plan.skipped).toEqual([{ domains: ['docker.io', 'ghcr.io', 'quay.io'], why: expect.stringContaining('registries.conf') }])
  })

  test('a second run changes nothing', () => {
    const files = hostMirrorFiles(config)
    const seen: Observed = { daemonJson: addMirror(original, URL_), backup: original, hostsTomls: files }
    const plan = planHostMirrors(config, c8d, seen, paths, false)
    expect(plan.changes).toEqual([])
    expect(plan.notes[0]).toContain('already lists')
  })

  test('a hosts.toml devreg did not write is left alone and said so', () => {
    const seen: Observed = { ...empty, hostsTomls: new Map([['ghcr.io', 'server = "https://ghcr.io"\n']]) }
    const plan = planHostMirrors(config, c8d, seen, paths, false)
    expect(plan.changes.some((c) => c.path.includes('ghcr.io'))).toBe(false)
    expect(plan.skipped[0]).toMatchObject({ domains: ['ghcr.io'], why: expect.stringContaining("not devreg's") })
  })

  test('undo: the backup back byte for byte, devreg’s hosts.toml files removed, others kept', () => {
    const seen: Observed = {
      daemonJson: addMirror(original, URL_),
      backup: original,
      hostsTomls: new Map([...hostMirrorFiles(config), ['registry.example.com', 'server = "x"\n']]),
    }
    const plan = planHostMirrors(config, c8d, seen, paths, true)
    expect(plan.changes.find((c) => c.what === 'daemon.json')?.after).toBe(original)
    expect(plan.changes.find((c) => c.what === 'backup')?.after).toBeNull()
    expect(plan.changes.filter((c) => c.what === 'hosts.toml').map((c) => [c.path, c.after])).toEqual([
      ['/etc/docker/certs.d/docker.io/hosts.toml', null],
      ['/etc/docker/certs.d/ghcr.io/hosts.toml', null],
      ['/etc/docker/certs.d/quay.io/hosts.toml', null],
    ])
  })

  test('undo: a file devreg created goes; one edited since loses only the mirror; a mirror devreg did not add stays', () => {
    const created = planHostMirrors(config, c8d, { ...empty, daemonJson: addMirror('', URL_) }, paths, true)
    expect(created.changes).toEqual([{ path: paths.daemonJson, before: addMirror('', URL_), after: null, what: 'daemon.json' }])
    const edited = addMirror(original, URL_).replace('"info"', '"debug"')
    const later = planHostMirrors(config, c8d, { ...empty, daemonJson: edited, backup: original }, paths, true)
    expect(later.changes[0].after).toBe(original.replace('"info"', '"debug"'))
    const theirs = planHostMirrors(config, c8d, { ...empty, daemonJson: addMirror(original, URL_) }, paths, true)
    expect(theirs.changes).toEqual([])
    expect(theirs.notes[0]).toContain('left alone')
  })
})

describe('whether the host engine pulls through the caches (status, preflight)', () => {
  test('containerd store: registry-mirrors for docker.io, hosts.toml for the others', () => {
    const engine = { ...sample('dockerd-28-containerd'), mirrors: [`${URL_}/`] }
    const files = hostMirrorFiles(config)
    const routes = judgeHostRoutes(config, engine, new Map([['ghcr.io', files.get('ghcr.io') as string]]))
    expect(routes.map((r) => [r.domain, r.status])).toEqual([
      ['docker.io', 'pass'],
      ['ghcr.io', 'pass'],
      ['quay.io', 'warn'],
    ])
    expect(routes[2].fix).toContain('just host-mirrors')
  })

  test('classic store: the others are skipped with the reason', () => {
    const routes = judgeHostRoutes(config, sample('debian-20.10'), new Map())
    expect(routes.map((r) => [r.domain, r.status])).toEqual([
      ['docker.io', 'warn'],
      ['ghcr.io', 'skip'],
      ['quay.io', 'skip'],
    ])
  })
})

describe('the one answer to "does the host engine pull docker.io through the cache"', () => {
  const onV4 = config.registries[1]
  const onV6 = resolveConfig({ registry: { bind: '::1' }, mirrors: [{ host: 'docker.io' }] }).registries[1]
  test.each([
    ['http://127.0.0.1:5101', true, false],
    ['http://127.0.0.1:5101/', true, false],
    ['http://localhost:5101', true, true],
    ['http://[::1]:5101', false, true],
    ['http://[0:0:0:0:0:0:0:1]:5101', false, true],
    ['http://127.0.0.1:5102', false, false],
    ['https://mirror.gcr.io', false, false],
    ['not a url', false, false],
  ])('%s: through a cache on 127.0.0.1 %p, on ::1 %p', (mirror, v4, v6) => {
    expect(pullsThroughCache([mirror], onV4)).toBe(v4)
    expect(pullsThroughCache([mirror], onV6)).toBe(v6)
  })

  test('status, preflight and host-mirrors agree: [::1] does not reach a cache published on 127.0.0.1', () => {
    const engine = { ...sample('dockerd-28-containerd'), mirrors: ['http://[::1]:5101'] }
    expect(judgeHostRoutes(config, engine, new Map())[0]).toMatchObject({ domain: 'docker.io', status: 'warn' })
    const plan = planHostMirrors(
      config,
      engine,
      { daemonJson: '{"registry-mirrors": ["http://[::1]:5101"]}', backup: null, hostsTomls: new Map() },
      paths,
      false,
    )
    expect(plan.changes.find((c) => c.what === 'daemon.json')?.after).toContain(`["${URL_}", "http://[::1]:5101"]`)
  })
})

describe('host-mirrors, orchestrated against a fake runner and fake files at /etc/docker', () => {
  const recorded = JSON.parse(readFileSync(join(import.meta.dir, 'fixtures/docker-info/dockerd-28-containerd.json'), 'utf8'))
  const original = '{\n  "log-level": "info"\n}\n'
  const running = config.registries.map((r) =>
    JSON.stringify({ ID: r.name, Names: r.name, State: 'running', Labels: 'devreg.managed=true', Networks: '', Ports: '', Image: 'x' }),
  )
  const hostsToml = (host: string) => join(DOCKER_CERTS_D, host, 'hosts.toml')
  const HOSTS = ['docker.io', 'ghcr.io', 'quay.io']
  /** An engine on Docker 28 with the containerd store, the caches up, and the files it reads. */
  const engine = (files: Record<string, string>, opts: FakeOptions = {}) =>
    fakeRunner(
      [
        on(['docker', 'info', '--format', '{{json .}}'], JSON.stringify(recorded.info)),
        on(['docker', 'version', '--format', '{{json .}}'], JSON.stringify(recorded.version)),
        on(['docker', 'ps'], running.join('\n')),
      ],
      { files, ...opts },
    )
  const opts = { undo: false, yes: false, json: false }

  test('without a terminal and without --yes it shows the change, refuses with exit 2 and writes nothing', async () => {
    const run = engine({ [DAEMON_JSON]: original })
    const refused = await hostMirrors(run, config, opts).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(UserError)
    expect((refused as UserError).exitCode).toBe(2)
    expect(run.text(DAEMON_JSON)).toBe(original)
    expect(run.changes).toEqual([])
  })

  test('--yes writes the backup, daemon.json and a hosts.toml per cached host; a second run changes nothing; --undo puts it all back', async () => {
    const run = engine({ [DAEMON_JSON]: original })
    expect(await hostMirrors(run, config, { ...opts, yes: true })).toBe(0)
    expect(run.changes).toEqual([
      `# write ${DAEMON_JSON}${BACKUP_SUFFIX}`,
      `# write ${DAEMON_JSON}`,
      ...HOSTS.map((h) => `# write ${hostsToml(h)}`),
    ])
    expect(daemonJsonMirrors(run.text(DAEMON_JSON))).toEqual([URL_])
    expect(run.text(`${DAEMON_JSON}${BACKUP_SUFFIX}`)).toBe(original)
    expect(run.text(hostsToml('ghcr.io'))).toBe(hostMirrorFiles(config).get('ghcr.io') as string)

    const written = Object.fromEntries(HOSTS.map((h) => [hostsToml(h), run.text(hostsToml(h)) as string]))
    const wired = { ...written, [DAEMON_JSON]: run.text(DAEMON_JSON) as string, [`${DAEMON_JSON}${BACKUP_SUFFIX}`]: original }
    const again = engine(wired)
    expect(await hostMirrors(again, config, { ...opts, yes: true })).toBe(0)
    expect(again.changes).toEqual([])

    const undo = engine(wired)
    expect(await hostMirrors(undo, config, { ...opts, yes: true, undo: true })).toBe(0)
    expect(undo.text(DAEMON_JSON)).toBe(original)
    expect(undo.text(`${DAEMON_JSON}${BACKUP_SUFFIX}`)).toBeNull()
    expect(undo.changes).toEqual([
      `# write ${DAEMON_JSON}`,
      ...HOSTS.flatMap((h) => [`# remove ${hostsToml(h)}`, `# remove ${join(DOCKER_CERTS_D, h)}/`]),
      `# remove ${DAEMON_JSON}${BACKUP_SUFFIX}`,
    ])
  })

  test('files this user may not change: only those steps go through sudo, which asks only on a terminal; root needs no sudo', async () => {
    const run = engine({ [DAEMON_JSON]: original }, { readOnly: ['/etc/docker'] })
    await hostMirrors(run, config, { ...opts, yes: true })
    expect(run.changes).toEqual([
      `sudo --non-interactive tee ${DAEMON_JSON}${BACKUP_SUFFIX}`,
      `sudo --non-interactive tee ${DAEMON_JSON}`,
      ...HOSTS.flatMap((h) => [`sudo --non-interactive mkdir -p ${join(DOCKER_CERTS_D, h)}`, `sudo --non-interactive tee ${hostsToml(h)}`]),
    ])
    expect(run.calls.find((c) => c.line === `sudo --non-interactive tee ${DAEMON_JSON}`)?.opts?.input).toContain(URL_)
    const root = engine({ [DAEMON_JSON]: original }, { readOnly: ['/etc/docker'], root: true, tty: { stdin: true, stderr: false } })
    await hostMirrors(root, config, { ...opts, yes: true })
    expect(root.changes.slice(1, 4)).toEqual([
      `sudo tee ${DAEMON_JSON}`,
      `mkdir -p ${join(DOCKER_CERTS_D, 'docker.io')}`,
      `sudo tee ${hostsToml('docker.io')}`,
    ])
  })

  test('DEVREG_DOCKER_DAEMON_JSON and DEVREG_DOCKER_CERTS_D in its environment move both', async () => {
    const run = engine(
      { '/srv/engine/daemon.json': original },
      { env: { DEVREG_DOCKER_DAEMON_JSON: '/srv/engine/daemon.json', DEVREG_DOCKER_CERTS_D: '/srv/engine/certs.d' } },
    )
    expect(await hostMirrors(run, config, { ...opts, yes: true })).toBe(0)
    expect(run.changes.at(1)).toBe('# write /srv/engine/daemon.json')
    expect(run.text('/srv/engine/certs.d/quay.io/hosts.toml')).toStartWith('# Written by devreg')
    expect(run.text(DAEMON_JSON)).toBeNull()
  })
})
