// The scripts as a user runs them, without Docker: help, usage errors, exit
// codes, and --dry-run plans of the committed defaults (which start nothing).
import { describe, expect, test } from 'bun:test'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, runScript } from '../support/fixture.ts'

// No daemon behind this socket: dry-run plans as if nothing existed yet.
const noDocker = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' }
const scripts = readdirSync(join(ROOT, 'scripts'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))

describe('every script', () => {
  for (const runtime of ['bun', 'tsx'] as const) {
    test.each(scripts)(`%s --help under ${runtime}`, async (name) => {
      const r = await runScript(name, ['--help'], { runtime, env: noDocker })
      expect(r.code).toBe(0)
      expect(r.stdout).toStartWith(`Usage: ${name}`)
      expect(r.stdout).toContain('Options:')
      expect(r.stdout).toContain('Examples:')
    })
  }

  test.each(scripts)('%s refuses an unknown flag with exit 2', async (name) => {
    const r = await runScript(name, ['--no-such-flag'], { env: noDocker })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('unknown option --no-such-flag')
  })
})

describe('dev-registry', () => {
  test('--dry-run of the defaults prints the exact docker commands and runs none', async () => {
    const r = await runScript('dev-registry', ['--dry-run'], { env: noDocker })
    expect(r.code).toBe(0)
    const runs = r.stdout.split('\n').filter((l) => l.startsWith('docker run'))
    expect(runs.map((l) => l.match(/--name (\S+)/)?.[1])).toEqual([
      'kind-registry',
      'kind-cache-docker-io',
      'kind-cache-ghcr-io',
      'kind-cache-quay-io',
      'kind-cache-registry-k8s-io',
    ])
    expect(runs[1]).toContain('--publish 127.0.0.1:5101:5000')
    expect(runs[1]).toContain('REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io')
    expect(r.stdout).toContain('docker volume create --label devreg.managed=true kind-cache-docker-io-data')
  })

  test('the same under tsx', async () => {
    const [bun, tsx] = await Promise.all([
      runScript('dev-registry', ['--dry-run'], { env: noDocker }),
      runScript('dev-registry', ['--dry-run'], { env: noDocker, runtime: 'tsx' }),
    ])
    expect(tsx.code).toBe(0)
    expect(tsx.stdout).toBe(bun.stdout)
  })

  test('an unknown command is a usage error', async () => {
    const r = await runScript('dev-registry', ['launch'], { env: noDocker })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('unknown command launch')
  })

  test('adopt without a name is a usage error', async () => {
    const r = await runScript('dev-registry', ['adopt'], { env: noDocker })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('adopt needs the name')
  })

  test('without Docker, up says how to get it', async () => {
    const r = await runScript('dev-registry', [], { env: noDocker })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('the Docker daemon is not reachable')
  })

  test('a bad DEVREG_CONFIG exits 2 before looking for Docker', async () => {
    const r = await runScript('dev-registry', [], { env: { ...noDocker, DEVREG_CONFIG: '/nonexistent/devreg.yaml' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('/nonexistent/devreg.yaml: cannot read it')
  })
})
