// dev-down against a fake runner: what it deletes, in which order, and that
// --purge asks about all of it, the cluster included, before deleting any.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { down } from '../../scripts/dev-down.ts'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { EXIT, UserError } from '../../scripts/lib/core/log.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'

const config = resolveConfig({ cluster: { name: 'dev' }, mirrors: [{ host: 'docker.io', upstream: 'http://127.0.0.1:9' }] })
const cache = config.registries[1]
const ps = (name: string, labels: string) =>
  JSON.stringify({ ID: name, Names: name, State: 'running', Labels: labels, Networks: 'kind', Ports: '', Image: 'x' })
/** A kind cluster of one node, the registries up, the cache's volume holding 2 MiB. */
const machine = () =>
  fakeRunner([
    on(
      ['docker', 'ps'],
      [
        ps('dev-control-plane', 'io.x-k8s.kind.cluster=dev,io.x-k8s.kind.role=control-plane'),
        ...config.registries.map((r) => ps(r.name, 'devreg.managed=true')),
      ].join('\n'),
    ),
    on(['docker', 'volume', 'inspect'], cache.volume),
    on(['docker', 'run', '--rm', '--network', 'none', '--volume', `${cache.volume}:/volume:ro`, '--entrypoint', 'du'], '2048\t/volume'),
    on(['sh', '-c', 'command -v "$1"'], '/usr/bin/kind'),
    on(['kubectl'], { exitCode: 1, stderr: 'Error from server (NotFound): namespaces "devreg" not found' }),
  ])

let stderr = ''
let stdout = ''
const saved = { err: process.stderr.write, out: process.stdout.write }
beforeEach(() => {
  stderr = ''
  stdout = ''
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk)
    return true
  }) as typeof process.stderr.write
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk)
    return true
  }) as typeof process.stdout.write
})
afterEach(() => {
  process.stderr.write = saved.err
  process.stdout.write = saved.out
})

describe('dev-down', () => {
  test('--purge without a terminal and without --yes lists the cluster and each cache volume with its size, refuses with exit 2, and deletes nothing', async () => {
    const run = machine()
    const refused = await down(run, config, { purge: true, yes: false, json: false }).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(UserError)
    expect((refused as UserError).exitCode).toBe(EXIT.usage)
    expect(stderr).toContain('These would be deleted:\n  kind cluster dev (dev-control-plane)\n  container kind-cache-docker-io\n')
    expect(stderr).toMatch(/ {2}volume kind-cache-docker-io-data +2\.0 MiB {2}\(cache of docker\.io\)/)
    expect(run.changes).toEqual([])
  })

  test('--purge --yes deletes the cluster, then the cache container and its volume; the local registry stays', async () => {
    const run = machine()
    expect(await down(run, config, { purge: true, yes: true, json: true })).toBe(0)
    expect(run.changes).toEqual([
      'kind delete cluster --name dev',
      `docker rm --force --volumes=false ${cache.name}`,
      `docker volume rm ${cache.volume}`,
    ])
    expect(JSON.parse(stdout)).toEqual({ cluster: 'dev', provider: 'kind', deleted: true, cachesPurged: true })
  })

  test('without --purge it deletes the cluster alone and asks nothing', async () => {
    const run = machine()
    expect(await down(run, config, { purge: false, yes: false, json: false })).toBe(0)
    expect(run.changes).toEqual(['kind delete cluster --name dev'])
    expect(stderr).toContain('deleted kind cluster dev; registries and caches kept')
  })
})
