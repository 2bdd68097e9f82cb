// kind node images for the rig, built in its private engine: a trixie root
// (mmdebstrap, cached as a tarball) with systemd, cri-tools' crictl,
// Kubernetes built from its modules (kubeadm, kubectl, the kubelet, CNI
// plugins, and the control plane's images: test/kit/rig/kube-images.ts), and
// one containerd line each (test/images/kind-node): kindest/node's containerd
// and runc built from their Go modules, Debian sid's 2.x and trixie's 1.7.
// Rebuilt only when their inputs change; the engine's data root keeps them
// between runs.
import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { contextDigest, digest } from './digest.ts'
import { rigDocker } from './engine.ts'
import { GO_PROGRAMS, goProgram } from './go-programs.ts'
import { kubeImagesArchive } from './kube-images.ts'
import { packageTree, RIG_CACHE } from './packages.ts'

const CONTEXT = join(import.meta.dir, '../../images/kind-node')

/**
 * What a kind node needs from Debian besides containerd; curl because
 * kindest/node has it and preflight uses it, openssl to read kubeadm's
 * certificates in a node.
 */
const ROOT_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'bash',
  'procps',
  'iproute2',
  'iptables',
  'util-linux',
  'mount',
  'kmod',
  'ca-certificates',
  'libseccomp2',
  'curl',
  'openssl',
]

/**
 * The containerd lines the node tests run on, the first the default: what
 * kindest/node v1.37 ships (kind v0.33.0's images/base pins containerd v2.3.4
 * and runc v1.4.3), Debian sid's 2.x and Debian stable's 1.7.
 */
export const CONTAINERD_LINES = ['kindest', 'sid', 'trixie'] as const
export type ContainerdLine = (typeof CONTAINERD_LINES)[number]

async function imageExists(ref: string): Promise<boolean> {
  return (await rigDocker(['image', 'inspect', ref])).exitCode === 0
}

/** The trixie root filesystem as an image in the rig's engine. */
async function baseImage(): Promise<string> {
  const ref = `devreg-rig/trixie-base:${digest(...ROOT_PACKAGES)}`
  if (await imageExists(ref)) return ref
  const tarball = join(RIG_CACHE, 'rootfs', `${ref.split(':')[1]}.tar`)
  if (!existsSync(tarball)) {
    mkdirSync(join(RIG_CACHE, 'rootfs'), { recursive: true })
    const partial = `${tarball}.partial`
    await $({
      quiet: true,
    })`mmdebstrap --format=tar --variant=minbase --include=${ROOT_PACKAGES.join(',')} --dpkgopt=${'path-exclude=/usr/share/man/*'} --dpkgopt=${'path-exclude=/usr/share/locale/*'} trixie ${partial} http://deb.debian.org/debian`
    renameSync(partial, tarball)
  }
  const r = await rigDocker(['import', tarball, ref])
  if (r.exitCode !== 0) throw new Error(`docker import ${tarball}: ${r.stderr.trim()}`)
  return ref
}

/** An input of a node image: what its tag is made of, and how it is laid out in the build context. */
interface Staged {
  key: string
  stage: (into: string) => void
}

/**
 * containerd for a line, laid out under the build context's containerd/ as
 * its Dockerfile copies it to /: Debian's packages bring binaries, the
 * systemd unit and libraries; the Go-built line its binaries in /usr/local
 * (where kindest/base puts them) and a unit of our own.
 */
async function containerdOf(line: ContainerdLine): Promise<Staged> {
  if (line === 'kindest') {
    const containerd = await goProgram('containerd')
    const runc = await goProgram('runc')
    return {
      key: `${GO_PROGRAMS.containerd.version}+runc-${GO_PROGRAMS.runc.version}:${containerd}:${runc}`,
      stage: (into) => {
        cpSync(containerd, join(into, 'usr/local/bin'), { recursive: true, filter: (p) => !p.endsWith('.complete') })
        mkdirSync(join(into, 'usr/local/sbin'), { recursive: true })
        cpSync(join(runc, 'runc'), join(into, 'usr/local/sbin/runc'))
        cpSync(join(CONTEXT, 'containerd.service'), join(into, 'etc/systemd/system/containerd.service'))
      },
    }
  }
  const tree = await packageTree(line === 'sid' ? 'containerd2' : 'containerd1')
  return {
    key: tree,
    // Binaries, the systemd unit and libraries only: docs and completions stay out.
    stage: (into) => {
      for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib'])
        if (existsSync(join(tree, dir))) cpSync(join(tree, dir), join(into, dir), { recursive: true, verbatimSymlinks: true })
    },
  }
}

/**
 * Kubernetes under the build context's kubernetes/ as its Dockerfile copies
 * it to /: the real kubeadm beside the wrapper kind calls as kubeadm, kubectl
 * and the kubelet where kindest/node has them, and the CNI plugins in
 * /opt/cni/bin. The control plane runs from the images in the archive.
 */
async function kubernetesOf(): Promise<Staged> {
  const dirs = {
    kubernetes: await goProgram('kubernetes'),
    kubectl: await goProgram('kubectl'),
    kubelet: await goProgram('kubelet'),
    cni: await goProgram('cni'),
  }
  return {
    key: Object.values(dirs).join(':'),
    stage: (into) => {
      const put = (from: string, to: string) => {
        mkdirSync(join(into, to, '..'), { recursive: true })
        cpSync(from, join(into, to))
      }
      put(join(dirs.kubernetes, 'kubeadm'), 'usr/local/libexec/kubernetes/kubeadm')
      put(join(dirs.kubectl, 'kubectl'), 'usr/bin/kubectl')
      put(join(dirs.kubelet, 'kubelet'), 'usr/bin/kubelet')
      cpSync(dirs.cni, join(into, 'opt/cni/bin'), { recursive: true, filter: (p) => !p.endsWith('.complete') })
    },
  }
}

/** The node image of one containerd line, built if missing; its inputs are copied only then (hundreds of MB). */
export async function nodeImage(line: ContainerdLine): Promise<string> {
  const base = await baseImage()
  const crictl = await goProgram('crictl')
  const containerd = await containerdOf(line)
  const kubernetes = await kubernetesOf()
  const images = await kubeImagesArchive(base)
  const ref = `devreg-rig/kind-node:${line}-${digest(base, containerd.key, crictl, kubernetes.key, images, contextDigest(CONTEXT))}`
  if (await imageExists(ref)) return ref
  const ctx = mkdtempSync(join(tmpdir(), 'devreg-kind-node-'))
  try {
    cpSync(CONTEXT, ctx, { recursive: true })
    containerd.stage(join(ctx, 'containerd'))
    kubernetes.stage(join(ctx, 'kubernetes'))
    // Where kubeadm.sh imports them from.
    mkdirSync(join(ctx, 'kubernetes/kind/images'), { recursive: true })
    cpSync(images, join(ctx, 'kubernetes/kind/images/kube-images.tar'))
    // kindest/node has cri-tools' crictl in /usr/local/bin.
    cpSync(join(crictl, 'crictl'), join(ctx, 'crictl'))
    const version = `KUBERNETES_VERSION=${GO_PROGRAMS.kubernetes.version}`
    const r = await rigDocker(['build', '--quiet', '--build-arg', `BASE=${base}`, '--build-arg', version, '--tag', ref, ctx])
    if (r.exitCode !== 0) throw new Error(`building ${ref}: ${r.stderr.trim()}`)
    return ref
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
}
