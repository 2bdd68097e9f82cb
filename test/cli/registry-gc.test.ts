// registry-gc as a user runs it, without Docker: usage errors first, then the
// daemon it cannot reach.
import { describe, expect, test } from 'bun:test'
import { runScript } from '../kit/scripts.ts'

describe('registry-gc without Docker', () => {
  const noDocker = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' }
  test('--stats says the daemon is unreachable and how to start it, exit 1', async () => {
    const r = await runScript('registry-gc', ['--stats'], { env: noDocker })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('the Docker daemon is not reachable')
    expect(r.stdout).toBe('')
  })
  test('usage errors come before Docker is asked anything: exit 2', async () => {
    const r = await runScript('registry-gc', ['--older-than', 'soon'], { env: noDocker })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('is not an age')
  })
})
