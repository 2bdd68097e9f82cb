// A namespace alias such as docker.io/acme puts the local registry first for
// all of docker.io: containerd and k3s route per registry domain, not per path.
// So anything pushed locally under a docker.io path (library/nginx) is what
// every node gets for that docker.io image, cluster-wide.
import type { Config, Registry } from '../core/config.ts'
import type { Runner } from '../core/exec.ts'
import { listRepositories } from '../registries/distribution.ts'

export interface Shadow {
  /** The registry domain the cache mirrors, e.g. docker.io. */
  domain: string
  repository: string
  /** The alias that puts the local registry in front of the domain. */
  alias: string
}

/** The caches whose domain a namespace alias covers, with that alias. */
export function aliasedCaches(config: Config): { cache: Registry; alias: string }[] {
  return config.registries.flatMap((cache) => {
    const alias = cache.role === 'cache' ? config.aliases.find((a) => a.startsWith(`${cache.upstreamDomain}/`)) : undefined
    return alias ? [{ cache, alias }] : []
  })
}

/** Repositories both the local registry and a covered cache hold: the local one wins on every node. */
export function shadows(config: Config, local: string[], cached: Map<string, string[]>): Shadow[] {
  const mine = new Set(local)
  return aliasedCaches(config).flatMap(({ cache, alias }) =>
    (cached.get(cache.name) ?? [])
      .filter((repo) => mine.has(repo))
      .map((repository) => ({ domain: cache.upstreamDomain as string, repository, alias })),
  )
}

/** Asks the registries (where they are published on this machine) what they hold; a registry that does not answer shadows nothing. */
export async function findShadows(run: Runner, config: Config): Promise<Shadow[]> {
  const covered = aliasedCaches(config)
  if (!covered.length) return []
  const catalog = (r: Registry) => listRepositories(run, r.address.url).catch(() => [] as string[])
  const local = config.registries.find((r) => r.role === 'local') as Registry
  const [mine, ...theirs] = await Promise.all([catalog(local), ...covered.map(({ cache }) => catalog(cache))])
  return shadows(config, mine, new Map(covered.map(({ cache }, i) => [cache.name, theirs[i]])))
}
