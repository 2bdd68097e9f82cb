// Scripts run under `npx tsx` as well as bun (docs/development.md: Node and npm are all a
// machine needs). Every other CLI test runs them under bun; here each script
// starts once under tsx, loading all it imports, and answers --help.
import { expect, test } from 'bun:test'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, runScript } from '../kit/scripts.ts'

const scripts = readdirSync(join(ROOT, 'scripts'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))

// Started together, as tsx takes about half a second to start each.
const runs = new Map(
  scripts.map((name) => [name, runScript(name, ['--help'], { runtime: 'tsx', env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } })]),
)

// Seven tsx processes compiling at once on a loaded 2-CPU machine took over
// bun's 5 s default; the bound is for a hung start, not a speed check.
test.each(scripts)(
  '%s --help under tsx',
  async (name) => {
    const r = await runs.get(name)
    expect(r?.code, r?.stderr).toBe(0)
    expect(r?.stdout).toStartWith(`Usage: ${name}`)
  },
  60_000,
)
