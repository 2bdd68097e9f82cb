// `registry-gc --stats` on a registry of 300 repositories x 10 tags, against
// a sequential curl walk of the registry API (the catalog, each repository's
// tags/list, every manifest), which is how users count today. Both must agree
// on the numbers before their times are compared.
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { $ } from 'zx'
import { mapLimit } from '../scripts/lib/registry.ts'
import { REGISTRY_IMAGE } from '../test/support/images.ts'
import { layer, pushImage } from '../test/support/push.ts'

const REPOS = Number(process.env.DEVREG_BENCH_STATS_REPOS ?? 300)
const TAGS = Number(process.env.DEVREG_BENCH_STATS_TAGS ?? 10)
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'

export interface StatsBench {
  repos: number
  tags: number
  statsMs: number
  walkMs: number
  ratio: number
}

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

export async function statsBench(bun: string, root: string, id: string): Promise<StatsBench> {
  const name = `${id}-stats-registry`
  const volume = `${id}-stats-data`
  const port = 15900
  const base = `http://127.0.0.1:${port}`
  const dir = mkdtempSync(join(tmpdir(), 'devreg-bench-stats-'))
  const config = join(dir, 'devreg.yaml')
  writeFileSync(config, stringify({ registry: { name, port, image: REGISTRY_IMAGE, volume }, mirrors: [] }))
  const q = $({ quiet: true, nothrow: true })
  try {
    const up = await q`${bun} ${join(root, 'scripts/dev-registry.ts')} --config ${config}`
    if (up.exitCode !== 0) throw new Error(`dev-registry up failed: ${up.stderr}`)
    // Each repository: one shared layer; each tag its own config (so its own manifest).
    const seedStart = performance.now()
    const shared = layer(2048)
    await mapLimit(
      Array.from({ length: REPOS }, (_, i) => `bench/app-${String(i).padStart(3, '0')}`),
      16,
      async (repo) => {
        for (let t = 0; t < TAGS; t++)
          await pushImage(base, repo, `v${t}`, { layers: [shared], created: new Date(Date.UTC(2026, 0, 1 + t)) })
      },
    )
    console.error(`seeded ${REPOS} x ${TAGS} in ${(performance.now() - seedStart).toFixed(0)} ms`)
    const start = performance.now()
    const stats = await q`${bun} ${join(root, 'scripts/registry-gc.ts')} --config ${config} --stats --json --registry ${name}`
    const statsMs = performance.now() - start
    if (stats.exitCode !== 0) throw new Error(`registry-gc --stats failed: ${stats.stderr}`)
    const walkStart = performance.now()
    const walk = await curlWalk(base)
    const walkMs = performance.now() - walkStart
    const s = JSON.parse(stats.stdout)[0] as { tags: number; logicalBytes: number }
    if (s.tags !== walk.tags || s.logicalBytes !== walk.logicalBytes)
      throw new Error(`--stats and the API walk disagree: ${JSON.stringify(s)} vs ${JSON.stringify(walk)}`)
    return { repos: REPOS, tags: walk.tags, statsMs, walkMs, ratio: walkMs / statsMs }
  } finally {
    await q`docker rm -f -v ${name}`
    await q`docker volume rm ${volume}`
  }
}

if (import.meta.main) {
  const root = join(import.meta.dirname, '..')
  const r = await statsBench(join(root, 'node_modules/.bin/bun'), root, `bench${process.pid}`)
  console.log(
    `registry-gc --stats on ${r.repos} repositories x ${r.tags / r.repos} tags: ${r.statsMs.toFixed(0)} ms; sequential curl walk ${r.walkMs.toFixed(0)} ms; ${r.ratio.toFixed(1)}x faster`,
  )
}
