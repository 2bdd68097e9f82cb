// The rig's pod-capable kind node (issue 21, stage 2): the stage-1 node of
// kindest/node's containerd line with a real kubelet, CNI plugins and the
// control plane's images (test/images/kind-node-pods), so the real `kubeadm
// init` runs its static pods and addons. The control plane's images
// (test/images/kube-images) are built from the binaries the rig builds, tagged
// as kubeadm names them, and saved as one archive the node imports.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { rigDocker } from './engine.ts'
import { GO_PROGRAMS, goProgram } from './go-programs.ts'
import { baseImage, contextDigest, digest, imageExists, nodeImage } from './node-image.ts'

const IMAGES = join(import.meta.dir, '../../images')
const CONTEXT = join(IMAGES, 'kind-node-pods')
const KUBE_IMAGES = join(IMAGES, 'kube-images')

/** The stage of test/images/kube-images/Dockerfile an image kubeadm names is built from. */
const stageOf = (ref: string) => (ref.includes('/pause:') ? 'pause' : ref.includes('/coredns:') ? 'coredns' : 'control-plane')

/**
 * The images kubeadm's manifests and addons name (its own list for the
 * version), and the sandbox image the node's containerd config names.
 */
async function kubeadmImages(kubeadm: string): Promise<string[]> {
  const r = await $({ quiet: true })`${kubeadm} config images list --kubernetes-version ${GO_PROGRAMS.kubernetes.version}`
  const toml = readFileSync(join(IMAGES, 'kind-node/containerd-config.toml'), 'utf8')
  const sandbox = /sandbox_image\s*=\s*"([^"]+)"/.exec(toml)?.[1]
  return [...new Set([...r.stdout.split('\n').filter(Boolean), ...(sandbox ? [sandbox] : [])])]
}

/** Builds the control plane's images in the rig's engine and saves them, sharing their layer, to `archive`. */
async function saveKubeImages(binaries: Record<string, string>, refs: string[], archive: string): Promise<void> {
  const ctx = mkdtempSync(join(tmpdir(), 'devreg-kube-images-'))
  try {
    cpSync(KUBE_IMAGES, ctx, { recursive: true })
    mkdirSync(join(ctx, 'bin'))
    for (const [name, from] of Object.entries(binaries)) cpSync(from, join(ctx, 'bin', name))
    for (const stage of ['control-plane', 'coredns', 'pause']) {
      const tags = refs.filter((ref) => stageOf(ref) === stage).flatMap((ref) => ['--tag', ref])
      const args = ['build', '--quiet', '--build-arg', `BASE=${await baseImage()}`, '--target', stage, ...tags, ctx]
      const r = await rigDocker(args)
      if (r.exitCode !== 0) throw new Error(`building the ${stage} image: ${r.stderr.trim()}`)
    }
    const r = await rigDocker(['save', '--output', archive, ...refs])
    if (r.exitCode !== 0) throw new Error(`docker save ${refs.join(' ')}: ${r.stderr.trim()}`)
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
}

/** The pod-capable node image, built if missing. */
export async function podNodeImage(): Promise<string> {
  const node = await nodeImage('kindest')
  const dirs = {
    kubernetes: await goProgram('kubernetes'),
    kubelet: await goProgram('kubelet'),
    etcd: await goProgram('etcd'),
    coredns: await goProgram('coredns'),
    cni: await goProgram('cni'),
  }
  const ref = `devreg-rig/kind-node:pods-${digest(node, ...Object.values(dirs), contextDigest(CONTEXT), contextDigest(KUBE_IMAGES))}`
  if (await imageExists(ref)) return ref
  const ctx = mkdtempSync(join(tmpdir(), 'devreg-kind-node-pods-'))
  try {
    cpSync(CONTEXT, ctx, { recursive: true })
    cpSync(join(dirs.kubelet, 'kubelet'), join(ctx, 'kubelet/kubelet'))
    cpSync(dirs.cni, join(ctx, 'cni'), { recursive: true, filter: (p) => !p.endsWith('.complete') })
    mkdirSync(join(ctx, 'images'))
    const binaries = {
      'kube-apiserver': join(dirs.kubernetes, 'kube-apiserver'),
      'kube-controller-manager': join(dirs.kubernetes, 'kube-controller-manager'),
      'kube-scheduler': join(dirs.kubelet, 'kube-scheduler'),
      'kube-proxy': join(dirs.kubelet, 'kube-proxy'),
      etcd: join(dirs.etcd, 'etcd'),
      coredns: join(dirs.coredns, 'coredns'),
      // A shell for the pause image's script: Debian's busybox-static on the machine.
      busybox: '/bin/busybox',
    }
    const refs = await kubeadmImages(join(dirs.kubernetes, 'kubeadm'))
    await saveKubeImages(binaries, refs, join(ctx, 'images/kube-images.tar'))
    const r = await rigDocker(['build', '--quiet', '--build-arg', `NODE=${node}`, '--tag', ref, ctx])
    if (r.exitCode !== 0) throw new Error(`building ${ref}: ${r.stderr.trim()}`)
    return ref
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
}

if (import.meta.main) console.log(await podNodeImage())
