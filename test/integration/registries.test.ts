// dev-registry against a real dockerd, real distribution registries and a fake
// upstream, once on an image laid out like registry:3 (the default) and once
// like registry:2.
import { expect, test } from 'bun:test'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { dockerSnapshot, freePort, integration, runScript, testRegistry } from '../kit/fixture.ts'
import { REGISTRY_LAYOUTS, sampleImage } from '../kit/images.ts'
import { containerId, manifestBlobs, pull, storedBlobs, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

for (const { layout, image } of REGISTRY_LAYOUTS) integration(`dev-registry up on ${layout}`, () => upSuite(image))

function upSuite(image: string) {
  const w = useWorld({ registryImage: image, seed: ['alpha', 'beta'] }, async (w) => {
    const r = await w.devRegistry()
    expect(r.stderr).toContain('created')
    expect(r.code).toBe(0)
  })
  const { fx, network, upstream, registry, cache } = w
  const up = (...args: string[]) => w.devRegistry(...args)

  test('an image pushed to the local registry pulls back', async () => {
    const ref = `127.0.0.1:${registry.port}/app:dev`
    await $({ quiet: true })`docker tag ${sampleImage('gamma')} ${ref}`
    await $({ quiet: true })`docker push ${ref}`
    await $({ quiet: true })`docker rmi ${ref}`
    expect((await pull(ref)).ok).toBe(true)
  })

  test('a library image pulls through the docker.io cache, which then holds it, also with the upstream stopped', async () => {
    const blobs = await manifestBlobs(upstream.port, 'library/alpha', '1')
    expect((await storedBlobs(cache.name)).filter((b) => blobs.includes(b))).toEqual([])
    expect((await pull(`127.0.0.1:${cache.port}/library/alpha:1`)).ok).toBe(true)
    await waitStored(cache.name, blobs)
    await w.stopped(upstream.name, async () => {
      expect((await pull(`127.0.0.1:${cache.port}/library/alpha:1`)).ok).toBe(true)
    })
  })

  test('a second up with the same config replaces no container and says so', async () => {
    const before = [await containerId(registry.name), await containerId(cache.name)]
    const r = await up()
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('nothing to do')
    expect([await containerId(registry.name), await containerId(cache.name)]).toEqual(before)
  })

  test('ports are published on 127.0.0.1 only, caches run with delete off and restart=always', async () => {
    for (const name of [registry.name, cache.name]) {
      const info = JSON.parse((await $({ quiet: true })`docker inspect ${name}`).stdout)[0]
      const bindings = Object.values(info.HostConfig.PortBindings).flat() as { HostIp: string }[]
      expect(bindings.map((b) => b.HostIp)).toEqual(['127.0.0.1'])
      expect(info.HostConfig.RestartPolicy.Name).toBe('always')
      expect(info.HostConfig.LogConfig.Config['max-size']).toBe('10m')
      expect(info.NetworkSettings.Networks[network]).toBeDefined()
    }
    const env = JSON.parse((await $({ quiet: true })`docker inspect ${cache.name}`).stdout)[0].Config.Env as string[]
    expect(env).toContain('REGISTRY_STORAGE_DELETE_ENABLED=false')
    expect(env).toContain('REGISTRY_PROXY_CACHEWRITETIMEOUT=1h')
    const localEnv = JSON.parse((await $({ quiet: true })`docker inspect ${registry.name}`).stdout)[0].Config.Env as string[]
    expect(localEnv).toContain('REGISTRY_STORAGE_DELETE_ENABLED=true')
    for (const e of [env, localEnv]) expect(e).toEqual(expect.arrayContaining(['REGISTRY_LOG_LEVEL=info', 'OTEL_TRACES_EXPORTER=none']))
  })

  test('registries log at info, also where the image config says debug (registry:3), and still log every response', async () => {
    expect((await pull(`127.0.0.1:${cache.port}/library/alpha:1`)).ok).toBe(true)
    for (const name of [registry.name, cache.name]) {
      const logs = await $({ quiet: true })`docker logs ${name}`
      const text = `${logs.stdout}\n${logs.stderr}`
      expect(text).toContain('response completed')
      expect(text).not.toContain('level=debug')
    }
  })

  test('a stopped registry is started again, not recreated', async () => {
    const id = await containerId(registry.name)
    await $({ quiet: true })`docker stop ${registry.name}`
    const r = await up()
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/started/)
    expect(await containerId(registry.name)).toBe(id)
  })

  test('a changed setting recreates only that container, on its volume, with the cached image intact', async () => {
    const localId = await containerId(registry.name)
    const cacheId = await containerId(cache.name)
    // The same upstream under another name on the network: a changed setting.
    await $({ quiet: true })`docker network connect --alias ${`${upstream.name}-alias`} ${network} ${upstream.name}`.nothrow()
    const changed = w.configFile({ mirrors: [{ ...w.mirrorDocs()[0], upstream: `http://${upstream.name}-alias:5000` }] }, 'changed.yaml')
    const r = await w.run('dev-registry', [], { config: changed })
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/recreated \(settings changed\)/)
    expect(await containerId(registry.name)).toBe(localId)
    expect(await containerId(cache.name)).not.toBe(cacheId)
    await w.stopped(upstream.name, async () => {
      expect((await pull(`127.0.0.1:${cache.port}/library/alpha:1`)).ok).toBe(true)
    })
    // Back to the first config for the tests after this one.
    expect((await up()).code).toBe(0)
  })

  test('rm keeps the volumes, and up serves the same cached image again', async () => {
    const rm = await up('rm')
    expect(rm.code).toBe(0)
    expect(rm.stderr).toContain('kept')
    const volumes = (await $({ quiet: true })`docker volume ls --format {{.Name}}`).stdout
    expect(volumes).toContain(registry.volume)
    expect(volumes).toContain(`${cache.name}-data`)
    expect((await up()).code).toBe(0)
    await w.stopped(upstream.name, async () => {
      expect((await pull(`127.0.0.1:${cache.port}/library/alpha:1`)).ok).toBe(true)
      expect((await pull(`127.0.0.1:${registry.port}/app:dev`)).ok).toBe(true)
    })
  })

  test('a bad config exits 2 and changes no docker object', async () => {
    const bad = fx.config({ registry: { ...registry, port: 70000 } }, 'bad.yaml')
    const before = await dockerSnapshot(fx.prefix)
    const r = await runScript('dev-registry', ['--config', bad])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('registry.port: 70000 is not a port')
    expect(await dockerSnapshot(fx.prefix)).toBe(before)
  })

  test('status reports each registry, its mode and whether it matches the config', async () => {
    const r = await up('status', '--json')
    expect(r.code).toBe(0)
    const { registries } = JSON.parse(r.stdout)
    expect(
      registries.map((x: { name: string; role: string; state: string; matchesConfig: boolean }) => [
        x.name,
        x.role,
        x.state,
        x.matchesConfig,
      ]),
    ).toEqual([
      [registry.name, 'local', 'running', true],
      [cache.name, 'cache', 'running', true],
    ])
    expect(registries[1].mode).toBe('proxy')
    expect(registries[1].upstream).toBe(upstream.url)
  })

  test('a port taken by another process is reported before anything starts', async () => {
    const blocker = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
    try {
      const cfg = w.configFile(
        {
          registry: { ...(await testRegistry(fx)), image, port: blocker.port },
          mirrors: [{ host: 'docker.io', upstream: upstream.url, name: fx.name('cache2'), port: await freePort() }],
        },
        'taken.yaml',
      )
      const before = await dockerSnapshot(fx.prefix)
      const r = await runScript('dev-registry', ['--config', cfg])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(`port 127.0.0.1:${blocker.port} is already in use`)
      expect(await dockerSnapshot(fx.prefix)).toBe(before)
    } finally {
      blocker.stop(true)
    }
  })

  test('a rotated credential recreates only its cache, on its volume, with the cached image intact', async () => {
    const [user, token] = [`DT${fx.id}_USER`, `DT${fx.id}_TOKEN`]
    const priv = { name: fx.name('cache-private'), port: await freePort() }
    const cfg = w.configFile(
      {
        mirrors: [
          ...w.mirrorDocs(),
          {
            host: 'registry.example.com',
            upstream: upstream.url,
            name: priv.name,
            port: priv.port,
            credentials: { usernameEnv: user, passwordEnv: token },
          },
        ],
      },
      'credentials.yaml',
    )
    // The hash key goes to the fixture's directory, not the user's config.
    const keyHome = join(fx.dir, 'xdg-config')
    const upWith = (value: string) =>
      runScript('dev-registry', ['--config', cfg], { env: { XDG_CONFIG_HOME: keyHome, [user]: 'robot', [token]: value } })
    expect((await upWith('first-token')).code).toBe(0)
    const blobs = await manifestBlobs(upstream.port, 'library/beta', '1')
    expect((await pull(`127.0.0.1:${priv.port}/library/beta:1`)).ok).toBe(true)
    await waitStored(priv.name, blobs)
    const ids = async () => [await containerId(registry.name), await containerId(cache.name), await containerId(priv.name)]
    const before = await ids()

    const same = await upWith('first-token')
    expect(same.code).toBe(0)
    expect(same.stderr).toContain('nothing to do')
    expect(await ids()).toEqual(before)

    const rotated = await upWith('rotated-token')
    expect(rotated.code).toBe(0)
    expect(rotated.stderr).toMatch(new RegExp(`${priv.name} .*recreated \\(settings changed\\)`))
    const after = await ids()
    expect(after.slice(0, 2)).toEqual(before.slice(0, 2))
    expect(after[2]).not.toBe(before[2])
    expect((await storedBlobs(priv.name)).filter((b) => blobs.includes(b))).toEqual(blobs)
    const info = JSON.parse((await $({ quiet: true })`docker inspect ${priv.name}`).stdout)[0]
    expect(info.Config.Env).toContain('REGISTRY_PROXY_PASSWORD=rotated-token')
    expect(JSON.stringify(info.Config.Labels)).not.toContain('token')
    expect(statSync(join(keyHome, 'devreg/hash.key')).mode & 0o777).toBe(0o600)
  })
}
