import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import type { Container } from '../../scripts/lib/core/docker.ts'
import { LABEL } from '../../scripts/lib/core/labels.ts'
import { UserError } from '../../scripts/lib/core/log.ts'
import { adoptRegistry } from '../../scripts/lib/registries/registry-adoption.ts'
import { applyRegistries, planRegistries, registryContainer } from '../../scripts/lib/registries/registry-containers.ts'
import { removeRegistries } from '../../scripts/lib/registries/registry-removal.ts'
import { fakeRunner, on, v2Up } from '../kit/fake-runner.ts'
import { freePort } from '../kit/net.ts'

// Free ports of this machine's own: adopt's final `up` checks the local registry's port for real.
const config = resolveConfig({ registry: { port: await freePort() }, mirrors: [{ host: 'docker.io', port: await freePort() }] })
const [local, hub] = config.registries
/** Every registry answers GET /v2/. */
const up = config.registries.map((r) => v2Up(r.address.url))

/** A container as `docker ps` reports it; devreg's own unless `labels` says otherwise. */
function container(name: string, state: string, labels: Record<string, string>, extra: Partial<Container> = {}): Container {
  return { id: name, name, state, labels, networks: [], ports: '', image: 'registry:3', ...extra }
}
const owned = (r: typeof local, state = 'running', hash = registryContainer(r).hash) =>
  container(r.name, state, { [LABEL.managed]: 'true', [LABEL.hash]: hash }, { networks: ['kind'], ports: `${r.address.publish}->5000/tcp` })

/** `docker ps --format {{json .}}` output for these containers. */
const ps = (...cs: Container[]) =>
  cs
    .map((c) =>
      JSON.stringify({
        ID: c.id,
        Names: c.name,
        State: c.state,
        Labels: Object.entries(c.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(','),
        Networks: c.networks.join(','),
        Ports: c.ports,
        Image: c.image,
      }),
    )
    .join('\n')

describe('planRegistries: what `dev-registry up` decides for each container', () => {
  const plan = (containers: Container[]) => planRegistries(fakeRunner([], { dryRun: true }), config, containers)
  const actions = async (containers: Container[]) => (await plan(containers)).map((s) => [s.registry.name, s.action, s.reason])

  test('missing containers are created, running ones that match are left alone', async () => {
    expect(await actions([owned(local)])).toEqual([
      [local.name, 'none', 'up to date'],
      [hub.name, 'create', 'missing'],
    ])
  })

  test('a stopped container is started, one with other settings is recreated', async () => {
    expect(await actions([owned(local, 'exited'), owned(hub, 'running', 'feedfacefeedface')])).toEqual([
      [local.name, 'start', 'exited'],
      [hub.name, 'recreate', 'settings changed'],
    ])
  })

  test('a container of the same name devreg did not create is refused, naming adopt, before anything runs', async () => {
    const run = fakeRunner([], { dryRun: true })
    const refused = planRegistries(run, config, [container(local.name, 'running', {})])
    await expect(refused).rejects.toThrow(`run \`dev-registry adopt ${local.name}\``)
    await expect(refused).rejects.toBeInstanceOf(UserError)
    expect(run.changes).toEqual([])
  })

  test('a port another container publishes is refused, naming that container', async () => {
    const squatter = container('someone-else', 'running', {}, { ports: `127.0.0.1:${hub.port}->5000/tcp` })
    await expect(plan([owned(local), squatter])).rejects.toThrow(`port ${hub.port} is already published by container someone-else`)
  })
})

describe('applyRegistries: what it runs, in order', () => {
  test('create makes the volume then runs on the network; recreate removes and runs again; start only starts', async () => {
    const run = fakeRunner(up)
    const steps = await planRegistries(fakeRunner([], { dryRun: true }), config, [owned(hub, 'running', 'feedfacefeedface')])
    await applyRegistries(run, steps, 'kind')
    const [localRun, hubRun] = steps.map((s) => s.spec.args)
    expect(run.changes).toEqual([
      `docker volume create --label devreg.managed=true ${local.volume}`,
      ['docker', 'run', '--detach', '--network', 'kind', ...localRun].join(' '),
      `docker rm --force --volumes=false ${hub.name}`,
      expect.stringContaining(['docker', 'run', '--detach', '--network', 'kind', ...hubRun.slice(0, 4)].join(' ')),
    ])
  })

  test('containers that stay are attached to the cluster network when they are not on it', async () => {
    const run = fakeRunner(up)
    const offNetwork = { ...owned(hub), networks: ['bridge'] }
    const steps = await planRegistries(fakeRunner([], { dryRun: true }), config, [owned(local, 'exited'), offNetwork])
    const { changed } = await applyRegistries(run, steps, 'kind')
    expect(run.changes).toEqual([`docker start ${local.name}`, `docker network connect kind ${hub.name}`])
    expect(changed).toBe(1)
  })

  test('a registry that never answers /v2/ is an error naming its logs; one that answers is not', async () => {
    const steps = await planRegistries(fakeRunner([], { dryRun: true }), config, [owned(local), owned(hub)])
    const run = fakeRunner([v2Up(hub.address.url)])
    const refused = await applyRegistries(run, steps, null).catch((err: Error) => err.message)
    expect(refused).toBe(`${local.name} does not answer GET ${local.address.url}/v2/ (ECONNREFUSED): see \`docker logs ${local.name}\``)
    // It was asked again and again until the time was up (the fake clock jumps instead of waiting).
    expect(run.calls.filter((c) => c.line === `GET ${local.address.url}/v2/`).length).toBeGreaterThan(10)
  })

  test('under --dry-run nothing waits and every command is only shown', async () => {
    const run = fakeRunner([], { dryRun: true })
    const steps = await planRegistries(run, config, [])
    await applyRegistries(run, steps, null)
    expect(run.changes.filter((l) => l.startsWith('docker run'))).toHaveLength(2)
    expect(run.calls.filter((c) => c.kind === 'http')).toEqual([])
  })
})

describe('adoptRegistry', () => {
  test('stops, pins, copies, renames aside, then brings devreg’s registries up', async () => {
    const foreign = container(local.name, 'running', {}, { ports: `${local.address.publish}->5000/tcp` })
    const run = fakeRunner([
      on(['docker', 'ps'], ps(foreign), 1),
      on(['docker', 'ps'], ps(owned(hub))),
      on(['docker', 'inspect', '--type', 'container', local.name], JSON.stringify([{ Config: { Env: [] }, State: { Running: true } }])),
      ...up,
    ])
    await adoptRegistry(run, config, local.name)
    const backup = run.changes.find((l) => l.startsWith('docker rename'))?.split(' ')[3] ?? ''
    expect(backup).toMatch(new RegExp(`^${local.name}-adopted-\\d{14}$`))
    expect(run.changes.slice(0, 5)).toEqual([
      `docker stop ${local.name}`,
      `docker update --restart=no ${local.name}`,
      `docker volume create --label devreg.managed=true ${local.volume}`,
      `docker cp ${local.name}:/var/lib/registry - | docker run --rm -i --network none --volume ${local.volume}:/var/lib/registry --entrypoint tar ${local.image} -x -C /var/lib`,
      `docker rename ${local.name} ${backup}`,
    ])
    expect(run.changes[6]).toStartWith(`docker run --detach --name ${local.name}`)
  })

  test('a cache of an upstream no mirror has is refused before anything changes', async () => {
    const env = ['REGISTRY_PROXY_REMOTEURL=https://quay.io']
    const run = fakeRunner([
      on(['docker', 'ps'], ps(container('old-quay', 'running', {}))),
      on(['docker', 'inspect'], JSON.stringify([{ Config: { Env: env }, State: { Running: true } }])),
    ])
    await expect(adoptRegistry(run, config, 'old-quay')).rejects.toThrow('add a mirror with upstream https://quay.io first')
    expect(run.changes).toEqual([])
  })
})

describe('removeRegistries', () => {
  test('--purge lists the volumes and, told yes, removes containers before volumes; never one devreg does not own', async () => {
    const run = fakeRunner([
      on(['docker', 'ps'], ps(owned(local), container(hub.name, 'running', {}))),
      on(['docker', 'volume', 'inspect'], 'x'),
      on(['docker', 'run'], '2048\t/volume'),
    ])
    expect(await removeRegistries(run, config, { purge: true, yes: true, roles: ['local', 'cache'] })).toBe(true)
    expect(run.changes).toEqual([
      `docker rm --force --volumes=false ${local.name}`,
      `docker volume rm ${local.volume}`,
      `docker volume rm ${hub.volume}`,
    ])
  })
})
