// Inside a cluster node's container: the files devreg writes there, and what
// its containerd holds and reads, all read in one exec per node (each exec is a
// docker round trip a no-op dev-up waits for). Both providers' nodes run containerd.
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import type { Runner } from '../core/exec.ts'
import { readTextOrNull } from '../core/machine.ts'
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

/** The hosts directories a node's containerd reads for CRI pulls, from what observeNode read of it; null when unreadable. */
export function nodeCertsD(node: Pick<NodeSnapshot, 'containerd'>): string | null {
  const c = node.containerd
  return c ? criConfigPath(c.config, containerdVersion(c.version)) : null
}

const OBSERVE_NODE = template('observe-node.sh')

/** What to read from a node (and run in it) in its one exec: templates/observe-node.sh's sections. */
export interface NodeRead {
  /** Every DIR/DOMAIN/hosts.toml (a directory per registry domain). */
  hostsDir?: string
  /** Files read whole (k3s's registries.yaml). */
  files?: string[]
  /** `containerd --version` and `containerd config dump`. */
  containerd?: boolean
  /** containerd's proxy variables. */
  env?: boolean
  /**
   * verify's probe pulls: one `crictl pull` per reference, each within
   * `seconds`; with `after`, only once it settles true (hostsDir and files are
   * read meanwhile; containerd and env only after it settles).
   */
  pulls?: { seconds: number; refs: string[]; after?: Promise<boolean> }
}

/** A crictl pull in a node: its exit code and the first 400 characters of its output, on one line. */
export interface PullOutcome {
  rc: number
  out: string
}

/** What one exec read in a node. */
export interface NodeSnapshot {
  node: string
  /** DIR/DOMAIN → its hosts.toml, for each registry domain directory under hostsDir. */
  hostsFiles: Map<string, string>
  /** Path → content, for the files that exist. */
  files: Map<string, string>
  containerd: { version: string; config: string } | null
  /** containerd's proxy variables; null when not asked. */
  env: Record<string, string> | null
  /** The node's clock (seconds since the epoch) right before the probe pulls; null without pulls. */
  since: string | null
  pulls: Map<string, PullOutcome>
}

/** What a node that could not be read shows: nothing. */
export const emptySnapshot = (node: string): NodeSnapshot => ({
  node,
  hostsFiles: new Map(),
  files: new Map(),
  containerd: null,
  env: null,
  since: null,
  pulls: new Map(),
})

/** Everything `what` names, read from (and run in) `node` in one docker exec. */
export async function observeNode(run: Runner, node: string, what: NodeRead): Promise<NodeSnapshot> {
  const args = [
    ...(what.hostsDir ? ['hosts', what.hostsDir] : []),
    ...(what.files ?? []).flatMap((f) => ['file', f]),
    ...(what.containerd ? ['containerd'] : []),
    ...(what.env ? ['env'] : []),
    ...(what.pulls?.after ? ['gate'] : []),
    ...(what.pulls ? ['pull', String(what.pulls.seconds), ...what.pulls.refs] : []),
  ]
  const after = what.pulls?.after
  if (!after) {
    const r = await run.probe(['docker', 'exec', node, 'sh', '-c', OBSERVE_NODE, 'observe-node', ...args])
    return parseNodeOutput(node, r.stdout, what)
  }
  // The exec starts at once and reads hostsDir and files; the pulls, then containerd and env, wait for its stdin to say go.
  const exec = run.stream(['docker', 'exec', '-i', node, 'sh', '-c', OBSERVE_NODE, 'observe-node', ...args], { stdin: true })
  const out: Buffer[] = []
  exec.stdout.on('data', (chunk: Buffer) => out.push(chunk))
  exec.end((await after.catch(() => false)) ? 'go\n' : 'stop\n')
  await exec.done.catch(() => {})
  return parseNodeOutput(node, Buffer.concat(out).toString('utf8'), what)
}

/** observe-node.sh's records ("\x1eKIND ARG" lines, each followed by its content) as a snapshot. */
export function parseNodeOutput(node: string, stdout: string, what: NodeRead = {}): NodeSnapshot {
  const snapshot = emptySnapshot(node)
  const containerd = { version: '', config: '' }
  for (const record of stdout.split('\x1e').slice(1)) {
    const nl = record.indexOf('\n')
    const head = nl < 0 ? record : record.slice(0, nl)
    const body = nl < 0 ? '' : record.slice(nl + 1)
    const [kind, ...rest] = head.split(' ')
    const arg = rest.join(' ')
    if (kind === 'hosts') snapshot.hostsFiles.set(arg, body)
    else if (kind === 'file') snapshot.files.set(arg, body)
    else if (kind === 'containerd-version') containerd.version = body.trim()
    else if (kind === 'containerd-config') containerd.config = body
    else if (kind === 'env') snapshot.env = proxyEnv(body)
    else if (kind === 'since') snapshot.since = arg.trim()
    else if (kind === 'pull') {
      const m = /^(\d+) (\S+) ?(.*)$/s.exec(arg)
      if (m) snapshot.pulls.set(m[2], { rc: Number(m[1]), out: m[3].trim() })
    }
  }
  if (what.containerd && (containerd.version || containerd.config)) snapshot.containerd = containerd
  return snapshot
}

function proxyEnv(lines: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of lines.split('\n').filter((l) => l.includes('='))) {
    const [k, ...v] = line.split('=')
    env[k] = v.join('=')
  }
  return env
}

/** Where devreg keeps what it learnt about node images, by image ID (XDG Base Directory's state home). */
export function nodeImageFactsPath(env: Readonly<Record<string, string | undefined>>, imageId: string): string {
  const base = env.XDG_STATE_HOME?.startsWith('/') ? env.XDG_STATE_HOME : join(env.HOME || homedir(), '.local', 'state')
  return join(base, 'devreg', 'node-images', `${imageId.replace(/^sha256:/, '')}.json`)
}

/**
 * The hosts directories a node image's containerd reads with the image's own
 * config, before any cluster is made of it: asked once per image ID (one
 * `docker run --rm` of the image, never pulled, through observe-node.sh), then
 * read from devreg's state; undefined when the image is not here (or is no
 * containerd node), null when it reads none.
 */
export async function imageCertsD(run: Runner, image: string): Promise<string | null | undefined> {
  const id = await run.probe(['docker', 'image', 'inspect', '--format', '{{.Id}}', image])
  if (!id.ok || !id.stdout.trim()) return undefined
  const path = nodeImageFactsPath(run.env, id.stdout.trim())
  const known = await readTextOrNull(run.files, path).catch(() => null)
  try {
    if (known !== null) return (JSON.parse(known) as { certsD: string | null }).certsD
  } catch {
    // Not what devreg wrote: asked again and written anew.
  }
  // A container, however short-lived, is not for --dry-run to start.
  if (run.dryRun) return undefined
  const argv = ['docker', 'run', '--rm', '--pull', 'never', '--network', 'none', '--entrypoint', 'sh', image]
  const r = await run.probe([...argv, '-c', OBSERVE_NODE, 'observe-node', 'containerd'])
  const snapshot = parseNodeOutput(image, r.stdout, { containerd: true })
  if (!r.ok || !snapshot.containerd?.version) return undefined
  const certsD = nodeCertsD(snapshot)
  // Unwritable state only means asking again next time.
  await run.files
    .mkdir(dirname(path))
    .then(() => run.files.write(path, `${JSON.stringify({ image, containerd: snapshot.containerd?.version, certsD })}\n`))
    .catch(() => {})
  return certsD
}
