// Pulls the way the kubelet does: CRI runtime.v1.ImageService, through the
// node's own crictl (cri-tools', as kindest/node and k3s ship it; it finds
// containerd through /etc/crictl.yaml or CRI_CONFIG_FILE). `ctr images pull`
// would skip CRI's registry config, and `ctr images rm` leaves CRI's
// references and content, so a test that pulls again removes through CRI too.
import { $ } from 'zx'

export interface CriOptions {
  /** How long the pull may take [default: 120 s] */
  timeoutMs?: number
}

export interface CriPullResult {
  ok: boolean
  /** The image ID crictl reports, sha256:… */
  imageRef?: string
  /** crictl's error, e.g. `… failed to pull and unpack image …: not found` */
  error?: string
}

/** Pulls `ref` through CRI in a node container; a failed pull is `ok: false` with crictl's error, never an exception. */
export async function criPull(node: string, ref: string, opts: CriOptions = {}): Promise<CriPullResult> {
  const seconds = Math.max(1, Math.ceil((opts.timeoutMs ?? 120_000) / 1000))
  // timeout(1) in the node: crictl's own --timeout bounds the connection, not the pull.
  const r = await $({ quiet: true, nothrow: true })`docker exec ${node} timeout ${seconds} crictl pull ${ref}`
  if (r.exitCode === 0) return { ok: true, imageRef: /(sha256:[0-9a-f]{64})/.exec(r.stdout)?.[1] }
  const error = `${r.stderr}${r.stdout}`.trim() || `crictl pull exited ${r.exitCode}`
  return { ok: false, error: r.exitCode === 124 ? `timed out after ${seconds} s: ${error}` : error }
}

/** Removes an image through CRI; an image that is not there is not an error. */
export async function criRemove(node: string, ref: string): Promise<void> {
  const r = await $({ quiet: true, nothrow: true })`docker exec ${node} crictl rmi ${ref}`
  if (r.exitCode !== 0 && !/not found|no such image/i.test(r.stderr)) throw new Error(`crictl rmi ${ref} in ${node}: ${r.stderr.trim()}`)
}
