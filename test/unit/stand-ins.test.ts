// The stand-ins must refuse what the real tools would reject, so no test
// passes on a call k3d or kubectl would not accept. (kind itself is real in
// the tests: see test/e2e and test/rig.)
import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { $ } from 'zx'
import { ROOT } from '../support/fixture.ts'

const run = async (tool: string, args: string[], input = '') => {
  const p = await $({
    quiet: true,
    nothrow: true,
    input: input || undefined,
    env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent.sock' },
  })`${join(ROOT, 'test/stand-ins/bin', tool)} ${args}`
  return { code: p.exitCode, stderr: p.stderr }
}

describe('stand-ins refuse', () => {
  test.each([
    ['k3d', ['cluster', 'create', 'x', '--registry-use', 'kind-registry'], 'unknown flag: --registry-use', ''],
    ['k3d', ['get', 'clusters'], 'unknown command "get clusters"', ''],
    ['kubectl', ['apply', '-f', '-'], 'needs --context', ''],
    ['kubectl', ['--context', 'kind-x', 'delete', 'ns', 'x'], 'unknown command "delete"', ''],
  ] as [string, string[], string, string][])('%s %p', async (tool, args, message, input) => {
    const r = await run(tool, args, input)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(message)
  })
})
