// Running scripts/NAME.ts the way a user does: as a process, under bun (or
// tsx), with this test's environment and stdin.
import { join } from 'node:path'
import { $ } from 'zx'

export const ROOT = join(import.meta.dir, '../..')

/** The stand-ins of tools with no binary here (k3d, and kubectl on the host: no API server); first on PATH for scripts under test. */
export const STAND_INS = join(ROOT, 'test/stand-ins/bin')

export interface ScriptResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs scripts/NAME.ts the way a user does, under bun (or `runtime: 'tsx'`); killed after timeoutMs when given. */
export async function runScript(
  name: string,
  args: string[],
  opts: { env?: Record<string, string>; runtime?: 'bun' | 'tsx'; input?: string; timeoutMs?: number } = {},
): Promise<ScriptResult> {
  const script = join(ROOT, 'scripts', `${name}.ts`)
  const argv = opts.runtime === 'tsx' ? [join(ROOT, 'node_modules/.bin/tsx'), script] : [process.execPath, script]
  const p = await $({
    nothrow: true,
    quiet: true,
    input: opts.input ?? '',
    env: { ...process.env, NO_COLOR: '1', DEVREG_CONFIG: '', ...opts.env },
    // A script that hangs is stopped, so the test fails instead of leaving it behind.
    ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
  })`${argv} ${args}`
  return { code: p.exitCode ?? -1, stdout: p.stdout, stderr: p.stderr }
}
