// `just bench`: devreg's performance goals, measured in one run on real
// components and printed as ratios. Nothing here contacts the internet: the
// caches' upstream is a local registry container.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { $ } from 'zx'
import { prepareImages, REGISTRY_IMAGE } from '../test/support/images.ts'

const RUNS = Number(process.env.DEVREG_BENCH_RUNS ?? 15)
const root = join(import.meta.dirname, '..')
const bun = join(root, 'node_modules/.bin/bun')
const id = `bench${process.pid}`
const q = $({ quiet: true, nothrow: true })

async function timeRuns(argv: string[], env: Record<string, string> = {}): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now()
    const p = await $({ quiet: true, nothrow: true, env: { ...process.env, ...env } })`${argv}`
    if (p.exitCode !== 0) throw new Error(`${argv.join(' ')} failed: ${p.stderr}`)
    times.push(performance.now() - start)
  }
  return times
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

await prepareImages()
const dir = mkdtempSync(join(tmpdir(), 'devreg-bench-'))
const network = `${id}-net`
const config = join(dir, 'devreg.yaml')
writeFileSync(
  config,
  stringify({
    cluster: { network },
    registry: { name: `${id}-registry`, port: 15001, image: REGISTRY_IMAGE, volume: `${id}-registry-data` },
    mirrors: ['docker.io', 'ghcr.io', 'quay.io', 'registry.k8s.io'].map((host, i) => ({
      host,
      upstream: `http://${id}-upstream:5000`,
      name: `${id}-cache-${i}`,
      port: 15101 + i,
    })),
  }),
)
try {
  await $({ quiet: true })`docker network create ${network}`
  await $({ quiet: true })`docker run -d --name ${`${id}-upstream`} --network ${network} ${REGISTRY_IMAGE}`
  const first = await $({ quiet: true, nothrow: true })`${bun} ${join(root, 'scripts/dev-registry.ts')} --config ${config}`
  if (first.exitCode !== 0) throw new Error(`dev-registry up failed: ${first.stderr}`)

  const noop = await timeRuns([bun, join(root, 'scripts/dev-registry.ts'), '--config', config])
  const floor = await timeRuns([bun, join(root, 'bench/floor.ts')])
  const ratio = median(noop) / median(floor)
  console.log(`no-op \`dev-registry up\` (5 registries), median of ${RUNS} runs under Bun`)
  console.log(`  dev-registry up (no-op)   ${median(noop).toFixed(0).padStart(6)} ms`)
  console.log(`  floor (imports + docker ps) ${median(floor).toFixed(0).padStart(4)} ms`)
  console.log(`  ratio                     ${ratio.toFixed(2).padStart(6)}x   (target: at most 2x) ${ratio <= 2 ? 'met' : 'NOT MET'}`)
  process.exitCode = ratio <= 2 ? 0 : 1
} finally {
  const names = (await q`docker ps -a --format {{.Names}}`).stdout.split('\n').filter((n) => n.startsWith(`${id}-`))
  for (const n of names) await q`docker rm -f ${n}`
  const vols = (await q`docker volume ls --format {{.Name}}`).stdout.split('\n').filter((n) => n.startsWith(`${id}-`))
  for (const v of vols) await q`docker volume rm ${v}`
  await q`docker network rm ${network}`
}
