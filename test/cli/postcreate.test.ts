// The devcontainer's setup script with stand-ins for npm, docker and the
// runtime: which steps run when, silence on success, one line on failure.
import { beforeEach, describe, expect, test } from 'bun:test'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { ROOT } from '../kit/scripts.ts'

let project: string
const calls = () => (existsSync(join(project, 'calls')) ? readFileSync(join(project, 'calls'), 'utf8').trim().split('\n') : [])

/** A stand-in that records its arguments and answers as the environment says. */
const standIn = (name: string, body = '') => `#!/bin/sh\necho "${name} $*" >> "$PROJECT/calls"\n${body}\n`

beforeEach(() => {
  project = mkdtempSync(join(tmpdir(), 'devreg-postcreate-'))
  mkdirSync(join(project, '.devcontainer'))
  mkdirSync(join(project, 'bin'))
  copyFileSync(join(ROOT, '.devcontainer/postcreate.sh'), join(project, '.devcontainer/postcreate.sh'))
  writeFileSync(join(project, 'package.json'), '{}\n')
  writeFileSync(join(project, 'package-lock.json'), '{}\n')
  const old = new Date(Date.now() - 60_000)
  for (const f of ['package.json', 'package-lock.json']) utimesSync(join(project, f), old, old)
  writeFileSync(join(project, 'bin/npm'), standIn('npm', 'mkdir -p node_modules && touch node_modules/.package-lock.json'), {
    mode: 0o755,
  })
  writeFileSync(join(project, 'bin/docker'), standIn('docker'), { mode: 0o755 })
  // The runtime: scripts/NAME.ts fails when FAIL names it, printing FAIL_OUTPUT.
  const runtime =
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
    'case "$1" in *"${FAIL:-none}"*) printf "%b" "$FAIL_OUTPUT"; exit 1;; esac\necho "progress on stdout"; echo "progress on stderr" >&2'
  writeFileSync(join(project, 'bin/runtime'), standIn('runtime', runtime), { mode: 0o755 })
})

async function postcreate(env: Record<string, string> = {}) {
  const r = await $({
    nothrow: true,
    quiet: true,
    env: {
      ...process.env,
      PATH: `${join(project, 'bin')}:${process.env.PATH}`,
      PROJECT: project,
      TMPDIR: project,
      DEVREG_RUNTIME: join(project, 'bin/runtime'),
      ...env,
    },
  })`sh ${join(project, '.devcontainer/postcreate.sh')}`
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
}

describe('postcreate', () => {
  test('installs, ensures the registries and runs preflight, saying nothing; the output goes to the log', async () => {
    expect(await postcreate()).toEqual({ code: 0, stdout: '', stderr: '' })
    expect(calls()).toEqual([
      'docker info',
      'npm ci --no-audit --no-fund',
      'runtime scripts/dev-registry.ts up',
      'runtime scripts/preflight-dns.ts',
    ])
    expect(readFileSync(join(project, 'devreg-postcreate.log'), 'utf8')).toContain('progress on stderr')
  })

  test('a second run installs nothing again; a changed package.json installs again', async () => {
    await postcreate()
    writeFileSync(join(project, 'calls'), '')
    expect((await postcreate()).code).toBe(0)
    expect(calls()).not.toContain('npm ci --no-audit --no-fund')
    writeFileSync(join(project, 'package.json'), '{"dependencies": {}}\n')
    const future = new Date(Date.now() + 60_000)
    utimesSync(join(project, 'package.json'), future, future)
    expect((await postcreate()).code).toBe(0)
    expect(calls()).toContain('npm ci --no-audit --no-fund')
  })

  test("a failing step stops the run with one line: the step and the script's error", async () => {
    const r = await postcreate({
      FAIL: 'preflight',
      FAIL_OUTPUT: 'CHECK  NAME\\n\\nerror: 2 of 9 checks failed (resolve a); the report gives the fix for each\\n',
    })
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      `postcreate: preflight failed: 2 of 9 checks failed (resolve a); the report gives the fix for each (full output: ${project}/devreg-postcreate.log)\n`,
    )
    expect(r.stdout).toBe('')
  })

  test('an error over several lines is joined into the one line; a step that fails before running anything stops the rest', async () => {
    const r = await postcreate({
      FAIL: 'dev-registry',
      FAIL_OUTPUT: 'error: invalid config:\\n  x.yaml: registry.port: bad\\n  x.yaml: cluster: bad\\n',
    })
    expect(r.stderr).toStartWith(
      'postcreate: dev-registry failed: invalid config: x.yaml: registry.port: bad x.yaml: cluster: bad (full output:',
    )
    expect(calls()).not.toContain('runtime scripts/preflight-dns.ts')
  })

  test('a failing npm ci is reported by its last line', async () => {
    writeFileSync(join(project, 'bin/npm'), standIn('npm', 'echo "npm error code ENOTFOUND" >&2; exit 1'), { mode: 0o755 })
    const r = await postcreate()
    expect(r.code).toBe(1)
    expect(r.stderr).toStartWith('postcreate: npm ci failed: npm error code ENOTFOUND (full output:')
  })
})

describe('devcontainer.json', () => {
  const doc = JSON.parse(readFileSync(join(ROOT, '.devcontainer/devcontainer.json'), 'utf8'))

  test('its postCreateCommand is the just recipe that runs postcreate.sh', async () => {
    expect(doc.postCreateCommand).toBe('just postcreate')
    const recipe = await $({ quiet: true, cwd: ROOT })`${join(ROOT, 'node_modules/.bin/just')} --show postcreate`
    expect(recipe.stdout).toContain('sh .devcontainer/postcreate.sh')
  })
})
