// The scripts as a user runs them, without Docker: help, usage errors, exit
// codes, and --dry-run plans of the committed defaults (which start nothing).
import { describe, expect, test } from 'bun:test'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT, runScript } from '../kit/scripts.ts'

// No daemon behind this socket: dry-run plans as if nothing existed yet.
const noDocker = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' }
const scripts = readdirSync(join(ROOT, 'scripts'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))

describe('every script', () => {
  test.each(scripts)('%s --help', async (name) => {
    const r = await runScript(name, ['--help'], { env: noDocker })
    expect(r.code).toBe(0)
    expect(r.stdout).toStartWith(`Usage: ${name}`)
    expect(r.stdout).toContain('Options:')
    expect(r.stdout).toContain('Examples:')
  })

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

  test('without the docker CLI, up says docker is not installed and how to install it, exit 1', async () => {
    // A PATH with a shell and nothing else: the docker CLI is not installed, not merely unable to reach a daemon.
    const bin = mkdtempSync(join(tmpdir(), 'devreg-path-'))
    for (const shell of ['sh', 'bash']) symlinkSync(`/bin/${shell}`, join(bin, shell))
    const r = await runScript('dev-registry', [], { env: { ...noDocker, PATH: bin } })
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      'error: docker not found on PATH: install Docker (https://docs.docker.com/engine/install/) and start it, then run this again\n',
    )
  })

  test('a bad DEVREG_CONFIG exits 2 before looking for Docker', async () => {
    const r = await runScript('dev-registry', [], { env: { ...noDocker, DEVREG_CONFIG: '/nonexistent/devreg.yaml' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('/nonexistent/devreg.yaml: cannot read it')
  })
})

describe('nothing runs after a usage or config error', () => {
  // docker, kind, k3d and kubectl that only record that they were called.
  const bin = mkdtempSync(join(tmpdir(), 'devreg-stubs-'))
  const calls = join(bin, 'calls.log')
  for (const tool of ['docker', 'kind', 'k3d', 'kubectl']) {
    writeFileSync(join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> '${calls}'\n`, { mode: 0o755 })
  }
  const stubbed = { ...noDocker, PATH: `${bin}:${process.env.PATH}` }
  const called = () => (existsSync(calls) ? readFileSync(calls, 'utf8') : '')

  // Run first: the stand-ins are the ones a script finds (so an empty log below means something).
  test('the stand-ins are what a script calls', async () => {
    const r = await runScript('dev-down', ['--dry-run'], { env: stubbed })
    expect(r.code).toBe(0)
    expect(called()).toStartWith('docker ps ')
    rmSync(calls)
  })

  test.each([[['--config', '--dry-run']], [['--config']], [['--config=', '--purge', '--yes']]])(
    'dev-down %p is a usage error before any docker or kind command',
    async (args) => {
      const r = await runScript('dev-down', args, { env: stubbed })
      expect(r.code).toBe(2)
      expect(r.stderr).toStartWith('error: --config needs a value (--config PATH)\n\nUsage: dev-down')
      expect(r.stdout).toBe('')
      expect(called()).toBe('')
    },
  )

  test.each([
    ['dev-registry', ['report', 'quay.example']],
    ['dev-registry', ['export', 'x.tar', 'quay.example']],
    ['registry-gc', ['--stats', '--registry', 'quay.example']],
  ])('%s %p: a registry name the config lacks is the same usage error, before any docker command', async (script, args) => {
    const r = await runScript(script, args, { env: { ...stubbed, XDG_RUNTIME_DIR: bin } })
    expect(r.code).toBe(2)
    expect(r.stderr).toStartWith('error: no registry quay.example in the config: name kind-registry, ')
    expect(called()).toBe('')
  })

  test('a billion-laughs config exits 2 naming the file, before any docker or kind command', async () => {
    const bomb = join(bin, 'bomb.yaml')
    const level = (name: string, of: string) => `${name}: &${name} [${Array(9).fill(of).join(', ')}]`
    writeFileSync(bomb, [level('a', 'lol'), level('b', '*a'), level('c', '*b'), level('d', '*c'), level('e', '*d'), ''].join('\n'))
    const r = await runScript('dev-down', ['--config', bomb], { env: stubbed })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(
      `error: ${bomb}: YAML refused: its aliases expand too far (a resource-exhaustion "billion laughs" document): write the values out instead of nesting aliases (*name)\n`,
    )
    expect(called()).toBe('')
  })
})
