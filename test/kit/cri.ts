// Pulls the way the kubelet does: CRI runtime.v1.ImageService over a node's
// containerd socket (crictl is not in Debian). `ctr images pull` would skip
// CRI's registry config, and `ctr images rm` leaves CRI's references and
// content, so a test that pulls again must remove through CRI too.
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { $ } from 'zx'

export const CONTAINERD_SOCKET = '/run/containerd/containerd.sock'

export interface CriOptions {
  /** containerd's socket inside the node [default: /run/containerd/containerd.sock] */
  socketPath?: string
  /** Deadline of the call [default: 120 s for a pull, 10 s otherwise] */
  timeoutMs?: number
}

export interface CriImage {
  id: string
  repoTags: string[]
  repoDigests: string[]
  size: number
}

export interface CriPullResult {
  ok: boolean
  imageRef?: string
  /** The gRPC error, e.g. `5 NOT_FOUND: failed to pull and unpack image …` */
  error?: string
}

/** The host path of a node container's containerd socket, through the container's root in /proc. */
export async function criSocket(container: string, socketPath = CONTAINERD_SOCKET): Promise<string> {
  const pid = (await $({ quiet: true })`docker inspect --format ${'{{.State.Pid}}'} ${container}`).stdout.trim()
  if (!/^[1-9]\d*$/.test(pid)) throw new Error(`container ${container} is not running (pid ${pid})`)
  return `/proc/${pid}/root${socketPath}`
}

/**
 * A call whose request is one ImageSpec. Docker container names cannot start
 * with '/', so a `node` that does is a socket on this host (a containerd the test started).
 */
async function imageCall<T>(node: string, method: string, ref: string, opts: CriOptions): Promise<T> {
  const socket = node.startsWith('/') ? node : await criSocket(node, opts.socketPath)
  return criCall<T>(socket, method, { image: { image: ref } }, opts.timeoutMs ?? 10_000)
}

/**
 * Pulls `ref` through CRI in a node container (or at a socket path); a failed
 * pull is `ok: false` with the error, never an exception.
 */
export async function criPull(node: string, ref: string, opts: CriOptions = {}): Promise<CriPullResult> {
  try {
    const res = await imageCall<{ imageRef: string }>(node, 'PullImage', ref, { ...opts, timeoutMs: opts.timeoutMs ?? 120_000 })
    return { ok: true, imageRef: res.imageRef }
  } catch (err) {
    if (isGrpcError(err)) return { ok: false, error: err.message }
    throw err
  }
}

/** Removes an image through CRI; an image that is not there is not an error. */
export async function criRemove(node: string, ref: string, opts: CriOptions = {}): Promise<void> {
  try {
    await imageCall(node, 'RemoveImage', ref, opts)
  } catch (err) {
    // The CRI spec makes RemoveImage idempotent; tolerate runtimes that answer NOT_FOUND anyway.
    if (!(isGrpcError(err) && err.code === grpc.status.NOT_FOUND)) throw err
  }
}

/** The image CRI knows by `ref` (a tag, digest reference or image ID), or null. */
export async function criImageStatus(node: string, ref: string, opts: CriOptions = {}): Promise<CriImage | null> {
  return (await imageCall<{ image: CriImage | null }>(node, 'ImageStatus', ref, opts)).image
}

let definition: protoLoader.PackageDefinition | undefined

/** One unary call on a client of its own, closed afterwards so no open channel keeps a test process alive. */
async function criCall<T>(socket: string, method: string, request: object, timeoutMs: number): Promise<T> {
  definition ??= protoLoader.loadSync(fileURLToPath(new URL('cri.proto', import.meta.url)), { longs: Number, defaults: true })
  const m = (definition['runtime.v1.ImageService'] as grpc.ServiceDefinition)[method] as grpc.MethodDefinition<object, T>
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure())
  try {
    return await new Promise<T>((resolve, reject) => {
      const options = { deadline: Date.now() + timeoutMs }
      client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, request, new grpc.Metadata(), options, (err, res) =>
        err ? reject(err) : resolve(res as T),
      )
    })
  } finally {
    client.close()
  }
}

function isGrpcError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as grpc.ServiceError).code === 'number' && 'metadata' in err
}
