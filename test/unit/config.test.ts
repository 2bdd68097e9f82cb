import { describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import { DEFAULT_CONFIG, formatKeyPath, loadConfig, mergeConfig, resolveConfig } from '../../scripts/lib/core/config.ts'
import { configSchema } from '../../scripts/lib/core/config-schema.ts'
import { UserError } from '../../scripts/lib/core/log.ts'

const dir = mkdtempSync(join(tmpdir(), 'devreg-config-'))
function file(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe('defaults', () => {
  test('the committed config/devreg.yaml equals the schema defaults', () => {
    const committed = configSchema.parse(parse(readFileSync(DEFAULT_CONFIG, 'utf8')))
    expect(committed).toEqual(configSchema.parse({}))
  })

  test('every default registry gets a dashed name, its own port and volume', () => {
    const c = loadConfig({ env: {} })
    expect(c.registries.map((r) => [r.name, r.port, r.volume, r.upstream])).toEqual([
      ['kind-registry', 5001, 'kind-registry-data', null],
      ['kind-cache-docker-io', 5101, 'kind-cache-docker-io-data', 'https://registry-1.docker.io'],
      ['kind-cache-ghcr-io', 5102, 'kind-cache-ghcr-io-data', 'https://ghcr.io'],
      ['kind-cache-quay-io', 5103, 'kind-cache-quay-io-data', 'https://quay.io'],
      ['kind-cache-registry-k8s-io', 5104, 'kind-cache-registry-k8s-io-data', 'https://registry.k8s.io'],
    ])
    expect(c.registries.every((r) => r.bind === '127.0.0.1')).toBe(true)
    expect(c.network).toBe('kind')
  })

  test('each registry says where in the config it comes from, as a key path and as messages write it', () => {
    const c = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
    expect(c.registries.map((r) => [r.keyPath, r.path])).toEqual([
      [['registry'], 'registry'],
      [['mirrors', 0], 'mirrors[0]'],
      [['mirrors', 1], 'mirrors[1]'],
    ])
    expect(formatKeyPath([...c.registries[2].keyPath, 'port'])).toBe('mirrors[1].port')
  })

  test('cluster.waitTimeout takes any duration kubectl --timeout takes', () => {
    for (const t of ['300s', '5m', '1h', '1m30s', '1.5m', '500ms'])
      expect(resolveConfig({ cluster: { waitTimeout: t } }).cluster.waitTimeout).toBe(t)
  })

  test('k3d clusters default to the k3d-<name> network', () => {
    expect(resolveConfig({ cluster: { provider: 'k3d', name: 'work' } }).network).toBe('k3d-work')
  })

  test('the loaded config is frozen', () => {
    const c = loadConfig({ env: {} })
    expect(Object.isFrozen(c.registries[0])).toBe(true)
  })
})

describe('files and merging', () => {
  test('a file listing one mirror gets exactly one cache, other keys from the defaults', () => {
    const path = file('one.yaml', 'mirrors:\n  - host: docker.io\n    upstream: http://fake:5000\nregistry:\n  port: 6001\n')
    const c = loadConfig({ configPath: path, env: {} })
    expect(c.registries.map((r) => r.name)).toEqual(['kind-registry', 'kind-cache-docker-io'])
    expect(c.registries[0].port).toBe(6001)
    expect(c.registries[0].image).toBe('registry:3')
    expect(c.cluster.waitTimeout).toBe('300s')
  })

  test('DEVREG_CONFIG selects the file when --config is absent; --config wins', () => {
    const a = file('a.yaml', 'cluster: {name: from-env}\n')
    const b = file('b.yaml', 'cluster: {name: from-flag}\n')
    expect(loadConfig({ env: { DEVREG_CONFIG: a } }).cluster.name).toBe('from-env')
    expect(loadConfig({ configPath: b, env: { DEVREG_CONFIG: a } }).cluster.name).toBe('from-flag')
  })

  test('mappings merge key by key and lists replace whole', () => {
    expect(mergeConfig({ a: { x: 1, y: 2 }, l: [1, 2] }, { a: { y: 3 }, l: [9] })).toEqual({ a: { x: 1, y: 3 }, l: [9] })
  })

  test('an empty file is all defaults', () => {
    expect(loadConfig({ configPath: file('empty.yaml', ''), env: {} }).registries).toHaveLength(5)
  })

  test('a mirror without upstream pulls from https://<host>, docker.io from registry-1', () => {
    const c = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'registry.gitlab.com' }] })
    expect(c.registries.slice(1).map((r) => r.upstream)).toEqual(['https://registry-1.docker.io', 'https://registry.gitlab.com'])
    expect(c.registries[2].name).toBe('kind-cache-registry-gitlab-com')
  })

  test('a mirror’s credentials: variable names, none, or left to the docker login (null)', () => {
    const names = { usernameEnv: 'HUB_USER', passwordEnv: 'HUB_TOKEN' }
    const c = loadConfig({
      configPath: file(
        'credentials.yaml',
        `mirrors:\n  - {host: docker.io, credentials: ${JSON.stringify(names)}}\n  - {host: ghcr.io, credentials: none}\n  - {host: quay.io}\n`,
      ),
      env: {},
    })
    expect(c.registries.slice(1).map((r) => r.credentials)).toEqual([names, 'none', null])
  })
})

// [description, file content, expected fragment of the message]
const MALFORMED: [string, string, string | RegExp][] = [
  ['unknown top-level key', 'registy: {}\n', 'registy: unknown key "registy"'],
  ['unknown nested key', 'registry: {prot: 5001}\n', 'registry.prot: unknown key "prot"'],
  ['unknown mirror key', 'mirrors: [{host: docker.io, hots: x}]\n', 'mirrors[0].hots: unknown key "hots"'],
  ['port too large', 'registry: {port: 70000}\n', 'registry.port: 70000 is not a port'],
  ['port zero', 'registry: {port: 0}\n', 'registry.port: 0 is not a port'],
  ['port negative', 'mirrors: [{host: docker.io, port: -1}]\n', 'mirrors[0].port: -1 is not a port'],
  ['port as string', 'registry: {port: "5001"}\n', 'registry.port: must be a port number'],
  ['port fractional', 'registry: {port: 5001.5}\n', 'registry.port: must be a port number'],
  ['provider not in enum', 'cluster: {provider: minikube}\n', 'cluster.provider: "minikube" is not a provider: use kind or k3d'],
  ['workers not a number', 'cluster: {workers: two}\n', 'cluster.workers'],
  ['too many workers', 'cluster: {workers: 50}\n', 'cluster.workers: must be a whole number from 0 to 20'],
  ['bad wait timeout', 'cluster: {waitTimeout: soon}\n', 'cluster.waitTimeout: "soon" is not a duration'],
  ['wait timeout in days (kubectl takes Go units only)', 'cluster: {waitTimeout: 1d}\n', 'cluster.waitTimeout: "1d" is not a duration'],
  ['wait timeout as a number', 'cluster: {waitTimeout: 300}\n', 'cluster.waitTimeout: must be a string (a duration'],
  ['cluster name with shell metacharacters', 'cluster: {name: "dev;rm -rf /"}\n', 'cluster.name'],
  ['container name with a dot', 'registry: {name: registry.local}\n', 'no dots, which could leak to public DNS'],
  ['container name with TOML metacharacters', 'registry: {name: "reg\\"]"}\n', 'registry.name'],
  ['container name with uppercase', 'registry: {name: MyRegistry}\n', 'registry.name'],
  ['volume with a slash', 'registry: {volume: /var/lib/registry}\n', 'registry.volume: "/var/lib/registry" is not a valid volume name'],
  ['image with spaces', 'registry: {image: "registry 2"}\n', 'registry.image: "registry 2" is not an image reference'],
  ['image with a backtick', 'registry: {image: "registry:`id`"}\n', 'registry.image'],
  ['bind to all interfaces', 'registry: {bind: 0.0.0.0}\n', 'registry.bind: must not be 0.0.0.0'],
  ['bind not an address', 'registry: {bind: localhost}\n', 'registry.bind: "localhost" is not an IP address'],
  ['mirror host missing', 'mirrors: [{upstream: "https://x.io"}]\n', 'mirrors[0].host: is required'],
  ['mirror host with a scheme', 'mirrors: [{host: "https://docker.io"}]\n', 'mirrors[0].host'],
  ['mirror host with an underscore', 'mirrors: [{host: my_registry.io}]\n', 'mirrors[0].host'],
  [
    'upstream not a URL',
    'mirrors: [{host: docker.io, upstream: registry-1.docker.io}]\n',
    'mirrors[0].upstream: "registry-1.docker.io" is not a URL',
  ],
  ['upstream ftp', 'mirrors: [{host: docker.io, upstream: "ftp://x.io"}]\n', 'is not an http(s) URL'],
  ['upstream with credentials', 'mirrors: [{host: docker.io, upstream: "https://u:p@x.io"}]\n', 'must not contain credentials'],
  [
    'upstream with a path',
    'mirrors: [{host: docker.io, upstream: "https://harbor.io/v2/proxy"}]\n',
    'a path-prefixed mirror goes in remotes',
  ],
  [
    'duplicate mirror host',
    'mirrors: [{host: docker.io}, {host: docker.io, port: 6000, name: other}]\n',
    'mirrors[1].host: mirror host docker.io is already used by mirrors[0]',
  ],
  [
    'duplicate container name',
    'mirrors: [{host: docker.io, name: kind-registry}]\n',
    'mirrors[0].name: container name kind-registry is already used by registry',
  ],
  [
    'duplicate port with the local registry',
    'mirrors: [{host: docker.io, port: 5001}]\n',
    'mirrors[0].port: port 5001 is already used by registry',
  ],
  ['derived port clashes', 'registry: {port: 5101}\n', 'mirrors[0].port: port 5101 is already used by registry'],
  [
    'duplicate volume',
    'mirrors: [{host: docker.io, volume: kind-registry-data}]\n',
    'mirrors[0].volume: volume kind-registry-data is already used by registry',
  ],
  [
    'credentials with a value instead of a name',
    'mirrors: [{host: docker.io, credentials: {usernameEnv: me, passwordEnv: "hunter2!"}}]\n',
    'mirrors[0].credentials.passwordEnv',
  ],
  [
    'credentials neither none nor variable names',
    'mirrors: [{host: docker.io, credentials: anonymous}]\n',
    'mirrors[0].credentials: must be none, or {usernameEnv, passwordEnv} naming environment variables, got string "anonymous"',
  ],
  [
    'credentials missing a key',
    'mirrors: [{host: docker.io, credentials: {usernameEnv: U}}]\n',
    'mirrors[0].credentials.passwordEnv: is required',
  ],
  [
    'remote path without slash',
    'mirrors: [{host: docker.io, remotes: [{url: "https://h.io", path: v2/x}]}]\n',
    'mirrors[0].remotes[0].path',
  ],
  ['alias with a scheme', 'aliases: ["http://registry.dev.local"]\n', 'aliases[0]'],
  [
    'hosts entry naming a public registry',
    'hosts: [{name: docker.io, address: 127.0.0.1}]\n',
    'hosts[0].name: docker.io is a public registry',
  ],
  ['hosts entry naming ghcr.io', 'hosts: [{name: ghcr.io, address: 127.0.0.1}]\n', 'would shadow that registry'],
  [
    'hosts entry with a bad address',
    'hosts: [{name: registry.dev.local, address: 999.1.1.1}]\n',
    'hosts[0].address: "999.1.1.1" is not an IP address',
  ],
  ['hosts entry without an address', 'hosts: [{name: registry.dev.local}]\n', 'hosts[0].address: is required'],
  [
    'hosts entry listed twice',
    'hosts: [{name: a.dev.local, address: 127.0.0.1}, {name: a.dev.local, address: 127.0.0.1}]\n',
    'hosts[1].name: a.dev.local is listed twice',
  ],
  ['bad warm platform', 'warm: {platforms: [amd64]}\n', 'warm.platforms[0]'],
  ['zero concurrency', 'warm: {concurrency: 0}\n', 'warm.concurrency'],
  ['mirrors not a list', 'mirrors: {host: docker.io}\n', 'mirrors: '],
  ['registry a string', 'registry: kind-registry\n', 'registry: '],
  ['top level a list', '- a\n- b\n', 'must be a YAML mapping'],
  ['YAML syntax error has line and column', 'registry:\n  port: [5001\n', /\.yaml:\d+:\d+: YAML syntax error/],
  ['duplicate YAML key', 'registry:\n  port: 1\n  port: 2\n', /:3:\d+: YAML syntax error/],
  [
    'a billion-laughs document (nested aliases)',
    [
      'a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
      '',
    ].join('\n'),
    /\.yaml: YAML refused: its aliases expand too far \(a resource-exhaustion "billion laughs" document\)/,
  ],
  ['an alias without its anchor', 'registry: {name: *nope}\n', /\.yaml: YAML refused: Unresolved alias .*: nope$/],
  [
    'a document nested past the stack',
    `cluster: ${'['.repeat(50_000)}\n`,
    /\.yaml(:\d+:\d+)?: YAML refused: it is nested too deeply to read$/,
  ],
  ['network with a space', 'cluster: {network: "my net"}\n', 'cluster.network'],
]

describe('malformed configs', () => {
  test.each(MALFORMED)('%s', (_name, text, expected) => {
    const path = file(`bad-${Math.random().toString(36).slice(2)}.yaml`, text)
    let error: unknown
    try {
      loadConfig({ configPath: path, env: {} })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(UserError)
    const e = error as UserError
    expect(e.exitCode).toBe(2)
    expect(e.message).toContain(path.split('/').pop() as string)
    if (typeof expected === 'string') expect(e.message).toContain(expected)
    else expect(e.message).toMatch(expected)
  })

  test('a YAML syntax error keeps its line and column', () => {
    const path = file('syntax.yaml', 'registry:\n  port: [5001\n')
    expect(() => loadConfig({ configPath: path, env: {} })).toThrow(
      /syntax\.yaml:3:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]$/,
    )
  })

  test('a missing file names the path and exits 2', () => {
    expect(() => loadConfig({ configPath: join(dir, 'nope.yaml'), env: {} })).toThrow(/nope\.yaml: cannot read it \(ENOENT\)/)
  })

  test('a local overlay error names the overlay file', () => {
    const main = file('main.yaml', 'registry: {port: 5001}\n')
    const overlay = file('overlay.yaml', 'registry: {port: 99999}\n')
    const sources = [main, overlay]
    // loadConfig reads config/devreg.local.yaml only; exercise the attribution through resolveConfig.
    const data = sources.map((s) => parse(readFileSync(s, 'utf8')))
    expect(() => resolveConfig(mergeConfig(data[0], data[1]), () => 'overlay.yaml')).toThrow('overlay.yaml: registry.port: 99999')
  })
})
