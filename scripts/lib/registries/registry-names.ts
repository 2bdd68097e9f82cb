// Which registries a command means. Every command that takes registry names
// reads them here, so each accepts the same ones: `dev-registry export` and
// `import` (FILE [REGISTRY...]), `dev-registry report [REGISTRY...]` and
// `registry-gc --registry REGISTRY`. A name is
//   - a registry's container name from the config: kind-registry, kind-cache-docker-io;
//   - a mirror's host (the registry domain it caches), for its cache: docker.io, ghcr.io;
//   - `local`, for the local registry.
// Naming none means the command's default: every cache (export, import,
// report) or every registry (registry-gc).
import type { Config, Registry } from '../core/config.ts'
import { EXIT, UserError } from '../core/log.ts'

/** What a registry name may be, as the usage texts say it. */
export const REGISTRY_NAMES = 'a container name from the config, a mirror host (e.g. docker.io), or local'

export interface Selection {
  /** What naming none means. */
  none: 'caches' | 'all'
  /** A command that covers caches only (`report`): naming the local registry is a usage error that says so. */
  cachesOnly?: string
}

/** The registry a name means, or null. */
export function findRegistry(config: Config, name: string): Registry | null {
  return config.registries.find((r) => r.name === name || r.upstreamDomain === name || (name === 'local' && r.role === 'local')) ?? null
}

/** The registries `names` mean, each once, in the order named; a name the config has no registry for is a usage error. */
export function selectRegistries(config: Config, names: readonly string[], { none, cachesOnly }: Selection): Registry[] {
  if (!names.length) return config.registries.filter((r) => none === 'all' || r.role === 'cache')
  const chosen: Registry[] = []
  for (const name of names) {
    const r = findRegistry(config, name)
    if (!r)
      throw new UserError(
        `no registry ${name} in the config: name ${config.registries.map((x) => x.name).join(', ')}, a mirror host (${cachedDomains(config)}), or local`,
        EXIT.usage,
      )
    if (cachesOnly && r.role !== 'cache')
      throw new UserError(`${name} is the local registry: ${cachesOnly} covers caches only (name one, or none for every cache)`, EXIT.usage)
    if (!chosen.includes(r)) chosen.push(r)
  }
  return chosen
}

const cachedDomains = (config: Config) =>
  config.registries.flatMap((r) => (r.upstreamDomain ? [r.upstreamDomain] : [])).join(', ') || 'none'
