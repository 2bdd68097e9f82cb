// Which registry each node tries, in order, for each registry domain: the one
// routing model that hosts.toml (kind), registries.yaml (k3d), the host
// engine's mirrors and verify are all derived from.
import { type Config, defaultUpstream, type Registry } from '../core/config.ts'

export interface Endpoint {
  url: string
  /** The URL's path is the API root itself (a Harbor proxy project), not a base to append /v2 to. */
  overridePath: boolean
}

/** How nodes reach one registry domain: endpoints in order, then `server`. */
export interface Route {
  /** The registry domain (port included) as containerd sees it in an image name: docker.io, localhost:5001, registry.dev.local. */
  domain: string
  endpoints: Endpoint[]
  /** Tried last: the real upstream, so a node still pulls when every cache is down. */
  server: string
  description: string
}

/** The routing every node gets, from which hosts.toml (kind) and registries.yaml (k3d) are rendered. */
export function registryRoutes(config: Config): Route[] {
  const local = config.registries.find((r) => r.role === 'local') as Registry
  const covered = (domain: string) => config.aliases.some((a) => a === domain || a.startsWith(`${domain}/`))
  // The local registry is listed as a host (hosts.toml's [host] table) as well as the server: containerd
  // 1.6 ignores a hosts.toml that has a server and no host (seen here).
  const localOnly = [{ url: local.address.inNetworkUrl, overridePath: false }]
  const routes: Route[] = [
    {
      domain: local.address.onHost,
      endpoints: localOnly,
      server: local.address.inNetworkUrl,
      description: 'the local registry, as pushed to from the host',
    },
    {
      domain: local.address.inNetwork,
      endpoints: localOnly,
      server: local.address.inNetworkUrl,
      description: 'the local registry, by its name on the cluster network',
    },
  ]
  for (const cache of config.registries.filter((r) => r.role === 'cache')) {
    const domain = cache.upstreamDomain as string
    const canonical = defaultUpstream(domain)
    routes.push({
      domain,
      endpoints: [
        ...(covered(domain) ? [{ url: local.address.inNetworkUrl, overridePath: false }] : []),
        { url: cache.address.inNetworkUrl, overridePath: false },
        ...cache.remotes.map((m) => ({
          url: `${m.url.replace(/\/+$/, '')}${m.path && m.path !== '/' ? m.path : ''}`,
          overridePath: Boolean(m.path && !/^\/(v2\/?)?$/.test(m.path)),
        })),
        ...(cache.upstream !== canonical ? [{ url: cache.upstream as string, overridePath: false }] : []),
      ],
      server: canonical,
      description: `${domain}: ${covered(domain) ? 'the local registry (alias), then ' : ''}cache ${cache.name}, then the upstream`,
    })
  }
  // An alias of a domain no cache mirrors: the local registry, then the registry at that domain.
  const aliasDomains = [...new Set(config.aliases.map((a) => a.split('/')[0]))].filter((d) => !routes.some((r) => r.domain === d))
  for (const domain of aliasDomains) {
    const wholeDomain = config.aliases.includes(domain)
    routes.push({
      domain,
      endpoints: localOnly,
      server: wholeDomain ? local.address.inNetworkUrl : `https://${domain}`,
      description: `${domain}: alias of the local registry${wholeDomain ? ' (no public fallback)' : ', then the registry at that domain'}`,
    })
  }
  return routes
}

/**
 * Hostname aliases (registry.dev.local): domains the local registry alone
 * serves, whose route has no public fallback (see registryRoutes).
 */
export function hostnameAliases(config: Config): string[] {
  const mirrored = new Set(config.registries.map((r) => r.upstreamDomain))
  return config.aliases.filter((a) => !a.includes('/') && !mirrored.has(a))
}
