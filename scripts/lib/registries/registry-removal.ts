// Removing devreg's registries: their containers, and with --purge their
// volumes (what was pushed, what the caches hold), listed with their sizes
// and asked about first. Shared by dev-registry rm and dev-down.
import { confirm } from '../core/cli.ts'
import type { Config, Registry } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { formatBytes, log } from '../core/log.ts'

/** What removing registries deletes: their containers, and with `purge` their volumes with what they hold. */
export interface Removal {
  purge: boolean
  containers: Registry[]
  volumes: { name: string; what: string; bytes: number | null }[]
}

/** The registry containers of the given roles that devreg owns and, with `purge`, their volumes and sizes. */
export async function planRemoval(
  run: Runner,
  config: Config,
  { purge, roles }: { purge: boolean; roles: Registry['role'][] },
): Promise<Removal> {
  const chosen = config.registries.filter((r) => roles.includes(r.role))
  const containers = await docker.listContainers(run)
  const volumes: Removal['volumes'] = []
  if (purge)
    for (const r of chosen)
      if (await docker.volumeExists(run, r.volume)) {
        const what = r.role === 'local' ? 'images pushed to the local registry' : `cache of ${r.upstreamDomain}`
        volumes.push({ name: r.volume, what, bytes: await docker.volumeBytes(run, r.volume, r.image) })
      }
  return { purge, containers: chosen.filter((r) => containers.some((c) => c.name === r.name && docker.isOwned(c))), volumes }
}

/** A volume as the question before deleting it lists it: name, size, what it holds. */
export const volumeLine = (v: Removal['volumes'][number]) =>
  `  volume ${v.name.padEnd(36)} ${v.bytes === null ? 'size unknown' : formatBytes(v.bytes)}  (${v.what})`

/** Removes what planRemoval found: the containers, then the volumes. */
export async function applyRemoval(run: Runner, { purge, containers, volumes }: Removal): Promise<void> {
  for (const r of containers) {
    await docker.removeContainer(run, r.name)
    if (!run.dryRun) log.ok(`${r.name} removed${purge ? '' : ` (volume ${r.volume} kept)`}`)
  }
  for (const v of volumes) {
    await docker.removeVolume(run, v.name)
    if (!run.dryRun) log.ok(`volume ${v.name} deleted`)
  }
}

/**
 * Removes the registry containers of the given roles; with `purge` also their
 * volumes, after listing each with its size and asking (--yes skips it).
 * Returns false when the user said no.
 */
export async function removeRegistries(
  run: Runner,
  config: Config,
  { purge, yes, roles }: { purge: boolean; yes: boolean; roles: Registry['role'][] },
): Promise<boolean> {
  const removal = await planRemoval(run, config, { purge, roles })
  if (removal.volumes.length) {
    log.info('These volumes and everything in them would be deleted:')
    for (const v of removal.volumes) log.info(volumeLine(v))
    if (!run.dryRun && !(await confirm(run, 'Delete them?', yes))) {
      log.info('nothing deleted')
      return false
    }
  }
  await applyRemoval(run, removal)
  return true
}
