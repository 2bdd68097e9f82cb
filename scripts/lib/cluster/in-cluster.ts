// What pods and cluster tools see of the registries. Nodes reach them through
// their mirror files; pods go through cluster DNS, which on k3d knows container
// names only as k3d recorded them at cluster start (NodeHosts), so devreg gives
// each registry a Service without a selector and an EndpointSlice holding the
// container's current address, re-applied on every dev-up. Tools find the
// local registry in the KEP-1755 ConfigMap.
import type { Config, Registry } from '../core/config.ts'
import * as docker from '../core/docker.ts'
import type { Runner } from '../core/exec.ts'
import { log } from '../core/log.ts'
import { kubectl, objectNotFound } from './kubectl.ts'
import { providerOf } from './providers/index.ts'
import { IN_CLUSTER_NAMESPACE, inClusterManifests, registryHostingConfigMap, serviceAddress, serviceName } from './render.ts'

/**
 * kubectl apply of manifests devreg renders itself (render.ts), all of kinds
 * kubectl has compiled in: it needs no OpenAPI document from the server to
 * compute a patch from its own types, nor to check the manifests first, and
 * fetching those is most of a no-op apply's time (0.45 s of 0.5 s against
 * the rig's API server). Objects are still read and compared one by one.
 */
const OWN_MANIFESTS = ['--validate=false', '--openapi-patch=false']

/** The KEP-1755 ConfigMap's name (in kube-public). */
const REGISTRY_HOSTING = 'local-registry-hosting'

/** kubectl apply's verdict lines that say something changed ("service/x created", "... configured"). */
export const appliedChanges = (out: string) =>
  out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => / (created|configured)$/.test(l))

/** The KEP-1755 ConfigMap with the fields the config's provider publishes. */
export const registryHosting = (config: Config) => registryHostingConfigMap(providerOf(config).localRegistryHosting(config))

/**
 * Applies, in one `kubectl apply`, the KEP-1755 ConfigMap (so Tilt and others
 * find the local registry), the namespace, and a Service and EndpointSlice per
 * registry; and, where the provider's DNS has a hook for them, the hostname
 * aliases, at the same time. Returns what changed. A second run with the same
 * addresses changes nothing: kubectl reports each object `unchanged`. The
 * addresses are read from Docker unless the caller `known` them already.
 */
export async function applyInCluster(run: Runner, config: Config, known?: Map<string, string>): Promise<string[]> {
  const addresses = known ?? (await docker.networkAddresses(run, config.network))
  const endpoints: { registry: Registry; address: string }[] = []
  for (const r of config.registries) {
    const address = addresses.get(r.name) ?? (run.dryRun ? `ADDRESS-OF-${r.name}` : undefined)
    if (address) endpoints.push({ registry: r, address })
    else log.warn(`${r.name} has no address on network ${config.network}: pods cannot reach it until \`just dev-up\` runs again`)
  }
  const input = `${registryHosting(config)}---\n${inClusterManifests(endpoints)}`
  const [out, aliases] = await Promise.all([
    run.change(kubectl(config, 'apply', ...OWN_MANIFESTS, '-f', '-'), { input }),
    providerOf(config).ensurePodAliases(run, config),
  ])
  const hosting = (l: string) => l.startsWith(`configmap/${REGISTRY_HOSTING} `)
  const applied = appliedChanges(out)
  const local = config.registries.find((r) => r.role === 'local') as Registry
  log.info(`   pods reach the local registry at ${serviceAddress(local)}`)
  return [
    ...applied.filter(hosting).map((l) => `${REGISTRY_HOSTING} ConfigMap ${l.split(' ').pop()}`),
    ...applied.filter((l) => !hosting(l)).map((l) => `${l} (namespace ${IN_CLUSTER_NAMESPACE})`),
    ...aliases,
  ]
}

/**
 * What devreg applied in the cluster, removed: the devreg namespace (its
 * Services and EndpointSlices go with it) and what the provider's DNS hook
 * holds for the hostname aliases. For `dev-down --purge`,
 * right before the cluster is deleted: failures only warn, since deleting the
 * cluster removes them anyway. Returns what was removed.
 */
export async function removeInCluster(run: Runner, config: Config): Promise<string[]> {
  const removed: string[] = []
  const ns = await run.probe(kubectl(config, 'get', 'namespace', IN_CLUSTER_NAMESPACE, '-o', 'json'))
  if (ns.missing) {
    log.warn("kubectl not found: devreg's objects in the cluster go with the cluster")
    return removed
  }
  try {
    if (ns.ok || run.dryRun) {
      await run.change(kubectl(config, 'delete', 'namespace', IN_CLUSTER_NAMESPACE))
      removed.push(`namespace ${IN_CLUSTER_NAMESPACE}`)
    } else if (!objectNotFound(ns)) throw new Error(ns.stderr.trim().split('\n')[0])
    removed.push(...(await providerOf(config).removePodAliases(run, config)))
  } catch (err) {
    log.warn(
      `could not remove devreg's objects from the cluster (${(err as Error).message.split('\n')[0]}); deleting the cluster removes them`,
    )
  }
  return removed
}

/** The addresses a registry's EndpointSlice holds; an error when it cannot be read, null when there is none. */
export async function endpointSliceAddresses(
  run: Runner,
  config: Config,
  r: Registry,
): Promise<{ addresses: string[] | null; error: string | null }> {
  const res = await run.probe(kubectl(config, 'get', 'endpointslice', serviceName(r), '-n', IN_CLUSTER_NAMESPACE, '-o', 'json'))
  if (res.ok) {
    const slice = JSON.parse(res.stdout) as { endpoints?: { addresses?: string[] }[] }
    return { addresses: (slice.endpoints ?? []).flatMap((e) => e.addresses ?? []), error: null }
  }
  if (res.missing) return { addresses: null, error: 'kubectl not found' }
  if (objectNotFound(res)) return { addresses: null, error: null }
  return { addresses: null, error: res.stderr.trim().split('\n')[0] || `kubectl exited ${res.exitCode}` }
}
