// Whom a cache pulls as: the Docker client's config read as docker reads it,
// credential helpers asked through the runner, the mirror's own choice first.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import {
  type CacheLogin,
  cacheLogins,
  chooseDockerLogin,
  DOCKER_HUB_SERVER,
  type DockerLogin,
  describeLogin,
  dockerConfigPath,
  HELPER_TIMEOUT_MS,
  type HelperAnswer,
  loginServer,
  parseDockerConfig,
  parseHelperAnswer,
} from '../../scripts/lib/registries/login.ts'
import { fakeRunner, on } from '../kit/fake-runner.ts'

const fixture = (name: string) => readFileSync(join(import.meta.dir, 'fixtures/docker-config', name), 'utf8')
const AUTHS = parseDockerConfig(fixture('auths.json'))
const HELPERS = parseDockerConfig(fixture('helpers.json'))
const found = (username: string, secret: string): DockerLogin => ({ kind: 'found', username, secret })

describe('where the Docker config is', () => {
  test.each([
    ['DOCKER_CONFIG first', { DOCKER_CONFIG: '/cfg', HOME: '/home/u' }, '/cfg/config.json'],
    ['else ~/.docker', { HOME: '/home/u' }, '/home/u/.docker/config.json'],
    ['neither set: none to read', {}, null],
  ])('%s', (_, env, path) => expect(dockerConfigPath(env)).toBe(path))
})

describe('the server a login is stored under', () => {
  test.each([
    ['https://registry-1.docker.io', DOCKER_HUB_SERVER],
    ['https://index.docker.io', DOCKER_HUB_SERVER],
    ['https://docker.io', DOCKER_HUB_SERVER],
    ['https://ghcr.io', 'ghcr.io'],
    ['http://hub.devreg.test:5000', 'hub.devreg.test:5000'],
    ['https://registry.example.com:443', 'registry.example.com'],
  ])('%s → %s', (upstream, server) => expect(loginServer(upstream)).toBe(server))
})

describe('choosing a login from config.json, in docker’s order', () => {
  test.each<[string, ReturnType<typeof parseDockerConfig>, string, DockerLogin]>([
    ['Docker Hub under its URL key', AUTHS, DOCKER_HUB_SERVER, found('hubuser', 'dckr_pat_fixture1')],
    ['a bare host key', AUTHS, 'ghcr.io', found('octocat', 'ghp_fixture2')],
    ['an https:// key, a secret with colons', AUTHS, 'quay.io', found('quayuser', 'secret:with:colons')],
    ['username and password fields', AUTHS, 'registry.example.com:5000', found('robot', 'fixture-password-3')],
    ['the port is part of the host', AUTHS, 'registry.example.com', { kind: 'none' }],
    ['an empty entry', AUTHS, 'registry.k8s.io', { kind: 'none' }],
    ['no entry', AUTHS, 'gcr.io', { kind: 'none' }],
    [
      'credHelpers by host',
      HELPERS,
      '123456789012.dkr.ecr.us-east-1.amazonaws.com',
      { kind: 'helper', helper: 'ecr-login', key: 'credHelpers' },
    ],
    ['credHelpers under an https:// key', HELPERS, 'europe-docker.pkg.dev', { kind: 'helper', helper: 'gcloud', key: 'credHelpers' }],
    ['credsStore for every other host', HELPERS, DOCKER_HUB_SERVER, { kind: 'helper', helper: 'desktop', key: 'credsStore' }],
    ['credsStore wins over an auths entry', HELPERS, 'ghcr.io', { kind: 'helper', helper: 'desktop', key: 'credsStore' }],
  ])('%s', (_, config, server, expected) => expect(chooseDockerLogin(config, server)).toEqual(expected))

  test.each([
    ['an identity token', 'myregistry.azurecr.io', 'is an identity token'],
    ['an identity token beside a user name in auth', 'oauth.example.com', 'is an identity token'],
    ['an auth that is not user:secret', 'broken.example.com', 'not base64 of user:secret'],
  ])('%s is unusable, saying why', (_, server, why) => {
    const login = chooseDockerLogin(AUTHS, server)
    expect(login.kind).toBe('unusable')
    expect(login.kind === 'unusable' && login.reason).toContain(why)
  })
})

describe('reading config.json', () => {
  test('an empty object has no logins', () => {
    expect(parseDockerConfig('{}')).toEqual({ auths: {}, credHelpers: {}, credsStore: null })
  })

  test.each([
    ['not JSON', '{"auths": ', 'not valid JSON'],
    ['not an object', '[]', 'not a JSON object'],
    ['auths a list', '{"auths": []}', '"auths" is not an object of objects'],
    ['a helper that is no name', '{"credHelpers": {"ghcr.io": 1}}', '"credHelpers" is not an object of helper names'],
    ['credsStore a number', '{"credsStore": 3}', '"credsStore" is not a helper name'],
  ])('%s is refused', (_, text, message) => expect(() => parseDockerConfig(text)).toThrow(message))

  test('a refusal never quotes the file: it holds logins', () => {
    const text = '{"auths": {"ghcr.io": {"auth": "c2VjcmV0LXZhbHVl"}}} trailing'
    expect(() => parseDockerConfig(text)).toThrow(/^it is not valid JSON$/)
  })
})

describe('what a credential helper answered', () => {
  const ok = (stdout: string) => ({ ok: true, exitCode: 0, stdout, stderr: '' })
  const failed = (stdout: string, stderr = '') => ({ ok: false, exitCode: 1, stdout, stderr })
  test.each([
    ['a login', ok('{"ServerURL":"ghcr.io","Username":"octocat","Secret":"ghp_x"}'), found('octocat', 'ghp_x')],
    ['no login for the server', failed('credentials not found in native keychain\n'), { kind: 'none' }],
  ])('%s', (_, r, expected) => expect(parseHelperAnswer(r, 'ghcr.io')).toEqual(expected as HelperAnswer))

  test.each([
    [
      'a failure, with its message',
      failed('', 'error getting credentials - err: exit status 1\n'),
      'failed (error getting credentials - err: exit status 1): run `docker login` again',
    ],
    ['not JSON', ok('hello'), 'answered with something other than JSON'],
    ['no secret', ok('{"Username":"octocat","Secret":""}'), 'without a Username and Secret'],
    ['an identity token', ok('{"Username":"<token>","Secret":"eyJ"}'), 'is an identity token'],
  ])('%s is unusable', (_, r, why) => {
    const answer = parseHelperAnswer(r, 'ghcr.io')
    expect(answer.kind === 'unusable' && answer.reason).toContain(why)
  })
})

describe('the login of every cache', () => {
  const config = resolveConfig({
    mirrors: [
      { host: 'docker.io' },
      { host: 'ghcr.io', credentials: 'none' },
      { host: 'quay.io', credentials: { usernameEnv: 'QUAY_USER', passwordEnv: 'QUAY_TOKEN' } },
      { host: 'registry.k8s.io' },
    ],
  })
  const [, hub, ghcr, quay, k8s] = config.registries
  const env = { HOME: '/home/u', QUAY_USER: 'qbot', QUAY_TOKEN: 'quay-token' }
  const CONFIG_JSON = '/home/u/.docker/config.json'
  /** A runner whose $HOME holds `text` as the Docker config (none: null), noting each file read. */
  const runner = (text: string | null, replies: Parameters<typeof fakeRunner>[0] = [], e: Record<string, string> = env) => {
    const run = fakeRunner(replies, { env: e, files: text === null ? {} : { [CONFIG_JSON]: text } })
    const read: string[] = []
    const readText = run.files.readText
    run.files.readText = (path) => {
      read.push(path)
      return readText(path)
    }
    return Object.assign(run, { read })
  }
  const state = (logins: Map<string, CacheLogin>) => Object.fromEntries([...logins].map(([name, l]) => [name, describeLogin(l, false)]))
  const problem = (l: CacheLogin | undefined) => (l?.state === 'unavailable' ? l.problem : '')

  test('docker login for the upstream, none means none, the mirror’s own env login wins', async () => {
    const run = runner(fixture('auths.json'))
    const logins = await cacheLogins(run, config.registries)
    expect(run.read).toEqual([CONFIG_JSON])
    expect(state(logins)).toEqual({
      [hub.name]: 'authenticated as hubuser (docker login)',
      [ghcr.name]: 'anonymous',
      [quay.name]: 'authenticated as qbot (env QUAY_TOKEN)',
      [k8s.name]: 'anonymous',
    })
  })

  test('no config.json: anonymous; and it is not read when every mirror names its credentials', async () => {
    expect(new Set(Object.values(state(await cacheLogins(runner(null), config.registries))))).toEqual(
      new Set(['anonymous', 'authenticated as qbot (env QUAY_TOKEN)']),
    )
    const run = runner(fixture('auths.json'))
    await cacheLogins(run, [ghcr, quay])
    expect(run.read).toEqual([])
  })

  test('a helper is asked with the server on stdin, a time limit and nothing on its command line', async () => {
    const run = runner(fixture('helpers.json'), [
      on(['docker-credential-desktop', 'get'], '{"Username":"hubuser","Secret":"from-the-store"}'),
    ])
    const logins = await cacheLogins(run, [hub])
    expect(describeLogin(logins.get(hub.name) as CacheLogin, true)).toBe('authenticated as hubuser (docker login)')
    expect(run.calls.map((c) => [c.kind, c.argv, c.opts?.input, c.opts?.timeout])).toEqual([
      ['probe', ['docker-credential-desktop', 'get'], DOCKER_HUB_SERVER, HELPER_TIMEOUT_MS],
    ])
  })

  test.each([
    [
      'times out',
      { exitCode: null, timedOut: true },
      `did not answer within ${HELPER_TIMEOUT_MS / 1000} s`,
      'docker-credential-desktop list',
    ],
    ['is not installed', { exitCode: 127, stderr: 'bash: docker-credential-desktop: command not found' }, 'is not on PATH', 'install it'],
    ['fails', { exitCode: 1, stderr: 'pass not initialized' }, 'failed (pass not initialized)', 'credentials: none'],
  ])('a helper that %s leaves the login unavailable, naming the helper and the fix', async (_, result, why, fix) => {
    const run = runner(fixture('helpers.json'), [on(['docker-credential-desktop', 'get'], result)])
    const login = (await cacheLogins(run, [hub])).get(hub.name)
    expect(login?.state).toBe('unavailable')
    expect(problem(login)).toContain('docker-credential-desktop (credsStore in /home/u/.docker/config.json)')
    expect(problem(login)).toContain(why)
    expect(problem(login)).toContain(fix)
  })

  test('a config.json that cannot be read or parsed leaves the login unavailable, naming the file', async () => {
    const unreadable = runner(null)
    unreadable.files.readText = async () => {
      throw Object.assign(new Error('denied'), { code: 'EACCES' })
    }
    for (const run of [unreadable, runner('{"auths": ')]) {
      const login = (await cacheLogins(run, [hub])).get(hub.name)
      expect(problem(login)).toStartWith('/home/u/.docker/config.json cannot be read (')
      expect(problem(login)).toContain('credentials: none')
    }
  })

  test('env credentials not set here: unavailable, naming the variables', async () => {
    const login = (await cacheLogins(runner(null, [], { QUAY_USER: 'qbot' }), [quay])).get(quay.name)
    expect(problem(login)).toBe(`QUAY_TOKEN is not set: export it (credentials for ${quay.name}) or remove ${quay.path}.credentials`)
    expect(describeLogin(login as CacheLogin, true)).toBe('not known here (env QUAY_TOKEN is not set)')
  })

  test('no secret is in what status shows or in any problem', async () => {
    const run = runner(fixture('helpers.json'), [on(['docker-credential-desktop', 'get'], { exitCode: 1, stderr: 'locked' })])
    const shown = [
      ...(await cacheLogins(runner(fixture('auths.json')), config.registries)).values(),
      ...(await cacheLogins(run, config.registries)).values(),
    ].map((l) => describeLogin(l, true) + problem(l))
    for (const secret of ['dckr_pat_fixture1', 'ghp_fixture2', 'quay-token']) expect(shown.join('\n')).not.toContain(secret)
  })
})

describe('what status says a cache pulls as', () => {
  const env = { kind: 'env', usernameEnv: 'U', passwordEnv: 'P' } as const
  const docker = { kind: 'docker' } as const
  test.each<[CacheLogin, boolean, string]>([
    [{ state: 'anonymous' }, false, 'anonymous'],
    [{ state: 'login', login: { username: 'me', secret: 'x', source: docker } }, true, 'authenticated as me (docker login)'],
    [{ state: 'login', login: { username: 'me', secret: 'x', source: env } }, true, 'authenticated as me (env P)'],
    [{ state: 'unavailable', source: docker, problem: '' }, false, 'anonymous (docker login unreadable)'],
    [{ state: 'unavailable', source: docker, problem: '' }, true, 'as created (docker login unreadable)'],
    [{ state: 'unavailable', source: env, problem: '' }, true, 'not known here (env P is not set)'],
  ])('%o → %s', (login, withLogin, text) => expect(describeLogin(login, withLogin)).toBe(text))
})
