// Running scripts/NAME.ts the way a user does: as a process, under bun (or
// tsx), with this test's environment and stdin.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'

export const ROOT = join(import.meta.dir, '../..')

/** A Docker client config directory with no config.json: scripts under test never see this machine's `docker login`. */
export const NO_DOCKER_LOGIN = mkdtempSync(join(tmpdir(), 'devreg-docker-config-'))

export interface ScriptResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * Runs scripts/NAME.ts the way a user does, under bun (or `runtime: 'tsx'`), with
 * DOCKER_CONFIG at NO_DOCKER_LOGIN unless `env` says otherwise; killed after timeoutMs when given.
 */
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
    env: { ...process.env, NO_COLOR: '1', DEVREG_CONFIG: '', DOCKER_CONFIG: NO_DOCKER_LOGIN, ...opts.env },
    // A script that hangs is stopped, so the test fails instead of leaving it behind.
    ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
  })`${argv} ${args}`
  return { code: p.exitCode ?? -1, stdout: p.stdout, stderr: p.stderr }
}
