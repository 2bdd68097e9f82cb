// dev-registry warm and report as a user runs them, without Docker: --dry-run
// plans, usage errors before Docker is asked, and the advice when no cache answers.
import { describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../kit/net.ts'
import { runScript } from '../kit/scripts.ts'

describe('dev-registry warm and report as a user runs them, without Docker', () => {
  // No daemon behind this socket: nothing can be started or fetched.
  const noDocker = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' }
  const devRegistry = (args: string[]) => runScript('dev-registry', args, { env: noDocker })

  test('--dry-run shows which cache each image goes through, for which platforms', async () => {
    const args = ['warm', 'redis:7-alpine', 'quay.io/prometheus/prometheus:v2.48.0', '--platform', 'linux/amd64,linux/arm64', '--dry-run']
    const r = await devRegistry(args)
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split('\n')).toEqual([
      'would warm docker.io/library/redis:7-alpine through kind-cache-docker-io (http://127.0.0.1:5101) for linux/amd64, linux/arm64',
      'would warm quay.io/prometheus/prometheus:v2.48.0 through kind-cache-quay-io (http://127.0.0.1:5103) for linux/amd64, linux/arm64',
    ])
  })

  test.each([
    [['warm'], 'nothing to warm: name images'],
    [['warm', 'example.com/x:1'], 'example.com/x:1: no cache for example.com'],
    [['warm', 'redis:7', '--concurrency', '0'], '--concurrency: must be a whole number from 1 to 64'],
    [['warm', 'redis:7', '--platform', 'linux'], '--platform: "linux" is not a platform such as linux/amd64'],
    [['warm', 'redis:7', '--since', '1h'], '--since goes with report'],
    [['report', '--platform', 'linux/amd64'], '--platform goes with warm'],
    [['report', '--since', 'yesterday'], '--since "yesterday" is not a time'],
    [['report', 'extra'], 'no registry extra in the config: name '],
  ])('%p is a usage error (exit 2) before Docker is asked', async (args, message) => {
    const r = await devRegistry(args)
    expect(r.stderr).toContain(message)
    expect(r.code).toBe(2)
  })

  test('warm without Docker or caches says to bring them up first, exit 1', async () => {
    // Ports known to be free: a devreg running on this machine must not answer.
    const [registryPort, cachePort] = [await freePort(), await freePort()]
    const dir = mkdtempSync(join(tmpdir(), 'devreg-warm-'))
    const configPath = join(dir, 'devreg.yaml')
    writeFileSync(
      configPath,
      `registry: {port: ${registryPort}}\nmirrors: [{host: docker.io, upstream: http://up:5000, port: ${cachePort}}]\n`,
    )
    const r = await devRegistry(['warm', 'redis:7-alpine', '--config', configPath])
    rmSync(dir, { recursive: true, force: true })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`kind-cache-docker-io does not answer on http://127.0.0.1:${cachePort}`)
    expect(r.stderr).toContain('run `dev-registry up` first')
  })
})
