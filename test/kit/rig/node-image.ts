// kind node images for the rig, built in its private engine: a trixie root
// (mmdebstrap, cached as a tarball) with systemd, cri-tools' crictl, the
// control plane built from Kubernetes' modules (kubeadm, kube-apiserver,
// kube-controller-manager, kubectl, etcd, CoreDNS), and one containerd line
// each (test/images/kind-node): kindest/node's containerd and runc built from
// their Go modules, Debian sid's 2.x and trixie's 1.7.
// Rebuilt only when their inputs change; the engine's data root keeps them
// between runs.
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { rigDocker } from './engine.ts'
import { GO_PROGRAMS, goProgram } from './go-programs.ts'
import { packageTree, RIG_CACHE } from './packages.ts'

const CONTEXT = join(import.meta.dir, '../../images/kind-node')

/**
 * What a kind node needs from Debian besides containerd; curl because
 * kindest/node has it and preflight uses it, openssl for the key and CSR of a
 * joining node's TLS bootstrap (register-node.sh).
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

const digest = (...parts: string[]) => createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 12)

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

/** Every file of the build context, for the image's tag: a changed script rebuilds the image. */
function contextDigest(): string {
  const files: string[] = []
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else files.push(p.slice(CONTEXT.length), readFileSync(p, 'utf8'))
    }
  }
  walk(CONTEXT)
  return digest(...files)
}

/**
 * containerd for a line, laid out under the build context's containerd/ as
 * its Dockerfile copies it to /: Debian's packages bring binaries, the
 * systemd unit and libraries; the Go-built line its binaries in /usr/local
 * (where kindest/base puts them) and a unit of our own.
 */
async function stageContainerd(line: ContainerdLine, into: string): Promise<string> {
  if (line === 'kindest') {
    const containerd = await goProgram('containerd')
    const runc = await goProgram('runc')
    cpSync(containerd, join(into, 'usr/local/bin'), { recursive: true, filter: (p) => !p.endsWith('.complete') })
    mkdirSync(join(into, 'usr/local/sbin'), { recursive: true })
    cpSync(join(runc, 'runc'), join(into, 'usr/local/sbin/runc'))
    cpSync(join(CONTEXT, 'containerd.service'), join(into, 'etc/systemd/system/containerd.service'))
    return `${GO_PROGRAMS.containerd.version}+runc-${GO_PROGRAMS.runc.version}:${containerd}:${runc}`
  }
  const tree = await packageTree(line === 'sid' ? 'containerd2' : 'containerd1')
  // Binaries, the systemd unit and libraries only: docs and completions stay out.
  for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib'])
    if (existsSync(join(tree, dir))) cpSync(join(tree, dir), join(into, dir), { recursive: true, verbatimSymlinks: true })
  return tree
}

/**
 * The control plane under the build context's kubernetes/ as its Dockerfile
 * copies it to /: the servers in /usr/local/bin (where kubeadm.sh's services
 * run them), kubectl where kindest/node has it, and the real kubeadm beside
 * the wrapper that kind calls as kubeadm.
 */
async function stageKubernetes(into: string): Promise<string> {
  const dirs = { kubernetes: await goProgram('kubernetes'), kubectl: await goProgram('kubectl') }
  const more = { etcd: await goProgram('etcd'), coredns: await goProgram('coredns') }
  const put = (from: string, to: string) => {
    mkdirSync(join(into, to, '..'), { recursive: true })
    cpSync(from, join(into, to))
  }
  for (const bin of ['kube-apiserver', 'kube-controller-manager']) put(join(dirs.kubernetes, bin), `usr/local/bin/${bin}`)
  for (const [bin, dir] of Object.entries(more)) put(join(dir, bin), `usr/local/bin/${bin}`)
  put(join(dirs.kubernetes, 'kubeadm'), 'usr/local/libexec/kubernetes/kubeadm')
  put(join(dirs.kubectl, 'kubectl'), 'usr/bin/kubectl')
  return [...Object.values(dirs), ...Object.values(more)].join(':')
}

/** The node image of one containerd line, built if missing. */
export async function nodeImage(line: ContainerdLine): Promise<string> {
  const base = await baseImage()
  const crictl = await goProgram('crictl')
  const ctx = mkdtempSync(join(tmpdir(), 'devreg-kind-node-'))
  try {
    cpSync(CONTEXT, ctx, { recursive: true })
    const containerd = await stageContainerd(line, join(ctx, 'containerd'))
    const kubernetes = await stageKubernetes(join(ctx, 'kubernetes'))
    const ref = `devreg-rig/kind-node:${line}-${digest(base, containerd, crictl, kubernetes, contextDigest())}`
    if (await imageExists(ref)) return ref
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
