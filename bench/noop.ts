// A no-op `dev-registry up` (5 registries, nothing to change) against the
// floor: a script that only loads the same libraries and runs one `docker ps`
// (bench/floor.ts). Target: at most 2x the floor.
import { $ } from 'zx'
import { REGISTRY_IMAGE } from '../test/kit/images.ts'
import { type BenchContext, median, type Section, script } from './harness.ts'

const RUNS = Number(process.env.DEVREG_BENCH_RUNS ?? 15)

async function timeRuns(argv: string[]): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now()
    const p = await $({ quiet: true, nothrow: true })`${argv}`
    if (p.exitCode !== 0) throw new Error(`${argv.join(' ')} failed: ${p.stderr}`)
    times.push(performance.now() - start)
  }
  return median(times)
}

export const noop: Section = {
  name: 'noop',
  title: 'No-op re-run of dev-registry',
  async run({ ws, bun, root }: BenchContext) {
    const network = await ws.network()
    const upstream = ws.name('upstream')
    const config = ws.config({
      cluster: { network },
      registry: { name: ws.name('registry'), port: 15001, image: REGISTRY_IMAGE, volume: ws.name('registry-data') },
      mirrors: ['docker.io', 'ghcr.io', 'quay.io', 'registry.k8s.io'].map((host, i) => ({
        host,
        upstream: `http://${upstream}:5000`,
        name: ws.name(`cache-${i}`),
        port: 15101 + i,
      })),
    })
    await $({ quiet: true })`docker run -d --name ${upstream} --network ${network} ${REGISTRY_IMAGE}`
    await script('dev-registry', ['--config', config])

    const noopMs = await timeRuns([bun, `${root}/scripts/dev-registry.ts`, '--config', config])
    const floorMs = await timeRuns([bun, `${root}/bench/floor.ts`])
    const ratio = noopMs / floorMs
    const markdown = [
      `Median of ${RUNS} runs under Bun: \`dev-registry up\` with 5 registries that already match the config, against`,
      '`bench/floor.ts`, which only imports zx, yaml and minimist and runs one `docker ps`.',
      '',
      '| run | time |',
      '| --- | ---: |',
      `| \`dev-registry up\` (no-op) | ${noopMs.toFixed(0)} ms |`,
      `| floor (imports + \`docker ps\`) | ${floorMs.toFixed(0)} ms |`,
      `| ratio | ${ratio.toFixed(2)}x |`,
    ].join('\n')
    return { markdown, checks: [{ target: 'no-op re-run at most 2x the floor script', measured: `${ratio.toFixed(2)}x`, met: ratio <= 2 }] }
  },
}
