// The settings hash of a cache with a login: a keyed digest of the values,
// never the values, and no change for registries without one.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Registry, resolveConfig } from '../../scripts/lib/core/config.ts'
import type { Container } from '../../scripts/lib/core/docker.ts'
import { LABEL } from '../../scripts/lib/core/labels.ts'
import { ANONYMOUS, cacheLogins } from '../../scripts/lib/registries/login.ts'
import {
  applyRegistries,
  credentialDigest,
  hashKey,
  hashKeyPath,
  planRegistries,
  registryContainer,
  registrySpec,
  type Step,
} from '../../scripts/lib/registries/registry-containers.ts'
import { memoryFiles } from '../kit/fake-files.ts'
import { fakeRunner, on, v2Up } from '../kit/fake-runner.ts'

const dir = mkdtempSync(join(tmpdir(), 'devreg-credentials-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const config = resolveConfig({
  mirrors: [
    { host: 'docker.io', upstream: 'http://up:5000', credentials: { usernameEnv: 'HUB_USER', passwordEnv: 'HUB_TOKEN' } },
    { host: 'ghcr.io', upstream: 'http://up2:5000' },
  ],
})
const [local, hub, ghcr] = config.registries
const env = (token: string | undefined, home = dir) => ({ XDG_CONFIG_HOME: home, HUB_USER: 'robot', HUB_TOKEN: token })
const running = (labels: Record<string, string>) => ({ name: hub.name, labels }) as unknown as Container
/** registrySpec with the login `up` would find in this environment; the key is on disk, where its mode can be read. */
async function specOf(r: Registry, e: ReturnType<typeof env>, current: Container | null, dryRun = false) {
  const runner = fakeRunner([], { env: e, disk: true, dryRun })
  const login = (await cacheLogins(runner, [r])).get(r.name) ?? ANONYMOUS
  return registrySpec(runner, r, login, current)
}

describe('a cache with credentials', () => {
  test('the same values give the same hash', async () => {
    expect((await specOf(hub, env('s3cret-1'), null)).hash).toBe((await specOf(hub, env('s3cret-1'), null)).hash)
  })

  test('a rotated token gives another hash', async () => {
    expect((await specOf(hub, env('s3cret-2'), null)).hash).not.toBe((await specOf(hub, env('s3cret-1'), null)).hash)
  })

  test('the values appear nowhere in the spec: not in args, labels, secretEnv or hash', async () => {
    const spec = await specOf(hub, env('s3cret-1'), null)
    const text = JSON.stringify(spec)
    expect(text).not.toContain('s3cret-1')
    expect(text).not.toContain('robot')
    expect(spec.secretEnv).toEqual(['REGISTRY_PROXY_USERNAME', 'REGISTRY_PROXY_PASSWORD'])
  })

  test('the digest is keyed: another machine key gives another hash, and the label is no plain SHA-256', async () => {
    const other = mkdtempSync(join(dir, 'other-'))
    const a = await specOf(hub, env('s3cret-1'), null)
    const b = await specOf(hub, env('s3cret-1', other), null)
    expect(b.hash).not.toBe(a.hash)
    const label = a.args.find((x) => x.startsWith(`${LABEL.credentials}=`))
    expect(label).toBe(`${LABEL.credentials}=${credentialDigest(Buffer.from(statKey(dir).key), ['robot', 's3cret-1'])}`)
    const plain = new Bun.CryptoHasher('sha256').update(JSON.stringify(['robot', 's3cret-1'])).digest('hex')
    expect(label).not.toContain(plain)
  })

  test('the key is created once, 32 bytes, readable by the user alone', async () => {
    const home = mkdtempSync(join(dir, 'fresh-'))
    await specOf(hub, env('x', home), null)
    const { key, mode } = statKey(home)
    expect(key.length).toBe(32)
    expect(mode).toBe(0o600)
    await specOf(hub, env('y', home), null)
    expect(statKey(home).key.equals(key)).toBe(true)
  })

  test('under --dry-run no key is written', async () => {
    const home = mkdtempSync(join(dir, 'dry-'))
    await specOf(hub, env('x', home), null, true)
    expect(() => statSync(hashKeyPath({ XDG_CONFIG_HOME: home }))).toThrow()
  })

  test('without the values here, the digest the container was made with stands in: no recreate', async () => {
    const made = await specOf(hub, env('s3cret-1'), null)
    const digest = made.args.find((x) => x.startsWith(`${LABEL.credentials}=`))?.split('=')[1] as string
    const current = running({ [LABEL.hash]: made.hash, [LABEL.credentials]: digest })
    expect((await specOf(hub, env(undefined), current)).hash).toBe(made.hash)
  })
})

test('registries without credentials hash as before, with no key and no digest label', async () => {
  const home = mkdtempSync(join(dir, 'none-'))
  for (const r of [local, ghcr]) {
    const spec = await specOf(r, env('s3cret-1', home), null)
    expect(spec).toEqual(registryContainer(r))
    expect(spec.args.join(' ')).not.toContain(LABEL.credentials)
  }
  expect(() => statSync(hashKeyPath({ XDG_CONFIG_HOME: home }))).toThrow()
})

function statKey(home: string): { key: Buffer; mode: number } {
  const path = hashKeyPath({ XDG_CONFIG_HOME: home })
  return { key: readFileSync(path), mode: statSync(path).mode & 0o777 }
}

describe('caches pulling as your docker login', () => {
  const cfg = resolveConfig({
    mirrors: [
      { host: 'docker.io', upstream: 'http://hub.test:5000' },
      { host: 'ghcr.io', upstream: 'http://ghcr.test:5000' },
    ],
  })
  const [, dockerHub, ghcrIo] = cfg.registries
  const loginEnv = { HOME: '/home/u', XDG_CONFIG_HOME: '/home/u/.config' }
  /** $HOME, with the machine's key made once for all the plans below. */
  const files = memoryFiles()
  const auth = (secret: string) => ({ auth: Buffer.from(`me:${secret}`).toString('base64') })
  const logins = (hub: string, ghcr: string) => JSON.stringify({ auths: { 'hub.test:5000': auth(hub), 'ghcr.test:5000': auth(ghcr) } })
  const plan = (configJson: string, containers: Container[], replies: Parameters<typeof fakeRunner>[0] = []) => {
    files.contents.set('/home/u/.docker/config.json', Buffer.from(configJson))
    return planRegistries(fakeRunner(replies, { dryRun: true, env: loginEnv, files }), cfg, containers)
  }
  /** The containers a plan leaves running, labelled as docker run would. */
  const made = (steps: Step[]) =>
    steps.map((s) => {
      const labels = s.spec.args.filter((_, i) => s.spec.args[i - 1] === '--label').map((l) => l.split('='))
      return {
        name: s.registry.name,
        state: 'running',
        labels: Object.fromEntries(labels),
        ports: '',
        networks: [],
      } as unknown as Container
    })
  const actions = (steps: Step[]) => steps.map((s) => [s.registry.name, s.action])

  beforeAll(() => hashKey(fakeRunner([], { env: loginEnv, files })))

  test('a changed login recreates only its cache; the same login recreates nothing', async () => {
    const first = await plan(logins('hub-1', 'ghcr-1'), [])
    expect(first.map((s) => s.spec.secretEnv)).toEqual([
      [],
      ['REGISTRY_PROXY_USERNAME', 'REGISTRY_PROXY_PASSWORD'],
      ['REGISTRY_PROXY_USERNAME', 'REGISTRY_PROXY_PASSWORD'],
    ])
    const running = made(first)
    expect(actions(await plan(logins('hub-1', 'ghcr-1'), running)).map(([, a]) => a)).toEqual(['none', 'none', 'none'])
    expect(actions(await plan(logins('hub-1', 'ghcr-2'), running))).toEqual([
      [local.name, 'none'],
      [dockerHub.name, 'none'],
      [ghcrIo.name, 'recreate'],
    ])
    expect(JSON.stringify(first.map((s) => s.spec))).not.toContain('hub-1')
  })

  test('the same values from env variables instead recreate nothing: the digest is of the values', async () => {
    const running = made(await plan(logins('hub-1', 'ghcr-1'), []))
    const own = resolveConfig({
      mirrors: [
        { host: 'docker.io', upstream: 'http://hub.test:5000', credentials: { usernameEnv: 'U', passwordEnv: 'P' } },
        { host: 'ghcr.io', upstream: 'http://ghcr.test:5000', credentials: 'none' },
      ],
    })
    files.contents.set('/home/u/.docker/config.json', Buffer.from('{}'))
    const steps = await planRegistries(fakeRunner([], { dryRun: true, env: { ...loginEnv, U: 'me', P: 'hub-1' }, files }), own, running)
    expect(actions(steps).map(([, a]) => a)).toEqual(['none', 'none', 'recreate'])
  })

  test('a helper that fails: a cache made with a login keeps it, a new one pulls anonymously, one warning names the helper', async () => {
    const [withLogin] = made(await plan(logins('hub-1', 'ghcr-1'), [])).slice(1)
    const broken = [on(['docker-credential-broken', 'get'], { exitCode: 1, stderr: 'keychain locked' })]
    const [steps, warnings] = await stderrOf(() => plan('{"credsStore": "broken"}', [withLogin], broken))
    expect(actions(steps).slice(1)).toEqual([
      [dockerHub.name, 'none'],
      [ghcrIo.name, 'create'],
    ])
    expect(steps[2].spec.secretEnv).toEqual([])
    expect(warnings.trim().split('\n')).toEqual([
      `warning: your docker login cannot be used: docker-credential-broken (credsStore in /home/u/.docker/config.json) failed (keychain locked): run \`docker login\` again, or set credentials: none on the mirror; pulling anonymously: ${ghcrIo.name}; unchanged, with the login it was created with: ${dockerHub.name}`,
    ])
  })

  test('docker run gets the values in its environment only, never on its command line', async () => {
    const steps = await plan(logins('hub-1', 'ghcr-1'), [])
    const run = fakeRunner(cfg.registries.map((r) => v2Up(r.address.url)))
    await stderrOf(() => applyRegistries(run, steps, null))
    const hubRun = run.calls.find((c) => c.argv.includes(dockerHub.name) && c.argv[1] === 'run')
    expect(hubRun?.opts?.secretEnv).toEqual({ REGISTRY_PROXY_USERNAME: 'me', REGISTRY_PROXY_PASSWORD: 'hub-1' })
    expect(run.changes.join('\n')).not.toContain('hub-1')
  })
})

/** What fn wrote to stderr (log.warn and friends), with its result. */
async function stderrOf<T>(fn: () => Promise<T>): Promise<[T, string]> {
  const write = process.stderr.write
  let text = ''
  process.stderr.write = ((chunk: string | Uint8Array) => {
    text += String(chunk)
    return true
  }) as typeof process.stderr.write
  try {
    return [await fn(), text]
  } finally {
    process.stderr.write = write
  }
}
