// `registry-gc --stats` on a registry of 300 repositories x 10 tags, against
// a sequential curl walk of the registry API (the catalog, each repository's
// tags/list, every manifest), which is how users count today. Both must agree
// on the numbers before their times are compared.
import { createHash } from 'node:crypto'
import { $ } from 'zx'
import { mapLimit } from '../scripts/lib/core/pool.ts'
import { REGISTRY_IMAGE } from '../test/kit/images.ts'
import { layer, pushImage } from '../test/kit/push.ts'
import { type BenchContext, type Section, script, seconds, timed } from './harness.ts'

const REPOS = Number(process.env.DEVREG_BENCH_STATS_REPOS ?? 300)
const TAGS = Number(process.env.DEVREG_BENCH_STATS_TAGS ?? 10)
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'

/** What users do by hand today: a curl loop over the catalog, each repository's tags and each tag's manifest. */
async function curlWalk(base: string): Promise<{ tags: number; logicalBytes: number }> {
  const curl = async (path: string) => (await $({ quiet: true })`curl -sf -H ${`Accept: ${ACCEPT}`} ${`${base}${path}`}`).stdout
  let tags = 0
  let logicalBytes = 0
  const repos = (JSON.parse(await curl('/v2/_catalog?n=1000')) as { repositories: string[] }).repositories
  for (const repo of repos) {
    const blobs = new Map<string, number>()
    for (const tag of (JSON.parse(await curl(`/v2/${repo}/tags/list`)) as { tags: string[] }).tags) {
      tags++
      const body = await curl(`/v2/${repo}/manifests/${tag}`)
      const m = JSON.parse(body) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] }
      blobs.set(`sha256:${createHash('sha256').update(body).digest('hex')}`, Buffer.byteLength(body))
      for (const b of [m.config, ...m.layers]) blobs.set(b.digest, b.size)
    }
    for (const size of blobs.values()) logicalBytes += size
  }
  return { tags, logicalBytes }
}

export const stats: Section = {
  name: 'stats',
  title: 'registry-gc --stats on a large registry',
  async run({ ws }: BenchContext) {
    const name = ws.name('registry')
    const port = 15900
    const base = `http://127.0.0.1:${port}`
    const config = ws.config({ registry: { name, port, image: REGISTRY_IMAGE, volume: ws.name('registry-data') }, mirrors: [] })
    await script('dev-registry', ['--config', config])
    // Each repository: one shared layer; each tag its own config (so its own manifest).
    const shared = layer(2048)
    const repos = Array.from({ length: REPOS }, (_, i) => `bench/app-${String(i).padStart(3, '0')}`)
    console.error(`  pushing ${REPOS} repositories x ${TAGS} tags`)
    await mapLimit(repos, 16, async (repo) => {
      for (let t = 0; t < TAGS; t++) await pushImage(base, repo, `v${t}`, { layers: [shared], created: new Date(Date.UTC(2026, 0, 1 + t)) })
    })
    let out = ''
    const statsMs = await timed(async () => {
      out = await script('registry-gc', ['--config', config, '--stats', '--json', '--registry', name])
    })
    let walk = { tags: 0, logicalBytes: 0 }
    const walkMs = await timed(async () => {
      walk = await curlWalk(base)
    })
    const s = JSON.parse(out)[0] as { tags: number; logicalBytes: number }
    if (s.tags !== walk.tags || s.logicalBytes !== walk.logicalBytes)
      throw new Error(
        `--stats and the curl walk disagree: ${JSON.stringify({ tags: s.tags, logicalBytes: s.logicalBytes })} vs ${JSON.stringify(walk)}`,
      )
    const ratio = walkMs / statsMs
    const markdown = [
      `A local registry holding ${REPOS} repositories x ${TAGS} tags (${walk.tags} manifests). \`registry-gc --stats --json\` as a`,
      'user runs it (process start-up, reading the volume through a helper container, the numbers), against a',
      "sequential curl walk of the API: the catalog, each repository's tags/list, each tag's manifest, one curl at a",
      'time. Both reach the same tag count and logical size before their times are compared.',
      '',
      '| run | time |',
      '| --- | ---: |',
      `| \`registry-gc --stats\` | ${seconds(statsMs)} |`,
      `| sequential curl walk | ${seconds(walkMs)} |`,
      `| ratio | ${ratio.toFixed(1)}x faster |`,
    ].join('\n')
    return {
      markdown,
      checks: [{ target: '--stats at least 10x faster than a sequential curl walk', measured: `${ratio.toFixed(1)}x`, met: ratio >= 10 }],
    }
  },
}
