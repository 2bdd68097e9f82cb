// What the real k3d CLI (v5.9.0, from its Go module) needs in the rig's
// engine, offline: a k3s-like node image (test/images/k3s-node) and its helper
// images, handed to k3d through its own switches, and the environment that
// makes k3d keep the node image's own entrypoint. Built in the rig's engine
// when their inputs change; the engine's data root keeps them between runs.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { $ } from 'zx'
import { scratchContext } from '../images.ts'
import { contextDigest, digest, fileDigest } from './digest.ts'
import { rigDocker } from './engine.ts'
import { goProgram } from './go-programs.ts'

const IMAGES = join(import.meta.dir, '../../images')

/** What the k3s-like node's kubelet stand-in runs to register its Node (k3s.ts). */
const REGISTER_NODE = join(IMAGES, 'k3s-node/register-node.sh')

/** Every file under test/images/NAME, and `more`, for an image's tag: a changed file rebuilds the image. */
const sourceDigest = (name: string, more: string[] = []) => digest(contextDigest(join(IMAGES, name)), ...more)

async function build(ref: string, name: string, files: [from: string, to: string][]): Promise<string> {
  if ((await rigDocker(['image', 'inspect', ref])).exitCode === 0) return ref
  const ctx = await scratchContext(name, files)
  try {
    const r = await rigDocker(['build', '--quiet', '--tag', ref, ctx])
    if (r.exitCode !== 0) throw new Error(`building ${ref}: ${r.stderr.trim()}`)
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
  return ref
}

/**
 * The node image: containerd, runc and crictl from their modules, k3s.ts
 * compiled into /bin/k3s, and what k3s embeds, as programs: etcd,
 * kube-apiserver, kube-controller-manager, kubectl and CoreDNS from their
 * modules, with kubeadm for the certificates, openssl (this machine's) for a
 * joining agent's key and CSR, and register-node.sh.
 */
async function nodeImage(): Promise<string> {
  const containerd = await goProgram('containerd')
  const runc = await goProgram('runc')
  const crictl = await goProgram('crictl')
  const kubernetes = await goProgram('kubernetes')
  const kubectl = await goProgram('kubectl')
  const etcd = await goProgram('etcd')
  const coredns = await goProgram('coredns')
  const bun = process.versions.bun ?? 'node'
  const openssl = '/usr/bin/openssl'
  const ref = `devreg-rig/k3s-node:${sourceDigest('k3s-node', [containerd, runc, crictl, kubernetes, kubectl, etcd, coredns, bun, fileDigest(openssl)])}`
  if ((await rigDocker(['image', 'inspect', ref])).exitCode === 0) return ref
  const dir = mkdtempSync(join(tmpdir(), 'devreg-k3s-'))
  const k3s = join(dir, 'k3s')
  try {
    await $({ quiet: true })`${process.execPath} build --compile ${join(IMAGES, 'k3s-node/k3s.ts')} --outfile ${k3s}`
    return await build(ref, 'k3s-node', [
      [k3s, 'bin/k3s'],
      ...['containerd', 'containerd-shim-runc-v2', 'ctr'].map((b): [string, string] => [join(containerd, b), `bin/${b}`]),
      [join(runc, 'runc'), 'bin/runc'],
      [join(crictl, 'crictl'), 'bin/crictl'],
      ...['kubeadm', 'kube-apiserver', 'kube-controller-manager'].map((b): [string, string] => [join(kubernetes, b), `bin/${b}`]),
      [join(kubectl, 'kubectl'), 'bin/kubectl'],
      [join(etcd, 'etcd'), 'bin/etcd'],
      [join(coredns, 'coredns'), 'bin/coredns'],
      [openssl, 'bin/openssl'],
      [REGISTER_NODE, 'usr/local/libexec/kubernetes/register-node.sh'],
    ])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Environment for the real k3d CLI in the rig: k3d on PATH, its helper
 * images, and no entrypoint scripts of its own in the nodes (K3D_FIX_*: they
 * need iptables, mount and more; the node image's own entrypoint is what is
 * tested). k3d's other defaults hold in the rig: its engine has docker-init
 * (k3d runs every container with --init) and a default bridge of its own, so
 * `host-gateway` (k3d adds host.k3d.internal:host-gateway) resolves.
 * DEVREG_RIG_K3S_IMAGE names the node image for the tests' configs.
 */
export async function k3dEnv(path: string): Promise<Record<string, string>> {
  const k3d = await goProgram('k3d')
  const helper = await build(`devreg-rig/k3d-helper:${sourceDigest('k3d-helper')}`, 'k3d-helper', [
    [join(IMAGES, 'k3d-helper/entrypoint.sh'), 'entrypoint.sh'],
  ])
  return {
    PATH: `${k3d}:${path}`,
    DEVREG_RIG_K3S_IMAGE: await nodeImage(),
    K3D_IMAGE_TOOLS: helper,
    K3D_IMAGE_LOADBALANCER: helper,
    K3D_FIX_DNS: '0',
    K3D_FIX_MOUNTS: '0',
    K3D_FIX_CGROUPV2: '0',
  }
}
