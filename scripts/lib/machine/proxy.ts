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

/**
 * This machine's addresses as devreg and its tools name them: loopback, and
 * 0.0.0.0, the server of the kubeconfig k3d writes (https://0.0.0.0:PORT, the
 * address it publishes the API on), which Go's proxy rules, and so kubectl's,
 * do not count as loopback.
 */
const THIS_MACHINE = ['localhost', '127.0.0.1', '::1', '0.0.0.0']

/**
 * Keeps devreg's own requests off the proxy: they go to its registries and its
 * clusters' API servers on this machine, which a corporate proxy cannot reach.
 * Bun's fetch reads the proxy variables and does not exempt loopback (Node's
 * fetch ignores them), and kubectl, started with this environment, would send
 * k3d's 0.0.0.0 to the proxy, so scripts extend NO_PROXY once, at start.
 */
export function bypassProxyForThisMachine(env: Record<string, string | undefined>): void {
  if (!usesProxy(env)) return
  const list = [...new Set([...(env.NO_PROXY || env.no_proxy || '').split(','), ...THIS_MACHINE].map((s) => s.trim()).filter(Boolean))]
  env.NO_PROXY = list.join(',')
  env.no_proxy = env.NO_PROXY
}
