// Containerd nodes without Kubernetes: a container of devreg-test/node (or
// another node image) whose init starts real containerd once a config is
// written. The bench's pull measurements run on them.
import { $ } from 'zx'
import { NODE_IMAGE } from './images.ts'

/** Starts a node container: real containerd, started by the image's init once a config is written. */
export async function startNode(name: string, network: string, labels: Record<string, string>, image = NODE_IMAGE): Promise<void> {
  const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])
  // --privileged fails on these machines; containerd needs SYS_ADMIN for its mounts.
  await $({ quiet: true })`docker run -d --name ${name} --hostname ${name} --network ${network} --cap-add SYS_ADMIN ${labelArgs} ${image}`
}

export async function writeIn(node: string, path: string, content: string): Promise<void> {
  await $({ quiet: true, input: content })`docker exec -i ${node} sh -c ${'mkdir -p "$(dirname "$1")" && cat > "$1"'} sh ${path}`
}

/** Waits until the node's containerd answers. */
export async function waitContainerd(node: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await $({ quiet: true, nothrow: true })`docker exec ${node} ctr version`).exitCode !== 0) {
    if (Date.now() > deadline) throw new Error(`containerd in ${node} did not start`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/**
 * containerd 1.6's config (version 2) as a node image ships it: overlayfs,
 * runc, and no registry settings: kind's patch must add config_path.
 */
export const BASE_CONTAINERD_CONFIG = `version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
`
