// k3d: what devreg hands `k3d cluster create`, what k3d writes into the nodes
// (its yaml.v2 re-serialisation of --registry-config) and how devreg reads that
// back as data, and the drift only --recreate can fix.
import { describe, expect, test } from 'bun:test'
import { isDeepStrictEqual } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { type Cluster, clusterDrift } from '../../scripts/lib/cluster/providers/index.ts'
import {
  desiredRegistriesData,
  desiredRegistriesYaml,
  type K3sRegistriesData,
  k3dNodeFlags,
  k3sRegistriesData,
} from '../../scripts/lib/cluster/providers/k3d.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { k3dRegistriesYaml, yamlV2Less } from '../kit/k3d-registries.ts'

const k3d = (extra: Record<string, unknown> = {}) =>
  resolveConfig({ cluster: { provider: 'k3d', name: 'dev' }, mirrors: [{ host: 'docker.io' }], ...extra })
const mirrorsOf = (yaml: string) =>
  Object.fromEntries(Object.entries(parseYaml(yaml).mirrors as Record<string, { endpoint: string[] }>).map(([h, m]) => [h, m.endpoint]))

describe('what k3d writes into the nodes for --registry-config', () => {
  test('every field of wharfie’s Registry in struct order, hosts in yaml.v2’s order, lists not indented, empty maps as {}', () => {
    expect(k3dRegistriesYaml(mirrorsOf(desiredRegistriesYaml(k3d())))).toBe(
      [
        'mirrors:',
        '  docker.io:',
        '    endpoint:',
        '    - http://kind-cache-docker-io:5000',
        '    rewrite: {}',
        '  kind-registry:5000:',
        '    endpoint:',
        '    - http://kind-registry:5000',
        '    rewrite: {}',
        '  localhost:5001:',
        '    endpoint:',
        '    - http://kind-registry:5000',
        '    rewrite: {}',
        'configs: {}',
        'auths: {}',
        '',
      ].join('\n'),
    )
    expect(k3dRegistriesYaml({})).toBe('mirrors: {}\nconfigs: {}\nauths: {}\n')
    expect(k3dRegistriesYaml({ 'registry.dev.local': [] })).toContain('  registry.dev.local:\n    endpoint: []\n    rewrite: {}\n')
  })

  test.each([
    ['a9', 'a10'],
    ['localhost:501', 'localhost:5001'],
    ['a1', 'ab'],
    ['a1', 'a01'],
    ['docker.io', 'dt12ab-registry:5000'],
    ['Z', 'a'],
    ['ghcr.io', 'ghcr.io.example'],
  ])('yaml.v2 sorts %p before %p', (a, b) => {
    expect(yamlV2Less(a, b)).toBe(true)
    expect(yamlV2Less(b, a)).toBe(false)
  })

  test('a string yaml.v2 would quote is refused, not guessed', () => {
    expect(() => k3dRegistriesYaml({ yes: [] })).toThrow('would quote')
    expect(() => k3dRegistriesYaml({ 'docker.io': ['http://a b'] })).toThrow('would quote')
  })
})

describe('registries.yaml read as data', () => {
  const config = k3d({ aliases: ['registry.dev.local'] })
  const devreg = desiredRegistriesYaml(config)

  test('the desired routing as data is what reading devreg’s own file gives, with no text in between', () => {
    expect(desiredRegistriesData(config)).toEqual(k3sRegistriesData(devreg) as K3sRegistriesData)
    expect(Object.keys(desiredRegistriesData(config)?.mirrors ?? {})).toEqual([
      'localhost:5001',
      'kind-registry:5000',
      'docker.io',
      'registry.dev.local',
    ])
  })

  test('k3d’s re-serialisation of devreg’s file is the same data', () => {
    const node = k3dRegistriesYaml(mirrorsOf(devreg))
    expect(node).not.toBe(devreg)
    expect(isDeepStrictEqual(k3sRegistriesData(node), k3sRegistriesData(devreg))).toBe(true)
  })

  test('comments, quoting and empty configs, auths and rewrites are no difference; endpoints and their order are', () => {
    const data = (yaml: string) => k3sRegistriesData(yaml)
    const base = "mirrors:\n  docker.io:\n    endpoint: ['http://a:5000', 'http://b:5000']\n"
    expect(data(`# a comment\n${base}configs: {}\nauths: {}\n`)).toEqual(data(base))
    expect(data('mirrors:\n  "docker.io": {endpoint: [http://a:5000, "http://b:5000"], rewrite: {}}\n')).toEqual(data(base))
    expect(data("mirrors:\n  docker.io:\n    endpoint: ['http://b:5000', 'http://a:5000']\n")).not.toEqual(data(base))
    expect(data(`${base}configs:\n  a:5000:\n    tls:\n      insecure_skip_verify: true\n`)).not.toEqual(data(base))
    expect(data('mirrors: [a]\n')).toBeNull()
    expect(data('mirrors: {\n')).toBeNull()
  })
})

describe('k3d cluster create flags', () => {
  test('nothing extra without a hostname alias or a proxy', () => {
    expect(k3dNodeFlags(k3d({ aliases: ['docker.io/acme'] }), {})).toEqual([])
  })

  test('a hostname alias: k3s without default endpoints on servers and agents, each with its node filter', () => {
    expect(k3dNodeFlags(k3d({ aliases: ['registry.dev.local'] }), {})).toEqual([
      '--k3s-arg',
      '--disable-default-registry-endpoint@server:*',
    ])
    expect(k3dNodeFlags(k3d({ aliases: ['registry.dev.local'], cluster: { provider: 'k3d', workers: 2 } }), {})).toEqual([
      '--k3s-arg',
      '--disable-default-registry-endpoint@server:*',
      '--k3s-arg',
      '--disable-default-registry-endpoint@agent:*',
    ])
  })

  test('behind a proxy: NO_PROXY with every registry name, after the user’s own, in both spellings', () => {
    const flags = k3dNodeFlags(k3d(), { https_proxy: 'http://proxy:3128', no_proxy: 'corp.example' })
    expect(flags).toEqual([
      '--env',
      'NO_PROXY=corp.example,kind-registry,kind-cache-docker-io@server:*',
      '--env',
      'no_proxy=corp.example,kind-registry,kind-cache-docker-io@server:*',
    ])
  })
})

describe('drift only --recreate fixes', () => {
  const cluster = (args: string[] | undefined): Cluster => ({
    provider: 'k3d',
    name: 'dev',
    nodes: [{ name: 'k3d-dev-server-0', role: 'server', image: 'rancher/k3s', running: true, args }],
  })

  test('whether k3s runs without default endpoints, read from the node’s command', () => {
    const strict = k3d({ aliases: ['registry.dev.local'] })
    expect(clusterDrift(strict, cluster(['server', '--disable-default-registry-endpoint']))).toEqual([])
    expect(clusterDrift(strict, cluster(['server']))).toEqual([
      'node k3d-dev-server-0 runs k3s without --disable-default-registry-endpoint, which the hostname alias registry.dev.local needs to have no public fallback',
    ])
    expect(clusterDrift(k3d(), cluster(['server', '--disable-default-registry-endpoint']))).toEqual([
      'node k3d-dev-server-0 runs k3s with --disable-default-registry-endpoint, which only a hostname alias needs (the config has none)',
    ])
    expect(clusterDrift(strict, cluster(undefined))).toEqual([])
  })
})
