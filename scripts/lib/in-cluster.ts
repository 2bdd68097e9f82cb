// What pods see of the registries. Nodes reach them through their mirror
// files; pods go through cluster DNS, which on k3d knows container names only
// as k3d recorded them at cluster start (NodeHosts), so devreg gives each
// registry a Service without a selector and an EndpointSlice holding the
// container's current address, re-applied on every dev-up.
import type { Config, Registry } from './config.ts'
import * as docker from './docker.ts'
import type { Result, Runner } from './exec.ts'
import { kubectl } from './kubectl.ts'
import { log, UserError } from './log.ts'
import { COREDNS_CUSTOM, corednsOverride, IN_CLUSTER_NAMESPACE, inClusterManifests, serviceHost, serviceName } from './render.ts'
import { hostnameAliases } from './routes.ts'

const notFound = (r: Result) => r.stderr.includes('(NotFound)')

/** kubectl apply's verdict lines that say something changed ("service/x created", "... configured"). */
export const appliedChanges = (out: string) =>
  out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => / (created|configured)$/.test(l))

/**
 * Applies the namespace, a Service and EndpointSlice per registry and, on k3d,
 * the hostname aliases in CoreDNS; returns what changed. A second run with the
 * same addresses changes nothing: kubectl reports each object `unchanged`.
 */
export async function applyInCluster(run: Runner, config: Config): Promise<string[]> {
  const addresses = await docker.networkAddresses(run, config.network)
  const endpoints: { registry: Registry; address: string }[] = []
  for (const r of config.registries) {
    const address = addresses.get(r.name) ?? (run.dryRun ? `ADDRESS-OF-${r.name}` : undefined)
    if (address) endpoints.push({ registry: r, address })
    else log.warn(`${r.name} has no address on network ${config.network}: pods cannot reach it until \`just dev-up\` runs again`)
  }
  const out = await run.change(kubectl(config, 'apply', '-f', '-'), { input: inClusterManifests(endpoints) })
  const changes = appliedChanges(out).map((l) => `${l} (namespace ${IN_CLUSTER_NAMESPACE})`)
  if (config.cluster.provider === 'k3d') changes.push(...(await ensureCorednsOverride(run, config)))
  const local = config.registries.find((r) => r.role === 'local') as Registry
  log.info(`   pods reach the local registry at ${serviceHost(local)}`)
  const aliases = hostnameAliases(config)
  if (config.cluster.provider === 'kind' && aliases.length)
    log.info(
      `   ${aliases.join(', ')} resolve${aliases.length === 1 ? 's' : ''} on the nodes only: kind's CoreDNS has no hook devreg could undo exactly, so pods use ${serviceHost(local)}`,
    )
  return changes
}

interface ConfigMapData {
  data?: Record<string, string>
}

/** kube-system/coredns-custom as data; null when it does not exist. */
async function readCorednsCustom(run: Runner, config: Config): Promise<ConfigMapData | null> {
  const { namespace, name } = COREDNS_CUSTOM
  const r = await run.probe(kubectl(config, 'get', 'configmap', name, '-n', namespace, '-o', 'json'))
  if (r.ok) return JSON.parse(r.stdout) as ConfigMapData
  if (notFound(r) || run.dryRun) return null
  throw new UserError(`cannot read ${namespace}/${name}: ${r.stderr.trim().split('\n')[0]}`)
}

/**
 * Keeps devreg's one key in k3s's coredns-custom ConfigMap equal to
 * corednsOverride(config): created with the ConfigMap when there is none,
 * else merge-patched, so keys others put there stay. CoreDNS's reload plugin
 * also re-reads imported files (coredns/coredns#3068), so no restart.
 */
async function ensureCorednsOverride(run: Runner, config: Config): Promise<string[]> {
  const { namespace, name, key } = COREDNS_CUSTOM
  const want = corednsOverride(config)
  const current = await readCorednsCustom(run, config)
  const has = current?.data?.[key]
  if ((has ?? null) === want) return []
  const where = `${namespace}/${name}`
  if (current === null) {
    const manifest = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { [key]: want } }
    await run.change(kubectl(config, 'apply', '-f', '-'), { input: JSON.stringify(manifest, null, 2) })
    return [`created ${where} with ${key} (hostname aliases resolve to the local registry's Service in pods)`]
  }
  await run.change(
    kubectl(config, 'patch', 'configmap', name, '-n', namespace, '--type', 'merge', '-p', JSON.stringify({ data: { [key]: want } })),
  )
  return [want === null ? `removed ${key} from ${where} (no hostname alias)` : `rewrote ${key} in ${where}`]
}

/**
 * What devreg applied in the cluster, removed: the devreg namespace (its
 * Services and EndpointSlices go with it) and devreg's key in coredns-custom
 * (the ConfigMap too when nothing else is in it). For `dev-down --purge`,
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
    } else if (!notFound(ns)) throw new Error(ns.stderr.trim().split('\n')[0])
    const { namespace, name, key } = COREDNS_CUSTOM
    const current = await readCorednsCustom(run, config)
    if (current?.data && key in current.data) {
      if (Object.keys(current.data).length === 1) await run.change(kubectl(config, 'delete', 'configmap', name, '-n', namespace))
      else
        await run.change(
          kubectl(config, 'patch', 'configmap', name, '-n', namespace, '--type', 'merge', '-p', JSON.stringify({ data: { [key]: null } })),
        )
      removed.push(`${key} of ${namespace}/${name}`)
    }
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
  if (notFound(res)) return { addresses: null, error: null }
  return { addresses: null, error: res.stderr.trim().split('\n')[0] || `kubectl exited ${res.exitCode}` }
}
