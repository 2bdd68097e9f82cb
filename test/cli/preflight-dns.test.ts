// preflight-dns as a user runs it, where no Docker is needed: --fix-hosts on a
// temporary hosts file, its --dry-run diff, writing without permission, and
// usage errors.
import { describe, expect, test } from 'bun:test'
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { $ } from 'zx'
import { BEGIN_MARKER, END_MARKER } from '../../scripts/lib/machine/etc-hosts.ts'
import { ROOT, runScript } from '../kit/scripts.ts'

const noDocker = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' }
const dir = mkdtempSync(join(tmpdir(), 'devreg-preflight-'))
const config = join(dir, 'devreg.yaml')
writeFileSync(
  config,
  stringify({
    hosts: [
      { name: 'registry.dev.local', address: '127.0.0.1' },
      { name: 'api.dev.local', address: '10.0.0.5', buildAddress: '10.0.0.5' },
    ],
  }),
)
const ORIGINAL = '127.0.0.1\tlocalhost\n127.0.0.1 docker.io\n# keep me\n10.1.1.1   intranet   # trailing comment\n'
const hostsFile = (name: string, text = ORIGINAL) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
const preflight = (...args: string[]) => runScript('preflight-dns', ['--config', config, ...args], { env: noDocker })

describe('preflight-dns --fix-hosts', () => {
  test('adds the missing entries once; a second run changes nothing; every other line stays as it was', async () => {
    const path = hostsFile('hosts')
    const first = await preflight('--fix-hosts', '--hosts-file', path)
    expect(first.code).toBe(0)
    expect(first.stderr).toContain(`${path}: added 127.0.0.1 registry.dev.local, added 10.0.0.5 api.dev.local`)
    const after = readFileSync(path, 'utf8')
    expect(after).toBe(`${ORIGINAL}${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n10.0.0.5 api.dev.local\n${END_MARKER}\n`)

    const second = await preflight('--fix-hosts', '--hosts-file', path)
    expect(second.code).toBe(0)
    expect(second.stderr).toContain('every hosts entry is already there')
    expect(readFileSync(path, 'utf8')).toBe(after)
  })

  test('warns that 127.0.0.1 docker.io breaks pulls from Docker Hub on this machine', async () => {
    const r = await preflight('--fix-hosts', '--hosts-file', hostsFile('shadow'))
    expect(r.stderr).toContain('line 2 maps docker.io to 127.0.0.1: pulls from docker.io on this machine go there and fail')
  })

  test('--dry-run prints the diff and writes nothing', async () => {
    const path = hostsFile('dry')
    const r = await preflight('--fix-hosts', '--dry-run', '--hosts-file', path)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(
      [
        `--- ${path}`,
        `+++ ${path}`,
        '@@ -2,3 +2,7 @@',
        ' 127.0.0.1 docker.io',
        ' # keep me',
        ' 10.1.1.1   intranet   # trailing comment',
        `+${BEGIN_MARKER}`,
        '+127.0.0.1 registry.dev.local',
        '+10.0.0.5 api.dev.local',
        `+${END_MARKER}`,
        '',
      ].join('\n'),
    )
    expect(readFileSync(path, 'utf8')).toBe(ORIGINAL)
  })

  test('--json reports what was added and what shadows a public registry', async () => {
    const r = await preflight('--fix-hosts', '--json', '--hosts-file', hostsFile('json'))
    expect(JSON.parse(r.stdout)).toMatchObject({
      changed: true,
      written: true,
      added: ['127.0.0.1 registry.dev.local', '10.0.0.5 api.dev.local'],
      shadows: [{ line: 2, name: 'docker.io', address: '127.0.0.1' }],
    })
  })

  test('a line that maps a configured name elsewhere is reported, left alone, and fails the run', async () => {
    const text = '127.0.0.1 localhost\n10.9.9.9 api.dev.local\n'
    const path = hostsFile('conflict', text)
    const r = await preflight('--fix-hosts', '--hosts-file', path)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`${path} line 2 maps api.dev.local to 10.9.9.9, the config says 10.0.0.5: change that line`)
    expect(readFileSync(path, 'utf8')).toBe(`${text}${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n${END_MARKER}\n`)
  })

  test('without write permission only the write is elevated; without sudo the command to run is printed', async () => {
    const path = hostsFile('readonly')
    chmodSync(path, 0o444)
    // Root may write any file: without CAP_DAC_OVERRIDE it may not write this one, and still reads and
    // searches everywhere, so the test holds in a clone under any directory (a mktemp -d, /root).
    const bun = join(ROOT, 'node_modules/.bin/bun')
    const runtime =
      process.getuid?.() === 0
        ? [Bun.which('setpriv') ?? 'setpriv', '--inh-caps=-dac_override', '--bounding-set=-dac_override', bun]
        : [bun]
    // And a PATH without sudo, so nothing can elevate the write whatever this machine's sudoers say.
    const noSudo = mkdtempSync(join(tmpdir(), 'devreg-no-sudo-'))
    const r = await $({
      nothrow: true,
      quiet: true,
      input: '',
      cwd: ROOT,
      env: { ...process.env, ...noDocker, NO_COLOR: '1', HOME: dir, PATH: noSudo },
    })`${runtime} scripts/preflight-dns.ts --config ${config} --fix-hosts --hosts-file ${path}`
    expect(r.stderr).toContain('sudo not found on PATH')
    expect(r.exitCode).toBe(1)
    const printed = /`sudo tee (\S+) < (\S+) > \/dev\/null`/.exec(r.stderr)
    expect(printed?.[1]).toBe(path)
    expect(readFileSync(path, 'utf8')).toBe(ORIGINAL)
    // The staged file holds exactly what the write would have put there.
    expect(readFileSync(printed?.[2] as string, 'utf8')).toContain(`${BEGIN_MARKER}\n127.0.0.1 registry.dev.local\n`)
  })
})

describe('preflight-dns usage errors exit 2 and touch nothing', () => {
  test.each([
    [['--dry-run'], '--dry-run goes with --fix-hosts'],
    [['--fix-hosts', 'registry.dev.local'], '--fix-hosts writes every hosts entry of the config and takes no names'],
    [['no-such.example'], 'no-such.example: not in the config; name one of registry.dev.local, api.dev.local, kind-registry'],
    [['--fix-hosts', '--hosts-file', '/nonexistent/hosts'], 'cannot read /nonexistent/hosts (ENOENT)'],
  ])('%p', async (args, message) => {
    const r = await preflight(...args)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(message)
  })
})
