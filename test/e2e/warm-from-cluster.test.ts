// warm --from-cluster --save on a real kind cluster: the images its nodes
// pulled become the config's warm list, and a warm on empty caches fetches
// exactly those images, nothing else (not verify's probe image either).
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { criPull } from '../kit/cri.ts'
import { Fixture, freePort, integration, kindEnv, rigNodeImages, runScript, testRegistry } from '../kit/fixture.ts'
import { manifestBlobs, seed, storedBlobs } from '../kit/registry.ts'

integration('warm --from-cluster --save with the real kind CLI', () => {
  const fx = new Fixture()
  let env: Record<string, string>
  let config: string
  let upstreamPort: number
  let cache: string
  const script = (name: string, ...args: string[]) => runScript(name, ['--config', config, ...args], { env })

  beforeAll(async () => {
    env = kindEnv(fx)
    const network = await fx.network('kind')
    const upstream = await fx.upstream(network)
    upstreamPort = upstream.port
    for (const s of ['alpha', 'beta', 'gamma'] as const) await seed(upstream.port, s, `library/${s}`)
    cache = fx.name('cache-docker-io')
    const clusterName = fx.name('c')
    config = fx.config({
      cluster: { provider: 'kind', name: clusterName, network, nodeImage: rigNodeImages()[0].image, waitTimeout: '60s' },
      registry: await testRegistry(fx),
      mirrors: [{ host: 'docker.io', upstream: upstream.url, name: cache, port: await freePort() }],
    })
    const up = await script('dev-up')
    expect(up.code, up.stderr).toBe(0)
    for (const image of ['alpha', 'beta'])
      expect((await criPull(`${clusterName}-control-plane`, `docker.io/library/${image}:1`)).error).toBeUndefined()
  })
  afterAll(async () => {
    await script('dev-down')
    await fx.cleanup()
  })

  test('the saved list is what the nodes hold, and a warm on empty caches fetches exactly those images', async () => {
    const saved = await script('dev-registry', 'warm', '--from-cluster', '--save')
    expect(saved.code, saved.stderr).toBe(0)
    const images = (parseYaml(readFileSync(config, 'utf8')) as { images: string[] }).images
    expect(images.map((i) => i.replace(/^docker\.io\/library\//, ''))).toEqual(['alpha:1', 'beta:1'])

    expect((await script('dev-registry', 'rm', '--purge', '--yes')).code).toBe(0)
    expect((await script('dev-registry', 'up')).code).toBe(0)
    expect(await storedBlobs(cache)).toEqual([])
    const warm = await script('dev-registry', 'warm')
    expect(warm.code, warm.stderr).toBe(0)
    // A registry stores each manifest as a blob too.
    const manifestDigest = async (repo: string) => {
      const res = await fetch(`http://127.0.0.1:${upstreamPort}/v2/${repo}/manifests/1`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
      })
      return res.headers.get('docker-content-digest') as string
    }
    const wanted: string[] = []
    for (const repo of ['library/alpha', 'library/beta'])
      wanted.push(await manifestDigest(repo), ...(await manifestBlobs(upstreamPort, repo, '1')))
    expect((await storedBlobs(cache)).sort()).toEqual([...new Set(wanted)].sort())
  })
})
