// warm --from-cluster --save on a real kind cluster: the images its nodes
// pulled become the config's warm list, and a warm on empty caches fetches
// exactly those images, nothing else (not verify's probe image either).
import { expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { criPull } from '../kit/cri.ts'
import { integration } from '../kit/fixture.ts'
import { manifestBlobs, storedBlobs } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

integration('warm --from-cluster --save with the real kind CLI', () => {
  const w = useWorld({ cluster: { provider: 'kind' }, seed: ['alpha', 'beta', 'gamma'] }, async (w) => {
    const up = await w.devUp()
    expect(up.code, up.stderr).toBe(0)
    for (const image of ['alpha', 'beta']) expect((await criPull(w.node, `docker.io/library/${image}:1`)).error).toBeUndefined()
  })
  const { upstream, cache } = w
  const script = (name: string, ...args: string[]) => w.run(name, args)

  test('the saved list is what the nodes hold, and a warm on empty caches fetches exactly those images', async () => {
    const saved = await script('dev-registry', 'warm', '--from-cluster', '--save')
    expect(saved.code, saved.stderr).toBe(0)
    const images = (parseYaml(readFileSync(w.config, 'utf8')) as { images: string[] }).images
    expect(images.map((i) => i.replace(/^docker\.io\/library\//, ''))).toEqual(['alpha:1', 'beta:1'])

    expect((await script('dev-registry', 'rm', '--purge', '--yes')).code).toBe(0)
    expect((await script('dev-registry', 'up')).code).toBe(0)
    expect(await storedBlobs(cache.name)).toEqual([])
    const warm = await script('dev-registry', 'warm')
    expect(warm.code, warm.stderr).toBe(0)
    // A registry stores each manifest as a blob too.
    const manifestDigest = async (repo: string) => {
      const res = await fetch(`http://127.0.0.1:${upstream.port}/v2/${repo}/manifests/1`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
      })
      return res.headers.get('docker-content-digest') as string
    }
    const wanted: string[] = []
    for (const repo of ['library/alpha', 'library/beta'])
      wanted.push(await manifestDigest(repo), ...(await manifestBlobs(upstream.port, repo, '1')))
    expect((await storedBlobs(cache.name)).sort()).toEqual([...new Set(wanted)].sort())
  })
})
