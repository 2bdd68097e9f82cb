// Inside a cluster node's container: the files devreg writes there, and what
// its containerd holds and reads. Both providers' nodes run containerd.
import { parse as parseToml } from 'smol-toml'
import type { Runner } from '../core/exec.ts'
import { template } from '../core/templates.ts'

export type NodeFileEdit = { write: string; content: string } | { remove: string }

const NODE_FILES = template('node-files.sh')

/**
 * Every file change in a node in one exec (each is a docker round trip that
 * cluster creation waits for): templates/node-files.sh, with paths and
 * contents as arguments, never as script text.
 */
export async function editNodeFiles(run: Runner, node: string, edits: NodeFileEdit[]): Promise<void> {
  if (!edits.length) return
  const args = edits.flatMap((e) => ('write' in e ? ['write', e.write, e.content] : ['remove', e.remove]))
  await run.change(['docker', 'exec', node, 'sh', '-c', NODE_FILES, 'node-files', ...args])
}

/**
 * The image digests a node's containerd holds (k8s.io namespace), as ctr
 * lists them; null when it cannot be asked. k3s's ctr finds its own socket.
 */
export async function nodeImageDigests(run: Runner, node: string): Promise<Set<string> | null> {
  const r = await run.probe(['docker', 'exec', node, 'ctr', '--namespace', 'k8s.io', 'images', 'list'])
  if (!r.ok) return null
  return new Set(r.stdout.match(/sha256:[0-9a-f]{64}/g) ?? [])
}

/**
 * What containerd 2.3 and later read when the config sets neither config_path
 * nor the legacy mirrors (plugins/cri/images/plugin.go). The default is
 * applied at start and never shown: `containerd config dump` prints
 * config_path = '' all the same.
 */
export const CONTAINERD_DEFAULT_CONFIG_PATH = '/etc/containerd/certs.d:/etc/docker/certs.d'

/** Major and minor of `containerd --version` output ("containerd github.com/containerd/containerd/v2 v2.3.4 …"); null when unreadable. */
export function containerdVersion(text: string): [number, number] | null {
  const m = /\sv?(\d+)\.(\d+)\.\d+/.exec(text)
  return m ? [Number(m[1]), Number(m[2])] : null
}

/**
 * The hosts directories CRI pulls read (config_path may list several, joined
 * by ':'), from `containerd config dump` parsed as TOML: containerd 2.x
 * migrates the kind patch to the CRI images plugin (and prints single-quoted
 * strings), 1.x keeps it under the CRI plugin. The transfer service's own
 * config_path is not what the kubelet's pulls use. An empty config_path on
 * containerd 2.3 or later, with no legacy mirrors, is the built-in default.
 */
export function criConfigPath(dump: string, version: [number, number] | null = null): string | null {
  let doc: Record<string, unknown>
  try {
    doc = parseToml(dump)
  } catch {
    return null
  }
  const plugins = (doc.plugins ?? {}) as Record<string, { registry?: { config_path?: unknown; mirrors?: object } }>
  for (const plugin of ['io.containerd.cri.v1.images', 'io.containerd.grpc.v1.cri']) {
    const registry = plugins[plugin]?.registry
    if (typeof registry?.config_path !== 'string') continue
    if (registry.config_path) return registry.config_path
    const defaulted = version !== null && (version[0] > 2 || (version[0] === 2 && version[1] >= 3))
    return defaulted && !Object.keys(registry.mirrors ?? {}).length ? CONTAINERD_DEFAULT_CONFIG_PATH : null
  }
  return null
}

/** The hosts directories the node's containerd reads for CRI pulls, as its effective config and version say; null when unreadable. */
export async function nodeCertsD(run: Runner, node: string): Promise<string | null> {
  const [dump, version] = await Promise.all([
    run.probe(['docker', 'exec', node, 'containerd', 'config', 'dump']),
    run.probe(['docker', 'exec', node, 'containerd', '--version']),
  ])
  return dump.ok ? criConfigPath(dump.stdout, version.ok ? containerdVersion(version.stdout) : null) : null
}
