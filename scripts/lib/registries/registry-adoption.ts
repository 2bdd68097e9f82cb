// Taking over a registry container devreg did not create (an old
// kind-registry, a hand-made cache): its data copied into devreg's volume,
// the container kept aside, devreg's own brought up in its place.
import { dirname } from 'node:path'
import type { Config } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { LABEL } from '../core/labels.ts'
import { EXIT, log, UserError } from '../core/log.ts'
import { ensureRegistries } from './registry-containers.ts'
import { REGISTRY_DATA } from './registry-layout.ts'

/** Copies a container's registry data (from a volume or its own filesystem) into a volume. */
export async function copyRegistryData(run: Runner, from: string, volume: string, image: string): Promise<void> {
  // docker cp emits a tar whose top entry is the data directory's own name
  // ("registry/"); extracted in its parent it lands in the volume mounted there.
  await run.pipe(
    ['docker', 'cp', `${from}:${REGISTRY_DATA}`, '-'],
    docker.helperCommand(volume, image, { at: REGISTRY_DATA, stdin: true }, 'tar', '-x', '-C', dirname(REGISTRY_DATA)),
  )
}

/**
 * Replaces a registry container devreg did not create with devreg's own, on
 * devreg's volume: stopped, copied, kept aside renamed (never deleted), then
 * `up`. A proxy-mode registry becomes the cache of its upstream; anything else
 * the local registry.
 */
export async function adoptRegistry(run: Runner, config: Config, name: string): Promise<number> {
  if (!(await docker.listContainers(run)).some((c) => c.name === name))
    throw new UserError(`no container named ${name}: \`docker ps -a\` lists them`, EXIT.usage)
  const info = await docker.inspect<{ Config: { Env?: string[]; Labels?: Record<string, string> }; State: { Running: boolean } }>(run, name)
  if (!info) throw new UserError(`no container named ${name}: \`docker ps -a\` lists them`, EXIT.usage)
  if (info.Config.Labels?.[LABEL.managed] === 'true') throw new UserError(`${name} is already devreg's: nothing to adopt`, EXIT.usage)
  const remote = info.Config.Env?.find((e) => e.startsWith('REGISTRY_PROXY_REMOTEURL='))
    ?.split('=')[1]
    ?.replace(/\/+$/, '')
  const target = remote
    ? config.registries.find((r) => r.role === 'cache' && r.upstream === remote)
    : config.registries.find((r) => r.role === 'local')
  if (!target)
    throw new UserError(
      `${name} is a cache of ${remote}, which no mirror in the config has as upstream: add a mirror with upstream ${remote} first`,
      2,
    )
  const backup = `${name}-adopted-${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}`

  // 1. Stop it so its data is consistent, and keep Docker from restarting it.
  if (info.State.Running) await docker.stopContainer(run, name)
  await docker.disableRestart(run, name)
  // 2. Copy its registry data (volume or container filesystem) into devreg's volume.
  await docker.ensureVolume(run, target.volume)
  await copyRegistryData(run, name, target.volume, target.image)
  // 3. Keep the old container, renamed and stopped, until the user removes it.
  await docker.renameContainer(run, name, backup)
  log.ok(`copied ${name}'s images into volume ${target.volume}; the old container is kept, stopped, as ${backup}`)
  // 4. Bring up devreg's registries, the adopted one included. Under --dry-run
  // the container still has its name, so planning would refuse it as foreign.
  if (run.dryRun) log.out('# then: dev-registry up')
  else await ensureRegistries(run, config)
  log.info(`when you have checked your images, remove the old container: docker rm ${backup}`)
  return 0
}
