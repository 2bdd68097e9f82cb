// k3s's CoreDNS hook: its coredns-custom ConfigMap, whose `*.override` keys
// CoreDNS imports into its main server block. devreg keeps one key there so
// the hostname aliases resolve in pods to the local registry's Service.
import type { Config } from '../../core/config.ts'
import type { Runner } from '../../core/exec.ts'
import { UserError } from '../../core/log.ts'
import { kubectl, objectNotFound } from '../kubectl.ts'
import { COREDNS_CUSTOM, corednsOverride } from '../render.ts'

interface ConfigMapData {
  data?: Record<string, string>
}

/** kube-system/coredns-custom as data; null when it does not exist. */
async function readCorednsCustom(run: Runner, config: Config): Promise<ConfigMapData | null> {
  const { namespace, name } = COREDNS_CUSTOM
  const r = await run.probe(kubectl(config, 'get', 'configmap', name, '-n', namespace, '-o', 'json'))
  if (r.ok) return JSON.parse(r.stdout) as ConfigMapData
  if (objectNotFound(r) || run.dryRun) return null
  throw new UserError(`cannot read ${namespace}/${name}: ${r.stderr.trim().split('\n')[0]}`)
}

/**
 * Keeps devreg's one key in k3s's coredns-custom ConfigMap equal to
 * corednsOverride(config): created with the ConfigMap when there is none,
 * else merge-patched, so keys others put there stay. CoreDNS's reload plugin
 * also re-reads imported files (coredns/coredns#3068), so no restart.
 */
export async function ensureCorednsOverride(run: Runner, config: Config): Promise<string[]> {
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

/** devreg's key out of coredns-custom, and the ConfigMap with it when nothing else is in it; says what it removed. */
export async function removeCorednsOverride(run: Runner, config: Config): Promise<string[]> {
  const { namespace, name, key } = COREDNS_CUSTOM
  const current = await readCorednsCustom(run, config)
  if (!current?.data || !(key in current.data)) return []
  if (Object.keys(current.data).length === 1) await run.change(kubectl(config, 'delete', 'configmap', name, '-n', namespace))
  else
    await run.change(
      kubectl(config, 'patch', 'configmap', name, '-n', namespace, '--type', 'merge', '-p', JSON.stringify({ data: { [key]: null } })),
    )
  return [`${key} of ${namespace}/${name}`]
}
