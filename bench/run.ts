// `just bench`: devreg's performance goals, measured in one run on real
// components. Each section sets up what it measures in its own workspace and
// returns markdown and the targets it checks; the run prints them, writes
// bench/results.md when every section ran, and exits 1 when a target is
// missed. Nothing here contacts the internet: every upstream is a local
// registry container. The kind section runs in the test rig (test/kit/rig), which
// needs root and Bun. Add a section: write it as bench/NAME.ts and list it here.
//
// Usage: bench/run.ts [SECTION...]   (default: all; a partial run does not write results.md)
// Environment: DEVREG_BENCH_SCALE (image sizes, default 0.125), DEVREG_BENCH_MBIT (default 50),
//              DEVREG_BENCH_RUNS (no-op runs, default 15), DEVREG_BENCH_KEEP=1 (leave the docker objects)
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { prepareImages } from '../test/kit/images.ts'
import { carry } from './carry.ts'
import { BUN, type Check, machine, ROOT, type Section, Workspace } from './harness.ts'
import { kind } from './kind.ts'
import { noop } from './noop.ts'
import { pulls } from './pulls.ts'
import { stats } from './stats.ts'

const SECTIONS: Section[] = [pulls, noop, stats, carry, kind]

const wanted = process.argv.slice(2)
const unknown = wanted.filter((w) => !SECTIONS.some((s) => s.name === w))
if (unknown.length) {
  console.error(`unknown section ${unknown.join(', ')}: the sections are ${SECTIONS.map((s) => s.name).join(', ')}`)
  process.exit(2)
}
const chosen = wanted.length ? SECTIONS.filter((s) => wanted.includes(s.name)) : SECTIONS

await prepareImages()
const parts: string[] = []
const checks: Check[] = []
let failed = false
for (const section of chosen) {
  console.error(`${section.title} ...`)
  const ws = new Workspace(`bench${process.pid}-${section.name}`)
  const start = performance.now()
  try {
    const result = await section.run({ id: ws.id, root: ROOT, bun: BUN, ws })
    parts.push(`## ${section.title}\n\n${result.markdown}`)
    checks.push(...result.checks)
    console.log(`\n## ${section.title}\n\n${result.markdown}\n`)
  } catch (err) {
    failed = true
    console.error(`${section.name} failed: ${(err as Error).stack ?? err}`)
  } finally {
    if (process.env.DEVREG_BENCH_KEEP === '1') console.error(`  kept its containers, volumes and networks: ${ws.id}-*`)
    else await ws.cleanup()
  }
  console.error(`  (${((performance.now() - start) / 1000).toFixed(0)} s)`)
}

const targets = [
  '| target | measured | |',
  '| --- | ---: | --- |',
  ...checks.map((c) => `| ${c.target} | ${c.measured} | ${c.met ? 'met' : '**NOT MET**'} |`),
].join('\n')
console.log(`## Targets\n\n${targets}`)
if (!failed && chosen.length === SECTIONS.length) {
  const header = `# devreg benchmark results\n\nWritten by \`just bench\` (bench/run.ts) from one run:\n\n${(await machine()).join('\n')}`
  writeFileSync(join(ROOT, 'bench/results.md'), `${[header, ...parts, `## Targets\n\n${targets}`].join('\n\n')}\n`)
  console.error('wrote bench/results.md')
}
process.exitCode = failed || checks.some((c) => !c.met) ? 1 : 0
