// What devreg must never lose: a registry it does not own, pushed images,
// volumes without confirmation, and secrets in output.
import { expect, test } from 'bun:test'
import { $ } from 'zx'
import { dockerSnapshot, freePort, integration, runScript, testRegistry, waitHttp } from '../kit/fixture.ts'
import { REGISTRY_IMAGE } from '../kit/images.ts'
import { containerId, pull, seed } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

integration('ownership, adoption, purge and secrets', () => {
  // Each test brings a local registry and a cache of its own to the world's network and upstream.
  const w = useWorld({ mirrors: [], upstreams: ['upstream'] })
  const { fx, upstream } = w
  /** A config file naming `registry` and a cache of its own; the cache's name. */
  const configFor = async (file: string, registry: Awaited<ReturnType<typeof testRegistry>>, extra: Record<string, unknown> = {}) => {
    const cache = { host: 'docker.io', upstream: upstream.url, name: fx.name(`cache-${registry.port}`), port: await freePort(), ...extra }
    return { config: w.configFile({ registry, mirrors: [cache] }, file), cache: cache.name }
  }

  test('an unowned container with the registry name is left untouched, and adopt carries its images over', async () => {
    const registry = await testRegistry(fx)
    // The seeds' kind-registry: created by hand, images only in its own storage.
    await $({
      quiet: true,
    })`docker run -d --restart=always --name ${registry.name} -p ${`127.0.0.1:${registry.port}:5000`} ${REGISTRY_IMAGE}`
    // registry:3 takes a moment to serve after its container starts: a push before that is reset.
    await waitHttp(`http://127.0.0.1:${registry.port}/v2/`)
    const pushed = await seed(registry.port, 'gamma', 'team/app', 'v1')
    const id = await containerId(registry.name)
    const { config } = await configFor('adopt.yaml', registry)

    const before = await dockerSnapshot(fx.prefix)
    const up = await runScript('dev-registry', ['--config', config])
    expect(up.code).toBe(1)
    expect(up.stderr).toContain(`a container named ${registry.name} exists but devreg did not create it`)
    expect(up.stderr).toContain(`dev-registry adopt ${registry.name}`)
    expect(await dockerSnapshot(fx.prefix)).toBe(before)
    expect(await containerId(registry.name)).toBe(id)

    const adopt = await runScript('dev-registry', ['--config', config, 'adopt', registry.name])
    expect(adopt.stderr).toContain('copied')
    expect(adopt.code).toBe(0)
    const labels = JSON.parse((await $({ quiet: true })`docker inspect --format ${'{{json .Config.Labels}}'} ${registry.name}`).stdout)
    expect(labels['devreg.managed']).toBe('true')
    expect((await pull(pushed)).ok).toBe(true)
    // The old container is kept, stopped, and Docker will not start it again.
    const backup = (await $({ quiet: true })`docker ps -a --filter ${`id=${id}`} --format ${'{{.Names}} {{.State}}'}`).stdout.trim()
    expect(backup).toMatch(new RegExp(`^${registry.name}-adopted-\\d{14} exited$`))
    expect((await $({ quiet: true })`docker inspect --format {{.HostConfig.RestartPolicy.Name}} ${id}`).stdout.trim()).toBe('no')
    await $({ quiet: true })`docker rm -v ${id}`
  })

  test('rm --purge without a terminal and without --yes refuses with exit 2 and deletes nothing; --yes deletes the volumes', async () => {
    const registry = await testRegistry(fx)
    const { config } = await configFor('purge.yaml', registry)
    expect((await runScript('dev-registry', ['--config', config])).code).toBe(0)
    await seed(registry.port, 'beta', 'keep/me')

    const before = await dockerSnapshot(fx.prefix)
    const refused = await runScript('dev-registry', ['--config', config, 'rm', '--purge'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain(registry.volume)
    expect(refused.stderr).toContain('rerun with --yes')
    expect(await dockerSnapshot(fx.prefix)).toBe(before)

    const dry = await runScript('dev-registry', ['--config', config, 'rm', '--purge', '--dry-run'])
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain(`docker volume rm ${registry.volume}`)
    expect(await dockerSnapshot(fx.prefix)).toBe(before)

    const purged = await runScript('dev-registry', ['--config', config, 'rm', '--purge', '--yes'])
    expect(purged.code).toBe(0)
    expect(purged.stderr).toMatch(new RegExp(`${registry.volume}\\s+\\d`))
    const volumes = (await $({ quiet: true })`docker volume ls --format {{.Name}}`).stdout
    expect(volumes).not.toContain(registry.volume)
  })

  test('credentials reach the cache by variable name only: never in output, dry-run or verbose', async () => {
    const secret = `s3cret-${fx.id}-value`
    const registry = await testRegistry(fx)
    const { config, cache } = await configFor('creds.yaml', registry, {
      credentials: { usernameEnv: 'DT_HUB_USER', passwordEnv: 'DT_HUB_TOKEN' },
    })
    const env = { DT_HUB_USER: 'someone', DT_HUB_TOKEN: secret }

    const missing = await runScript('dev-registry', ['--config', config], { env: { DT_HUB_USER: 'someone' } })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('DT_HUB_TOKEN is not set')

    const dry = await runScript('dev-registry', ['--config', config, '--dry-run'], { env })
    expect(dry.stdout).toContain('--env REGISTRY_PROXY_PASSWORD ')
    const up = await runScript('dev-registry', ['--config', config, '--verbose'], { env })
    expect(up.code).toBe(0)
    for (const out of [dry.stdout, dry.stderr, up.stdout, up.stderr]) expect(out).not.toContain(secret)
    const env2 = JSON.parse((await $({ quiet: true })`docker inspect --format ${'{{json .Config.Env}}'} ${cache}`).stdout) as string[]
    expect(env2).toContain(`REGISTRY_PROXY_PASSWORD=${secret}`)
    const logs = await $({ quiet: true })`docker logs ${cache}`
    expect(logs.stdout + logs.stderr).not.toContain(secret)
  })
})
