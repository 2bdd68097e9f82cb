// The control plane's images for the rig's kind nodes (test/images/kube-images):
// built from the binaries the rig builds from Kubernetes' modules, etcd's and
// CoreDNS's, tagged as kubeadm names them, and saved, sharing one layer, as
// the archive every node image carries and imports into its containerd before
// `kubeadm init` or `join` (test/images/kind-node/kubeadm.sh). Saved once into
// the rig's cache per set of inputs.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { contextDigest, digest, fileDigest } from './digest.ts'
import { rigDocker } from './engine.ts'
import { GO_PROGRAMS, goProgram } from './go-programs.ts'
import { RIG_CACHE } from './packages.ts'

const IMAGES = join(import.meta.dir, '../../images')
const CONTEXT = join(IMAGES, 'kube-images')

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

/** The binaries the images run, by name: the servers, kube-proxy, kubectl, etcd, CoreDNS, and busybox for the scripts' shell. */
async function binaries(): Promise<Record<string, string>> {
  const kubernetes = await goProgram('kubernetes')
  const kubelet = await goProgram('kubelet')
  return {
    // For the pod network's route keeper (pod-routes.sh).
    kubectl: join(await goProgram('kubectl'), 'kubectl'),
    'kube-apiserver': join(kubernetes, 'kube-apiserver'),
    'kube-controller-manager': join(kubernetes, 'kube-controller-manager'),
    'kube-scheduler': join(kubelet, 'kube-scheduler'),
    'kube-proxy': join(kubelet, 'kube-proxy'),
    etcd: join(await goProgram('etcd'), 'etcd'),
    coredns: join(await goProgram('coredns'), 'coredns'),
    // Debian's busybox-static on the machine.
    busybox: '/bin/busybox',
  }
}

const archives = new Map<string, Promise<string>>()

/**
 * The archive of the control plane's images, built in the rig's engine when
 * missing; `base` is the node's Debian root, kube-proxy's iptables comes from it.
 * Found once per base in a run: every containerd line's node carries the same one.
 */
export function kubeImagesArchive(base: string): Promise<string> {
  if (!archives.has(base)) archives.set(base, archiveFor(base))
  return archives.get(base) as Promise<string>
}

async function archiveFor(base: string): Promise<string> {
  const bins = await binaries()
  if (!existsSync(bins.busybox)) throw new Error(`${bins.busybox} not found: apt-get install busybox-static (the pause image's shell)`)
  const refs = await kubeadmImages(join(await goProgram('kubernetes'), 'kubeadm'))
  // The Go programs' directories are named by version; Debian's busybox may change under its path.
  const inputs = [base, ...Object.values(bins).filter((b) => b !== bins.busybox), fileDigest(bins.busybox), ...refs, contextDigest(CONTEXT)]
  const archive = join(RIG_CACHE, 'kube-images', `${digest(...inputs)}.tar`)
  if (existsSync(archive)) return archive
  const ctx = mkdtempSync(join(tmpdir(), 'devreg-kube-images-'))
  try {
    cpSync(CONTEXT, ctx, { recursive: true })
    mkdirSync(join(ctx, 'bin'))
    for (const [name, from] of Object.entries(bins)) cpSync(from, join(ctx, 'bin', name))
    for (const stage of ['control-plane', 'coredns', 'pause']) {
      const tags = refs.filter((ref) => stageOf(ref) === stage).flatMap((ref) => ['--tag', ref])
      const r = await rigDocker(['build', '--quiet', '--build-arg', `BASE=${base}`, '--target', stage, ...tags, ctx])
      if (r.exitCode !== 0) throw new Error(`building the ${stage} image: ${r.stderr.trim()}`)
    }
    mkdirSync(join(RIG_CACHE, 'kube-images'), { recursive: true })
    const partial = `${archive}.partial-${process.pid}`
    const r = await rigDocker(['save', '--output', partial, ...refs])
    if (r.exitCode !== 0) {
      rmSync(partial, { force: true })
      throw new Error(`docker save ${refs.join(' ')}: ${r.stderr.trim()}`)
    }
    renameSync(partial, archive)
    return archive
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
}
