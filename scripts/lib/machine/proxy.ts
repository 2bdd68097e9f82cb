// Behind a corporate proxy. kind copies HTTP_PROXY, HTTPS_PROXY and NO_PROXY
// from its own environment into every node and adds only the network's
// subnets, the node names and .svc names to NO_PROXY (kind
// pkg/cluster/internal/providers/docker/provision.go, getProxyEnv); containerd
// in the node then sends pulls for http://kind-cache-docker-io:5000 to the
// proxy, which cannot reach a container on the cluster network.
import type { Config } from '../core/config.ts'

const PROXY_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']

/** Whether the environment sends HTTP through a proxy. */
export const usesProxy = (env: Record<string, string | undefined>) => PROXY_VARS.some((name) => Boolean(env[name]))

/**
 * The NO_PROXY (both spellings, as kind passes both) that keeps node pulls to
 * devreg's registries off the proxy: the user's list, then every registry's
 * container name. Empty when no proxy is set, so nothing changes for others.
 */
export function nodeNoProxy(config: Config, env: Record<string, string | undefined>): Record<string, string> {
  if (!usesProxy(env)) return {}
  const user = (env.NO_PROXY || env.no_proxy || '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const list = [...new Set([...user, ...config.registries.map((r) => r.name)])].join(',')
  return { NO_PROXY: list, no_proxy: list }
}

const LOOPBACK = ['localhost', '127.0.0.1', '::1']

/**
 * Keeps devreg's own requests off the proxy: they go to its registries on
 * this machine, which a corporate proxy cannot reach. Bun's fetch reads the
 * proxy variables and does not exempt loopback (Node's fetch ignores them),
 * so scripts extend NO_PROXY once, at start.
 */
export function bypassProxyForLoopback(env: Record<string, string | undefined>): void {
  if (!usesProxy(env)) return
  const list = [...new Set([...(env.NO_PROXY || env.no_proxy || '').split(','), ...LOOPBACK].map((s) => s.trim()).filter(Boolean))]
  env.NO_PROXY = list.join(',')
  env.no_proxy = env.NO_PROXY
}
