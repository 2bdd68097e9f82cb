// Caches that pull as the user's `docker login`, against a hub that requires
// a login the way Docker Hub does (test/kit/fake-hub.ts), on each registry
// image: the login is read from config.json or a credential helper, reaches
// only the cache container, and shows nowhere else.
import { expect, test } from 'bun:test'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { type FakeHub, fakeHub } from '../kit/fake-hub.ts'
import { freePort, integration, type ScriptResult } from '../kit/fixture.ts'
import { REGISTRY_LAYOUTS } from '../kit/images.ts'
import { containerId, eventually, pull } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

for (const { layout, image } of REGISTRY_LAYOUTS)
  integration(`caches pulling as your docker login, on ${layout}`, () => loginSuite(image, layout === REGISTRY_LAYOUTS[0].layout))

function loginSuite(image: string, first: boolean) {
  let hub: FakeHub
  // Each case writes a config with a cache of its own in front of the hub.
  const w = useWorld({ mirrors: [], registryImage: image }, async (w) => {
    hub = await fakeHub(w.fx, w.network, image, { 'library/alpha': 'alpha', 'library/beta': 'beta' })
  })
  const { fx, network, registry } = w

  /**
   * One case: a user's own files (a Docker config, helpers on PATH) apart
   * from every place devreg may write (HOME, XDG dirs, TMPDIR), a config
   * with one cache of the hub, and every run's output kept for the leak check.
   */
  async function setup(base: string, mirror: Record<string, unknown> = {}) {
    const input = join(fx.dir, `${base}-in`)
    const out = join(fx.dir, `${base}-out`)
    for (const d of [join(input, 'docker'), join(input, 'bin'), join(out, 'config'), join(out, 'run'), join(out, 'tmp')])
      mkdirSync(d, { recursive: true })
    const cache = { name: fx.name(`${base}-cache`), port: await freePort() }
    const config = w.configFile(
      { mirrors: [{ host: 'docker.io', upstream: hub.upstream, name: cache.name, port: cache.port, image, ...mirror }] },
      `${base}.yaml`,
    )
    const env: Record<string, string> = {
      DOCKER_CONFIG: join(input, 'docker'),
      HOME: out,
      XDG_CONFIG_HOME: join(out, 'config'),
      XDG_RUNTIME_DIR: join(out, 'run'),
      TMPDIR: join(out, 'tmp'),
      // bun's own cache would land in HOME too: what is there is devreg's.
      BUN_RUNTIME_TRANSPILER_CACHE_PATH: '0',
      PATH: `${join(input, 'bin')}:${process.env.PATH}`,
    }
    const printed: ScriptResult[] = []
    return {
      cache,
      out,
      printed,
      env,
      dockerConfig: (doc: unknown) => writeFileSync(join(input, 'docker/config.json'), JSON.stringify(doc)),
      helper(name: string, script: string) {
        const path = join(input, 'bin', `docker-credential-${name}`)
        writeFileSync(path, `#!/bin/sh\n${script}\n`)
        chmodSync(path, 0o755)
      },
      async devreg(args: string[]) {
        const r = await w.run('dev-registry', args, { config, env })
        printed.push(r)
        return r
      },
      pull: () => pull(`127.0.0.1:${cache.port}/library/alpha:1`),
    }
  }
  type Case = Awaited<ReturnType<typeof setup>>

  /** What status says a cache pulls as, in text and in --json, which must agree. */
  async function pullsAs(c: Case): Promise<string> {
    const text = await c.devreg(['status'])
    const json = await c.devreg(['status', '--json'])
    expect(text.code).toBe(0)
    const row = (JSON.parse(json.stdout).registries as { name: string; login: string }[]).find((r) => r.name === c.cache.name)
    expect(text.stdout.split('\n').find((l) => l.startsWith(`${c.cache.name} `))).toEndWith(` ${row?.login}`)
    return row?.login ?? ''
  }

  /**
   * The secret is in nothing devreg printed or wrote, nor in `docker inspect`
   * of anything this file made but the caches allowed to hold it, nor in any cache's log.
   */
  async function expectNowhere(secret: string, c: Case, holders: string[] = [c.cache.name]) {
    c.printed.forEach((r, i) => {
      expect(`${r.stdout}\n${r.stderr}`.includes(secret), `run ${i} printed the secret`).toBe(false)
    })
    const files = readdirSync(c.out, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    for (const f of files)
      expect(readFileSync(join(f.parentPath, f.name), 'utf8').includes(secret), `${f.name} holds the secret`).toBe(false)
    const q = $({ quiet: true })
    const own = (list: string) => list.split('\n').filter((n) => n.startsWith(fx.prefix))
    const containers = own((await q`docker ps -a --format {{.Names}}`).stdout)
    const volumes = own((await q`docker volume ls --format {{.Name}}`).stdout)
    const others = containers.filter((n) => !holders.includes(n))
    expect(others).toContain(registry.name)
    for (const [what, inspected] of [
      [others.join(', '), await q`docker inspect --type container ${others}`],
      [volumes.join(', '), await q`docker volume inspect ${volumes}`],
      [network, await q`docker network inspect ${network}`],
    ] as const)
      expect(inspected.stdout.includes(secret), `docker inspect of ${what} holds the secret`).toBe(false)
    for (const name of containers.filter((n) => n.endsWith('-cache'))) {
      const logs = await q`docker logs ${name}`
      expect(`${logs.stdout}${logs.stderr}`.includes(secret), `${name}'s log holds the secret`).toBe(false)
    }
  }

  const proxyEnv = async (name: string) =>
    JSON.parse((await $({ quiet: true })`docker inspect --format ${'{{json .Config.Env}}'} ${name}`).stdout) as string[]
  const basic = (user: string, secret: string) => ({ auth: Buffer.from(`${user}:${secret}`).toString('base64') })

  test('a login in config.json auths: a cold pull through the cache is authenticated at the hub as that user', async () => {
    const [user, secret] = [`auths-${fx.id}`, `s3cret-auths-${fx.id}`]
    hub.addUser(user, secret)
    const c = await setup('auths')
    c.dockerConfig({ auths: { [hub.server]: basic(user, secret) } })

    const dry = await c.devreg(['--dry-run'])
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('--env REGISTRY_PROXY_USERNAME --env REGISTRY_PROXY_PASSWORD ')
    const up = await c.devreg(['--verbose'])
    expect(up.code, up.stderr).toBe(0)
    expect(await hub.issued(user)).toBe(0)
    expect((await c.pull()).ok).toBe(true)
    expect(await hub.issued(user)).toBeGreaterThan(0)
    expect(await pullsAs(c)).toBe(`authenticated as ${user} (docker login)`)
    expect(await proxyEnv(c.cache.name)).toContain(`REGISTRY_PROXY_PASSWORD=${secret}`)
    expect(existsSync(join(c.out, 'config/devreg/hash.key'))).toBe(true)
    const again = await c.devreg([])
    expect(again.stderr).toContain('nothing to do')
    await expectNowhere(secret, c)
  })

  test('a changed docker login recreates only its cache, which then pulls as the new one', async () => {
    const [user, secret, rotated] = [`rotate-${fx.id}`, `s3cret-before-${fx.id}`, `s3cret-after-${fx.id}`]
    hub.addUser(user, secret)
    const c = await setup('rotate')
    c.dockerConfig({ auths: { [hub.server]: basic(user, secret) } })
    expect((await c.devreg([])).code).toBe(0)
    const [local, cache] = [await containerId(registry.name), await containerId(c.cache.name)]

    hub.addUser(user, rotated)
    c.dockerConfig({ auths: { [`https://${hub.server}`]: basic(user, rotated) } })
    const up = await c.devreg([])
    expect(up.code).toBe(0)
    expect(up.stderr).toMatch(new RegExp(`${c.cache.name} .*recreated \\(settings changed\\)`))
    expect(await containerId(registry.name)).toBe(local)
    expect(await containerId(c.cache.name)).not.toBe(cache)
    expect((await c.pull()).ok).toBe(true)
    expect(await hub.issued(user)).toBeGreaterThan(0)
    await expectNowhere(secret, c)
    await expectNowhere(rotated, c)
  })

  test('a login from a credential helper on PATH (credHelpers), asked with the server on stdin', async () => {
    const [user, secret] = [`helper-${fx.id}`, `s3cret-helper-${fx.id}`]
    hub.addUser(user, secret)
    const c = await setup('helper')
    c.dockerConfig({ credHelpers: { [hub.server]: 'x' } })
    c.helper(
      'x',
      `[ "$1" = get ] && [ "$(cat)" = "${hub.server}" ] || { echo "credentials not found in native keychain"; exit 1; }
echo '{"ServerURL":"${hub.server}","Username":"${user}","Secret":"${secret}"}'`,
    )
    const up = await c.devreg([])
    expect(up.code, up.stderr).toBe(0)
    expect((await c.pull()).ok).toBe(true)
    expect(await hub.issued(user)).toBeGreaterThan(0)
    expect(await pullsAs(c)).toBe(`authenticated as ${user} (docker login)`)
    await expectNowhere(secret, c)
  })

  test.skipIf(!first)(
    'a credsStore that hangs: a warning naming the helper and the fix, the cache anonymous, and the run ends',
    async () => {
      const c = await setup('hang')
      c.dockerConfig({ credsStore: 'hang' })
      c.helper('hang', 'sleep 600')
      const started = Date.now()
      const up = await c.devreg([])
      expect(Date.now() - started).toBeLessThan(40_000)
      expect(up.code, up.stderr).toBe(0)
      expect(up.stderr).toContain('warning: your docker login cannot be used: docker-credential-hang (credsStore in ')
      expect(up.stderr).toContain('did not answer within 10 s')
      expect(up.stderr).toContain('`docker-credential-hang list`')
      expect(up.stderr).toContain(`pulling anonymously: ${c.cache.name}`)
      expect((await proxyEnv(c.cache.name)).filter((e) => e.startsWith('REGISTRY_PROXY_PASSWORD'))).toEqual([])
      const refused = await hub.refusedAnonymous()
      expect((await c.pull()).ok).toBe(false)
      // The token server's line reaches its container log a moment after its answer.
      await eventually('the hub refusing an anonymous pull', async () => (await hub.refusedAnonymous()) > refused, 10_000).catch(() => {})
      expect(await hub.refusedAnonymous()).toBeGreaterThan(refused)
      const json = await c.devreg(['status', '--json'])
      expect(JSON.parse(json.stdout).registries.find((r: { name: string }) => r.name === c.cache.name).login).toBe(
        'anonymous (docker login unreadable)',
      )
    },
    120_000,
  )

  test('a helper that fails at once: a warning naming it and the fix, and the cache anonymous', async () => {
    const c = await setup('broken')
    c.dockerConfig({ credHelpers: { [hub.server]: 'broken' } })
    c.helper('broken', 'echo "gpg: decryption failed: No secret key" >&2; exit 1')
    const up = await c.devreg([])
    expect(up.code, up.stderr).toBe(0)
    expect(up.stderr).toContain('docker-credential-broken (credHelpers in ')
    expect(up.stderr).toContain('failed (gpg: decryption failed: No secret key): run `docker login` again, or set credentials: none')
    expect(up.stderr).toContain(`pulling anonymously: ${c.cache.name}`)
    expect((await c.pull()).ok).toBe(false)
    expect(await pullsAs(c)).toBe('anonymous (docker login unreadable)')
  })

  test('credentials: none pulls anonymously despite a login in config.json, and the hub refuses it', async () => {
    const [user, secret] = [`none-${fx.id}`, `s3cret-none-${fx.id}`]
    hub.addUser(user, secret)
    const c = await setup('none', { credentials: 'none' })
    c.dockerConfig({ auths: { [hub.server]: basic(user, secret) } })
    expect((await c.devreg([])).code).toBe(0)
    const refused = await hub.refusedAnonymous()
    expect((await c.pull()).ok).toBe(false)
    // The token server's line reaches its container log a moment after its answer.
    await eventually('the hub refusing an anonymous pull', async () => (await hub.refusedAnonymous()) > refused, 10_000).catch(() => {})
    expect(await hub.refusedAnonymous()).toBeGreaterThan(refused)
    expect(await hub.issued(user)).toBe(0)
    expect(await pullsAs(c)).toBe('anonymous')
    await expectNowhere(secret, c, [])
  })

  test('a mirror’s own env credentials win over the docker login', async () => {
    const [dockerUser, dockerSecret] = [`docker-${fx.id}`, `s3cret-docker-${fx.id}`]
    const [envUser, envSecret] = [`env-${fx.id}`, `s3cret-env-${fx.id}`]
    hub.addUser(dockerUser, dockerSecret)
    hub.addUser(envUser, envSecret)
    const names = { usernameEnv: `DT${fx.id}_USER`, passwordEnv: `DT${fx.id}_TOKEN` }
    const c = await setup('env', { credentials: names })
    c.dockerConfig({ auths: { [hub.server]: basic(dockerUser, dockerSecret) } })
    Object.assign(c.env, { [names.usernameEnv]: envUser, [names.passwordEnv]: envSecret })
    expect((await c.devreg([])).code).toBe(0)
    expect((await c.pull()).ok).toBe(true)
    expect(await hub.issued(envUser)).toBeGreaterThan(0)
    expect(await hub.issued(dockerUser)).toBe(0)
    expect(await pullsAs(c)).toBe(`authenticated as ${envUser} (env ${names.passwordEnv})`)
    await expectNowhere(dockerSecret, c, [])
    await expectNowhere(envSecret, c)
  })
}
