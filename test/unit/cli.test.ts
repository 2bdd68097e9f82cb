// Usage errors, failed commands and how runMain() reports what a script throws.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { openScript, parseArgs, report, runMain, runnerFor } from '../../scripts/lib/core/cli.ts'
import { createRunner, notFound, ProgramNotFound, show, toolMessage } from '../../scripts/lib/core/exec.ts'
import { CommandError, EXIT, UserError } from '../../scripts/lib/core/log.ts'
import { RegistryError } from '../../scripts/lib/registries/distribution.ts'

const USAGE = `Usage: demo [options]

Options:
  --config PATH   read this config
  --name N        a name
  --dry-run       print the commands
  --verbose, -v   echo every command
  --help, -h      show this help`

const SPEC = {
  string: ['config', 'name'],
  boolean: ['dry-run', 'verbose', 'help'],
  alias: { v: 'verbose', h: 'help' },
}

/** What parseArgs throws for argv, or null. */
function usageError(argv: string[], spec = SPEC): UserError | null {
  try {
    parseArgs(argv, spec, USAGE)
    return null
  } catch (err) {
    if (err instanceof UserError) return err
    throw err
  }
}

const BOOM = ['sh', '-c', 'echo boom >&2; exit 3']
const plain = (s: string) => s.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')

describe('a string flag without its value', () => {
  test.each([
    ['at the end of argv', ['--config']],
    ['at the end, after other flags', ['--dry-run', '--config']],
    ['as --config=', ['--config=']],
    ['as an explicit empty argument', ['--config', '']],
    ['followed by another flag', ['--config', '--dry-run']],
    ['followed by a short flag', ['--config', '-v']],
    ['followed by --help', ['--config', '--help']],
    ['followed by --', ['--config', '--']],
  ])('%s is a usage error naming the flag', (_how, argv) => {
    const err = usageError(argv)
    expect(err).not.toBeNull()
    expect(err?.exitCode).toBe(EXIT.usage)
    expect(err?.message).toStartWith('--config needs a value (--config PATH)\n\n')
    expect(err?.message).toContain(USAGE)
  })

  test('names the flag that lacks it, with its placeholder from the usage', () => {
    expect(usageError(['--config', 'a.yaml', '--name'])?.message).toStartWith('--name needs a value (--name N)')
  })

  test('without a placeholder in the usage, just the flag', () => {
    expect(usageError(['--other='], { ...SPEC, string: ['other'] })?.message).toStartWith('--other needs a value\n\n')
  })

  test('a value, even one that starts with a dash after =, is taken', () => {
    expect(parseArgs(['--config', 'a.yaml', '--dry-run'], SPEC, USAGE).config).toBe('a.yaml')
    expect(parseArgs(['--config=--weird'], SPEC, USAGE).config).toBe('--weird')
    expect(parseArgs(['--config', '-'], SPEC, USAGE).config).toBe('-')
  })

  test('a string flag not given at all is fine', () => {
    const args = parseArgs(['--dry-run'], SPEC, USAGE)
    expect(args.config).toBeUndefined()
    expect(args['dry-run']).toBe(true)
  })

  test('openScript refuses before answering --help', () => {
    expect(() => openScript(['--config', '--dry-run', '--verbose'], SPEC, USAGE)).toThrow('--config needs a value')
    expect(() => openScript(['--config', '--help'], SPEC, USAGE)).toThrow('--config needs a value')
  })

  test('the runner a script passes down carries its --dry-run and --verbose', () => {
    const args = openScript(['--dry-run', '-v'], SPEC, USAGE)
    expect(args && runnerFor(args)).toMatchObject({ dryRun: true, verbose: true })
    const plainArgs = openScript([], SPEC, USAGE)
    expect(plainArgs && runnerFor(plainArgs)).toMatchObject({ dryRun: false, verbose: false })
  })
})

const { change, pipe } = createRunner()

describe('a probe', () => {
  const sessionOf = (stat: string) => stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]

  test('with a time limit is killed when it runs out, with everything it started', async () => {
    const started = Date.now()
    const r = await createRunner().probe(['sh', '-c', 'sleep 30 & sleep 30'], { timeout: 300 })
    expect(r).toMatchObject({ ok: false, timedOut: true })
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  test('that exits without reading its input fails by its exit code, not by a broken pipe', async () => {
    const run = createRunner()
    for (const timeout of [5000, undefined]) {
      const r = await run.probe(['sh', '-c', 'exit 3'], { input: 'x'.repeat(1 << 20), timeout })
      expect(r).toMatchObject({ ok: false, exitCode: 3 })
    }
  })

  test('with a time limit runs in a session of its own, so no terminal of ours, and gets its stdin', async () => {
    const r = await createRunner().probe(['sh', '-c', 'cat; echo; cat /proc/$$/stat'], { input: 'ghcr.io', timeout: 5000 })
    const [input, stat] = r.stdout.split('\n')
    expect(input).toBe('ghcr.io')
    expect(sessionOf(stat)).not.toBe(sessionOf(readFileSync('/proc/self/stat', 'utf8')))
    expect(r.timedOut).toBeUndefined()
  })
})

describe('a failed external command', () => {
  async function failure(promise: Promise<unknown>): Promise<CommandError> {
    try {
      await promise
    } catch (err) {
      expect(err).toBeInstanceOf(CommandError)
      return err as CommandError
    }
    throw new Error('expected the command to fail')
  }

  test('change() throws a CommandError with the command and its own message', async () => {
    const err = await failure(change(BOOM))
    expect(err.command).toBe(show(BOOM))
    expect(err.command).toStartWith('sh -c ')
    expect(err.detail).toBe('boom')
    expect(err.fix).toBeUndefined()
    expect(err.message).toBe(`${show(BOOM)} failed: boom`)
  })

  test('the message is the last few non-empty lines, on one line, without help hints', async () => {
    const script = "printf 'one\\n\\ntwo\\nthree\\n\\nfour\\n' >&2; echo \"See 'docker run --help'.\" >&2; exit 1"
    const err = await failure(change(['sh', '-c', script]))
    expect(err.detail).toBe('two; three; four')
  })

  test('stdout when stderr is empty, else the exit code', async () => {
    expect((await failure(change(['sh', '-c', 'echo only-out; exit 4']))).detail).toBe('only-out')
    expect((await failure(change(['sh', '-c', 'exit 5']))).detail).toBe('exit code 5')
  })

  test('the fix given by the caller', async () => {
    expect((await failure(change(['sh', '-c', 'exit 1'], { fix: 'try again' }))).fix).toBe('try again')
  })

  test('secrets are in neither the command nor the message', async () => {
    // It reads its stdin, as every command devreg gives input does (an early exit would race the write).
    const argv = ['sh', '-c', 'cat >/dev/null; echo "login as $U with $P refused" >&2; exit 1']
    const err = await failure(
      change(argv, {
        env: { U: 'me' },
        secretEnv: { P: 's3cret-token' },
        input: 'file content\n',
      }),
    )
    expect(err.command).toBe(show(argv, { env: { U: 'me' } }))
    expect(err.detail).toBe('login as me with *** refused')
    expect(err.message).not.toContain('s3cret')
    expect(err.message).not.toContain('file content')
  })

  test('pipe() names the side that failed', async () => {
    const from = ['sh', '-c', 'echo left-broke >&2; exit 2']
    const left = await failure(pipe(from, ['cat']))
    expect(left.message).toBe(`${show(from)} failed: left-broke`)
    const to = ['sh', '-c', 'cat >/dev/null; echo right-broke >&2; exit 6']
    const right = await failure(pipe(['echo', 'hi'], to))
    expect(right.message).toBe(`${show(to)} failed: right-broke`)
  })

  test('toolMessage strips colours and shortens very long lines', () => {
    const esc = String.fromCharCode(27)
    expect(toolMessage({ exitCode: 1, stdout: '', stderr: `${esc}[31mERROR:${esc}[0m no\n` })).toBe('ERROR: no')
    expect(toolMessage({ exitCode: 1, stdout: '', stderr: 'x'.repeat(1000) })).toHaveLength(300)
    expect(toolMessage({ exitCode: null, stdout: '', stderr: '' })).toBe('exit code unknown (killed by a signal)')
  })
})

describe('a program that is not installed', () => {
  const { probe } = createRunner()

  test('a probe says so, with how to install it, and does not throw', async () => {
    const r = await probe(['devreg-no-such-tool', 'x'])
    expect(r).toEqual({
      ok: false,
      exitCode: null,
      missing: true,
      stdout: '',
      stderr: 'devreg-no-such-tool not found on PATH: install devreg-no-such-tool, or put the directory that holds it on PATH',
    })
  })

  test('a change, a pipe and a passthrough throw ProgramNotFound, exit 1, naming the program and how to install it', async () => {
    for (const attempt of [
      change(['devreg-no-such-tool', 'x']),
      pipe(['devreg-no-such-tool'], ['cat']),
      pipe(['echo', 'hi'], ['devreg-no-such-tool']),
      createRunner().passthrough(['devreg-no-such-tool']),
    ]) {
      const err = await attempt.then(
        () => null,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(ProgramNotFound)
      expect((err as ProgramNotFound).exitCode).toBe(EXIT.failed)
    }
    // docker here is on PATH, so the message is asked for directly: it is the one every script prints.
    expect(notFound('docker')).toBe(
      'docker not found on PATH: install Docker (https://docs.docker.com/engine/install/) and start it, then run this again',
    )
  })

  test('arguments reach the program as they are: no shell reads them', async () => {
    const r = await probe(['printf', '%s|', '$(echo hi)', '*', 'a;b', "it's"])
    expect(r.stdout).toBe("$(echo hi)|*|a;b|it's|")
  })
})

describe('runMain() and report()', () => {
  let stderr: string
  let saved: { write: typeof process.stderr.write; error: typeof console.error; exitCode: typeof process.exitCode; argv: string[] }

  beforeEach(() => {
    stderr = ''
    saved = { write: process.stderr.write, error: console.error, exitCode: process.exitCode, argv: process.argv }
    process.stderr.write = ((chunk: string | Uint8Array) => {
      stderr += String(chunk)
      return true
    }) as typeof process.stderr.write
    console.error = (...args: unknown[]) => {
      stderr += `${args.map((a) => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ')}\n`
    }
  })
  afterEach(() => {
    process.stderr.write = saved.write
    console.error = saved.error
    // Bun keeps a process.exitCode once set; undefined would not reset it.
    process.exitCode = saved.exitCode ?? 0
    process.argv = saved.argv
  })

  /** Runs main as a script would and returns [exit code, stderr]. */
  async function runScript(main: (argv: string[]) => Promise<number>): Promise<[number | string | undefined, string]> {
    await runMain(main)
    const code = process.exitCode
    // Bun keeps a process.exitCode once set; undefined would not reset it.
    process.exitCode = saved.exitCode ?? 0
    return [code, plain(stderr)]
  }

  const failing = () => change(BOOM)

  test('a failed command is one line and exit 1', async () => {
    const [code, out] = await runScript(async () => {
      await failing()
      return 0
    })
    expect(code).toBe(EXIT.failed)
    expect(out).toBe(`error: ${show(BOOM)} failed: boom\n`)
  })

  test('with a fix, the fix follows on the same line', async () => {
    const [code, out] = await runScript(async () => {
      throw new CommandError('kind create cluster --name dev', 'node(s) already exist', 'delete it with `dev-down`')
    })
    expect(code).toBe(EXIT.failed)
    expect(out).toBe('error: kind create cluster --name dev failed: node(s) already exist — delete it with `dev-down`\n')
  })

  test('context added with { cause } is kept in front', async () => {
    const [code, out] = await runScript(async () => {
      try {
        await failing()
      } catch (cause) {
        throw new Error('creating kind cluster', { cause })
      }
      return 0
    })
    expect(code).toBe(EXIT.failed)
    expect(out).toBe(`error: creating kind cluster: ${show(BOOM)} failed: boom\n`)
  })

  test('with --verbose, the stack follows the line', async () => {
    process.argv = [...saved.argv.slice(0, 2), '--verbose']
    const [code, out] = await runScript(async () => {
      await failing()
      return 0
    })
    expect(code).toBe(EXIT.failed)
    const lines = out.split('\n')
    expect(lines).toContain(`error: ${show(BOOM)} failed: boom`)
    expect(out).toContain('CommandError')
    expect(out).toMatch(/\n\s+at /)
  })

  test('a UserError is its message and its exit code', async () => {
    const [code, out] = await runScript(async () => {
      throw new UserError('bad config: fix it', EXIT.usage)
    })
    expect(code).toBe(EXIT.usage)
    expect(out).toBe('error: bad config: fix it\n')
  })

  test('a known failure of the file system is one line naming what failed and what to do, without a stack', async () => {
    const [code, out] = await runScript(async () => {
      readFileSync('/nonexistent/devreg/archive.tar')
      return 0
    })
    expect(code).toBe(EXIT.failed)
    expect(out).toBe('error: open /nonexistent/devreg/archive.tar: no such file or directory — check the path\n')
  })

  test('a full disk while writing, under context: one line; with --verbose, the stack follows', async () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write', path: '/x/a.tar' })
    const thrown = () => {
      throw new Error('writing the archive', { cause: full })
    }
    const [code, out] = await runScript(async () => thrown())
    expect(code).toBe(EXIT.failed)
    expect(out).toBe(
      'error: writing the archive: write /x/a.tar: no space left on the device — free some disk space (`just registry-gc --stats` shows what the registries hold)\n',
    )
    process.argv = [...saved.argv.slice(0, 2), '--verbose']
    stderr = ''
    const [, verbose] = await runScript(async () => thrown())
    expect(verbose).toMatch(/\n\s+at /)
  })

  test("a registry's HTTP error and a refused connection are one line each, with what to do", () => {
    expect(report(new RegistryError('DELETE http://127.0.0.1:5001/v2/app/manifests/sha256:ab: HTTP 405', 405))).toBe(EXIT.failed)
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5001'), {
      code: 'ECONNREFUSED',
      syscall: 'connect',
      address: '127.0.0.1',
      port: 5001,
    })
    expect(report(refused)).toBe(EXIT.failed)
    expect(plain(stderr)).toBe(
      [
        'error: DELETE http://127.0.0.1:5001/v2/app/manifests/sha256:ab: HTTP 405 — the registry does not allow it (storage delete disabled?)',
        'error: connect 127.0.0.1:5001: connection refused — check that it runs (`just dev-registry status` for the registries)',
        '',
      ].join('\n'),
    )
  })

  test("anything else is devreg's bug and keeps its stack", async () => {
    const [code, out] = await runScript(async () => {
      throw new TypeError('undefined is not a function')
    })
    expect(code).toBe(EXIT.failed)
    expect(out).toContain('TypeError: undefined is not a function')
    expect(out).toMatch(/\n\s+at /)
  })

  test('a bug wrapped with context still keeps its stack', () => {
    const code = report(new Error('creating kind cluster', { cause: new RangeError('oops') }))
    expect(code).toBe(EXIT.failed)
    expect(stderr).toMatch(/\n\s+at /)
  })

  test("main's return value is the exit code", async () => {
    const [code, out] = await runScript(async () => EXIT.ok)
    expect(code).toBe(EXIT.ok)
    expect(out).toBe('')
  })
})
