// The real programs the tests run, built from their Go modules with `go
// install MODULE/cmd/NAME@VERSION` (ordinary module use, like `npm install`
// of a CLI): distribution v3 as registry:3, cri-tools' crictl, kindest/node's
// containerd and runc, the k3d CLI, and the control plane the nodes run:
// Kubernetes' kubeadm, kube-apiserver, kube-controller-manager and kubectl,
// etcd and CoreDNS. Built once per version into the rig's cache, with GOCACHE
// and GOMODCACHE there too, so a second run builds nothing (the first takes
// about 10 minutes on 2 CPUs, most of it Kubernetes).
// Flags follow each project's own Makefile: version variables set by -ldflags
// (or the programs report "+unknown", kubeadm and kubectl "v0.0.0-master",
// and k3d asks for helper images tagged `latest`), cgo only where the program
// needs it.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { RIG_CACHE } from './packages.ts'

interface GoProgram {
  version: string
  /** Package paths, each installed as PATH@version; the binary is named after its last element. */
  packages: string[]
  cgo: boolean
  tags: string[]
  ldflags: string[]
  /**
   * Build in a wrapper module that requires this module at `version`, instead
   * of `go install PATH@version`. The same dependency versions (the module's
   * own go.mod decides them), for modules `go install` cannot take.
   */
  wrapper?: Wrapper
}

/**
 * A module of our own, generated at build time, that requires `module` at the
 * program's version; `go install` then builds the packages from inside it.
 */
interface Wrapper {
  module: string
  /**
   * The wrapper's own main.go, for a program whose main package sits in a
   * module with local replace directives, which `go install` refuses (etcd's
   * and CoreDNS's): a few lines calling the program's own entry point.
   */
  main?: string
  /** Replace directives of the wrapper: module path → version. */
  replace?: Record<string, string>
  /**
   * The version of every module that `module` replaces with a directory of
   * its own tree (Kubernetes requires its staging modules at v0.0.0 and
   * replaces each with ./staging/src/...): the list is read from the
   * module's go.mod, so a new Kubernetes brings its own.
   */
  staging?: string
}

/** Kubernetes' version variables, set in both packages that hold them, as its hack/lib/version.sh does. */
const kubernetesVersion = (version: string): string[] => {
  const [major, minor] = version.slice(1).split('.')
  return ['k8s.io/client-go/pkg/version', 'k8s.io/component-base/version'].flatMap((pkg) =>
    Object.entries({ gitVersion: version, gitMajor: major, gitMinor: minor }).flatMap(([k, v]) => ['-X', `${pkg}.${k}=${v}`]),
  )
}

/**
 * Kubernetes v1.36 (kind 0.33's v1.36 images; Debian sid's kubernetes-client is
 * 1.36 too), with every k8s.io module on its v0.36 line. Static, with the
 * tags of its hack/lib/golang.sh for release builds.
 */
const KUBERNETES = {
  version: 'v1.36.3',
  staging: 'v0.36.3',
  tags: ['selinux', 'notest', 'grpcnotrace'],
} as const

/** The k8s.io modules CoreDNS's kubernetes plugin uses, kept on the cluster's line (the proxy has none of CoreDNS's own v0.35.2). */
const K8S_CLIENT_MODULES = Object.fromEntries(['k8s.io/api', 'k8s.io/apimachinery', 'k8s.io/client-go'].map((m) => [m, KUBERNETES.staging]))

/** k3s line the k3d CLI names as its default image (version.K3sVersion); our k3s-like node stands in for it. */
export const K3S_VERSION = 'v1.36.2-k3s1'

export const GO_PROGRAMS = {
  /** registry:3: the official image runs distribution v3.1.1 (CGO off, as its Dockerfile builds it). */
  registry: {
    version: 'v3.1.1',
    packages: ['github.com/distribution/distribution/v3/cmd/registry'],
    cgo: false,
    tags: [],
    ldflags: ['-X', 'github.com/distribution/distribution/v3/version.version=v3.1.1'],
  },
  /** kind 0.33's base image names cri-tools v1.36.0. */
  crictl: {
    version: 'v1.36.0',
    packages: ['sigs.k8s.io/cri-tools/cmd/crictl'],
    cgo: false,
    tags: [],
    ldflags: ['-X', 'sigs.k8s.io/cri-tools/pkg/version.Version=v1.36.0'],
  },
  /**
   * kind v0.33.0's images/base pins containerd v2.3.4. Static, without btrfs
   * (cgo) and the CLI's doc generator, as containerd's Makefile builds it with STATIC=1.
   */
  containerd: {
    version: 'v2.3.4',
    packages: ['cmd/containerd', 'cmd/containerd-shim-runc-v2', 'cmd/ctr'].map((p) => `github.com/containerd/containerd/v2/${p}`),
    cgo: false,
    tags: ['urfave_cli_no_docs', 'no_btrfs', 'osusergo', 'netgo'],
    ldflags: ['-X', 'github.com/containerd/containerd/v2/version.Version=v2.3.4'],
  },
  /** kind v0.33.0 pins runc v1.4.3; runc needs cgo (nsenter, libseccomp: Debian's libseccomp-dev). */
  runc: {
    version: 'v1.4.3',
    packages: ['github.com/opencontainers/runc'],
    cgo: true,
    tags: ['seccomp', 'urfave_cli_no_docs'],
    ldflags: [],
  },
  /**
   * The k3d CLI, with the versions its Makefile sets, so it never asks for
   * `latest` helper images. In a wrapper module: `go install` also reads the
   * module's version list for deprecation notices, which the proxy refuses
   * for k3d (403 on /@v/list).
   */
  k3d: {
    version: 'v5.9.0',
    packages: ['github.com/k3d-io/k3d/v5'],
    cgo: false,
    tags: [],
    ldflags: ['-X', 'github.com/k3d-io/k3d/v5/version.Version=v5.9.0', '-X', `github.com/k3d-io/k3d/v5/version.K3sVersion=${K3S_VERSION}`],
    wrapper: { module: 'github.com/k3d-io/k3d/v5' },
  },
  /** The control plane of the rig's nodes (stage 1 of issue 21: no kubelet yet). */
  kubernetes: {
    version: KUBERNETES.version,
    packages: ['kubeadm', 'kube-apiserver', 'kube-controller-manager'].map((c) => `k8s.io/kubernetes/cmd/${c}`),
    cgo: false,
    tags: [...KUBERNETES.tags],
    ldflags: kubernetesVersion(KUBERNETES.version),
    wrapper: { module: 'k8s.io/kubernetes', staging: KUBERNETES.staging },
  },
  /**
   * The tests' kubectl, alone in its directory so it can go first on PATH:
   * built from the same Kubernetes, so client and server agree.
   */
  kubectl: {
    version: KUBERNETES.version,
    packages: ['k8s.io/kubernetes/cmd/kubectl'],
    cgo: false,
    tags: [...KUBERNETES.tags],
    ldflags: kubernetesVersion(KUBERNETES.version),
    wrapper: { module: 'k8s.io/kubernetes', staging: KUBERNETES.staging },
  },
  /** etcd 3.6 (kubeadm 1.36 defaults to 3.6.8); its main package is in etcd's root module, which replaces its siblings locally. */
  etcd: {
    version: 'v3.6.17',
    packages: ['.'],
    cgo: false,
    tags: [],
    ldflags: [],
    wrapper: {
      module: 'go.etcd.io/etcd/server/v3',
      main: 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n',
    },
  },
  /** CoreDNS as kubeadm 1.36 deploys it (its CoreDNSVersion), with every plugin of its plugin.cfg, as coredns's own main has them. */
  coredns: {
    version: 'v1.14.2',
    packages: ['.'],
    cgo: false,
    tags: [],
    ldflags: [],
    wrapper: {
      module: 'github.com/coredns/coredns',
      main: 'package main\n\nimport (\n\t_ "github.com/coredns/coredns/core/plugin"\n\t"github.com/coredns/coredns/coremain"\n)\n\nfunc main() { coremain.Run() }\n',
      replace: K8S_CLIENT_MODULES,
    },
  },
} as const satisfies Record<string, GoProgram>

export type GoProgramName = keyof typeof GO_PROGRAMS

const GO_DIR = join(RIG_CACHE, 'go')

/** The Go toolchain: on PATH, else where the go machines install it. */
async function goBinary(): Promise<string> {
  const onPath = await $({ quiet: true, nothrow: true })`command -v go`
  if (onPath.exitCode === 0) return onPath.stdout.trim()
  if (existsSync('/usr/local/go/bin/go')) return '/usr/local/go/bin/go'
  throw new Error(
    'go not found on PATH: the rig builds registry:3, crictl, containerd, runc, k3d, Kubernetes, etcd and CoreDNS from Go modules; install Go ≥ 1.26',
  )
}

const specDigest = (name: string, p: GoProgram) =>
  createHash('sha256')
    .update(JSON.stringify([name, p]))
    .digest('hex')
    .slice(0, 10)

/** The modules `module`'s go.mod replaces with directories of its own tree, read from its go.mod in the module cache. */
async function stagingModules(go: string, env: NodeJS.ProcessEnv, module: string, version: string): Promise<string[]> {
  const r = await $({ quiet: true, env, cwd: GO_DIR })`${go} mod download -json ${`${module}@${version}`}`
  const goMod = readFileSync((JSON.parse(r.stdout) as { GoMod: string }).GoMod, 'utf8')
  return [...goMod.matchAll(/^\s*(\S+)\s+=>\s+\.\/staging\/\S+\s*$/gm)].map((m) => m[1])
}

/**
 * The wrapper module of a program, written afresh: it requires `module` at
 * `version` (with the replace directives and main.go the spec asks for), and
 * is named devreg.test/build/NAME, so a main of its own builds as NAME.
 */
async function wrapperModule(name: string, w: Wrapper, version: string, go: string, env: NodeJS.ProcessEnv): Promise<string> {
  const dir = join(GO_DIR, 'wrappers', `${name}-${version}`)
  mkdirSync(dir, { recursive: true })
  const replace = { ...w.replace }
  if (w.staging) for (const m of await stagingModules(go, env, w.module, version)) replace[m] = w.staging
  const replaces = Object.entries(replace).map(([m, v]) => `replace ${m} => ${m} ${v}\n`)
  writeFileSync(
    join(dir, 'go.mod'),
    [`module devreg.test/build/${name}\n\ngo 1.26\n\nrequire ${w.module} ${version}\n`, ...replaces].join('\n'),
  )
  if (w.main) writeFileSync(join(dir, 'main.go'), w.main)
  else rmSync(join(dir, 'main.go'), { force: true })
  return dir
}

/** The directory holding a program's binaries, built on first use. */
export async function goProgram(name: GoProgramName): Promise<string> {
  const p: GoProgram = GO_PROGRAMS[name]
  const dir = join(GO_DIR, 'bin', `${name}-${p.version}-${specDigest(name, p)}`)
  if (existsSync(join(dir, '.complete'))) return dir
  const go = await goBinary()
  const partial = `${dir}.partial-${process.pid}`
  rmSync(partial, { recursive: true, force: true })
  mkdirSync(partial, { recursive: true })
  const env = {
    ...process.env,
    GOBIN: partial,
    GOCACHE: join(GO_DIR, 'cache'),
    GOMODCACHE: join(GO_DIR, 'mod'),
    // Module files stay deletable, and no other toolchain is fetched.
    GOFLAGS: '-modcacherw',
    GOTOOLCHAIN: 'local',
    CGO_ENABLED: p.cgo ? '1' : '0',
  }
  const started = Date.now()
  const targets = p.wrapper ? p.packages : p.packages.map((pkg) => `${pkg}@${p.version}`)
  const flags = [...(p.tags.length ? ['-tags', p.tags.join(',')] : []), '-trimpath', '-ldflags', ['-s', '-w', ...p.ldflags].join(' ')]
  // -mod=mod: the wrapper's go.sum starts empty and fills from the proxy's checksums.
  const cwd = p.wrapper ? await wrapperModule(name, p.wrapper, p.version, go, env) : GO_DIR
  const r = await $({ quiet: true, nothrow: true, env, cwd })`${go} install ${p.wrapper ? ['-mod=mod'] : []} ${flags} ${targets}`
  if (r.exitCode !== 0) {
    rmSync(partial, { recursive: true, force: true })
    throw new Error(`go install ${targets.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`)
  }
  writeFileSync(join(partial, '.complete'), `${targets.join('\n')}\n`)
  rmSync(dir, { recursive: true, force: true })
  renameSync(partial, dir)
  process.stderr.write(`rig: built ${name} ${p.version} from Go modules in ${Math.round((Date.now() - started) / 1000)} s\n`)
  return dir
}

/** Builds every program not yet cached, one after another (each build uses every CPU). */
export async function buildGoPrograms(): Promise<Record<GoProgramName, string>> {
  const dirs = {} as Record<GoProgramName, string>
  for (const name of Object.keys(GO_PROGRAMS) as GoProgramName[]) dirs[name] = await goProgram(name)
  return dirs
}

/** Each program's own word on its version, one line each (`registry --version`, `k3d version`, …). */
export async function programVersions(dirs: Record<GoProgramName, string>): Promise<string[]> {
  const ask: [GoProgramName, string, string[]][] = [
    ['registry', 'registry', ['--version']],
    ['crictl', 'crictl', ['--version']],
    ['containerd', 'containerd', ['--version']],
    ['runc', 'runc', ['--version']],
    ['k3d', 'k3d', ['version']],
    ['kubernetes', 'kube-apiserver', ['--version']],
    ['kubectl', 'kubectl', ['version', '--client']],
    ['etcd', 'etcd', ['--version']],
    ['coredns', 'coredns', ['-version']],
  ]
  return Promise.all(
    ask.map(async ([name, bin, args]) => {
      const r = await $({ quiet: true, nothrow: true })`${join(dirs[name], bin)} ${args}`
      // registry prints its own path first.
      const said = (r.stdout.trim() || r.stderr.trim()).replaceAll(`${dirs[name]}/`, '')
      return `${bin}: ${said.split('\n').join('; ')}`
    }),
  )
}

if (import.meta.main) console.log(JSON.stringify(await buildGoPrograms(), null, 2))
