// The README's test command (`just test`): unit, CLI and integration tests against
// this machine's Docker engine, and at the same time the e2e tests — the real
// kind CLI with containerd 2.3, 2.x and 1.7 nodes, and the real k3d CLI with
// k3s-like nodes — inside the rig's private engine
// (test/kit/rig). Ends with "tests: N passed, N failed" over both suites.
// Arguments are test paths or bun test flags; a path under test/e2e goes to the rig.
import { spawn } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stopEngine } from './kit/rig/engine.ts'
import { buildGoPrograms, programVersions } from './kit/rig/go-programs.ts'
import { type RigEnv, rigUp } from './kit/rig/rig.ts'

const ROOT = join(import.meta.dir, '..')
const BUN = process.execPath
const required = process.env.DEVREG_REQUIRE_DOCKER === '1'

interface Outcome {
  pass: number
  fail: number
  code: number
}

/** Runs a command, its output to this terminal or to a file; counts bun's "N pass" / "N fail" lines. */
function run(argv: string[], opts: { env?: Record<string, string>; logFile?: string } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    const sink = opts.logFile ? createWriteStream(opts.logFile) : null
    let text = ''
    const take = (chunk: Buffer, out: NodeJS.WriteStream) => {
      text += chunk.toString()
      if (sink) sink.write(chunk)
      else out.write(chunk)
    }
    child.stdout.on('data', (c) => take(c, process.stdout))
    child.stderr.on('data', (c) => take(c, process.stderr))
    child.on('close', (code) => {
      sink?.end()
      const count = (word: string) => Number(new RegExp(`^\\s*(\\d+) ${word}$`, 'm').exec(text)?.[1] ?? 0)
      resolve({ pass: count('pass'), fail: count('fail'), code: code ?? 1 })
    })
  })
}

const args = process.argv.slice(2)
const isE2e = (a: string) => a.replace(/^\.\//, '').startsWith('test/e2e')
const paths = args.filter((a) => !a.startsWith('-'))
const flags = args.filter((a) => a.startsWith('-'))
const hostPaths = paths.length ? paths.filter((a) => !isE2e(a)) : ['test/unit', 'test/cli', 'test/integration']
const rigPaths = paths.length ? paths.filter(isE2e) : ['test/e2e']
const bunTest = (paths: string[]) => [BUN, 'test', '--parallel=2', '--timeout=180000', ...flags, ...paths]

const outcomes: Outcome[] = []
// The real programs (registry:3, crictl, containerd, runc, k3d, Kubernetes,
// etcd, CoreDNS) from their Go modules, once, before the host and the rig
// both need them. The host's tests get the real kubectl too.
const hostEnv: Record<string, string> = {}
try {
  const dirs = await buildGoPrograms()
  for (const line of await programVersions(dirs)) process.stderr.write(`programs: ${line}\n`)
  hostEnv.PATH = `${dirs.kubectl}:${process.env.PATH}`
} catch (err) {
  const reason = (err as Error).message.split('\n')[0]
  if (required) {
    process.stderr.write(`FAILED: the programs the tests run could not be built (DEVREG_REQUIRE_DOCKER=1): ${reason}\n`)
    outcomes.push({ pass: 0, fail: 1, code: 1 })
  } else process.stderr.write(`SKIPPING what needs registry:3, crictl or k3d: ${reason}\n`)
}
let rig: RigEnv | null = null
if (rigPaths.length) {
  try {
    process.stderr.write('rig: private engine, real kind and k3d, node images (cached after the first run) ...\n')
    rig = await rigUp()
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0]
    if (required) {
      process.stderr.write(`FAILED: the e2e rig did not come up (DEVREG_REQUIRE_DOCKER=1): ${reason}\n`)
      outcomes.push({ pass: 0, fail: 1, code: 1 })
    } else process.stderr.write(`SKIPPING e2e tests (real kind and k3d): the rig did not come up: ${reason}\n`)
  }
}

const rigLog = join(tmpdir(), `devreg-e2e-${process.pid}.log`)
const [host, e2e] = await Promise.all([
  hostPaths.length ? run([BUN, 'test/kit/images.ts']).then(() => run(bunTest(hostPaths), { env: hostEnv })) : null,
  rig
    ? (async (r: RigEnv) => {
        // Inside the rig's network namespace, with its engine as the only one.
        const inRig = (argv: string[]) => ['nsenter', `--net=${r.netnsPath}`, ...argv]
        const prepared = await run(inRig([BUN, 'test/kit/images.ts']), { env: r.env, logFile: `${rigLog}.images` })
        if (prepared.code !== 0) return { pass: 0, fail: 1, code: 1, log: `${rigLog}.images` }
        return { ...(await run(inRig(bunTest(rigPaths)), { env: r.env, logFile: rigLog })), log: rigLog }
      })(rig)
    : null,
])
if (host) outcomes.push(host)
if (e2e) {
  process.stdout.write(
    `\n==> e2e tests in the rig (real kind with containerd 2.3, 2.x and 1.7 nodes; real k3d with k3s-like nodes)\n${readFileSync(e2e.log, 'utf8')}\n`,
  )
  outcomes.push(e2e)
}
if (rig?.started) await stopEngine()

const pass = outcomes.reduce((n, o) => n + o.pass, 0)
const fail = outcomes.reduce((n, o) => n + o.fail + (o.code !== 0 && o.fail === 0 ? 1 : 0), 0)
process.stdout.write(`tests: ${pass} passed, ${fail} failed\n`)
process.exitCode = fail || !pass ? 1 : 0
