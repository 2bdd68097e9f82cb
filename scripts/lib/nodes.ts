// Inside a cluster node's container: the files devreg writes there, and what
// its containerd holds and reads. Both providers' nodes run containerd.
import { parse as parseToml } from 'smol-toml'
import type { Runner } from './exec.ts'
import { template } from './templates.ts'

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
 * The hosts directory CRI pulls read, from `containerd config dump` parsed as
 * TOML: containerd 2.x migrates the kind patch to the CRI images plugin (and
 * prints single-quoted strings), 1.x keeps it under the CRI plugin. The
 * transfer service's own config_path is not what the kubelet's pulls use.
 */
export function criConfigPath(dump: string): string | null {
  let doc: Record<string, unknown>
  try {
    doc = parseToml(dump)
  } catch {
    return null
  }
  const plugins = (doc.plugins ?? {}) as Record<string, { registry?: { config_path?: unknown } }>
  for (const plugin of ['io.containerd.cri.v1.images', 'io.containerd.grpc.v1.cri']) {
    const path = plugins[plugin]?.registry?.config_path
    if (typeof path === 'string') return path || null
  }
  return null
}

/** The hosts directory the node's containerd reads for CRI pulls, as its effective config says; null when it cannot be read. */
export async function nodeCertsD(run: Runner, node: string): Promise<string | null> {
  const dump = await run.probe(['docker', 'exec', node, 'containerd', 'config', 'dump'])
  return dump.ok ? criConfigPath(dump.stdout) : null
}
