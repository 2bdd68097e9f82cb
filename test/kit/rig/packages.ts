// Debian packages the test rig needs from suites newer than the machine's own
// (kind 0.33, containerd 2, runc 1.3 and dockerd 28 from sid; containerd 1.7
// from trixie), fetched with a private apt configuration into a cache that
// outlives the run. The machine's own apt sources are never touched.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'

/** Downloads, built images and the private engine's data live here between runs. */
export const RIG_CACHE = process.env.DEVREG_RIG_CACHE || '/var/cache/devreg-rig'

export type Suite = 'sid' | 'trixie'

/** Package sets, each unpacked into a tree of its own. */
export const PACKAGES = {
  /** The private engine and the real kind CLI on the host (they run on bookworm's glibc). */
  host: { suite: 'sid', names: ['kind', 'docker.io', 'docker-cli', 'containerd'] },
  /** containerd 2.x and a runc new enough for it, inside trixie node images. */
  containerd2: { suite: 'sid', names: ['containerd', 'runc'] },
  /** Debian stable's containerd, for node images of the older line. */
  containerd1: { suite: 'trixie', names: ['containerd', 'runc'] },
} as const satisfies Record<string, { suite: Suite; names: readonly string[] }>

/** A week: sid moves, and a rig that never refreshes would test last month's containerd. */
const MAX_AGE_MS = 7 * 24 * 3600 * 1000

const aptOptions = (dir: string) => [
  '-o',
  `Dir::Etc::SourceList=${join(dir, 'sources.list')}`,
  '-o',
  'Dir::Etc::SourceParts=/dev/null',
  '-o',
  `Dir::State::Lists=${join(dir, 'lists')}`,
  '-o',
  `Dir::Cache=${join(dir, 'cache')}`,
  // Downloads land in a root-owned cache that apt's sandbox user cannot write.
  '-o',
  'APT::Sandbox::User=root',
]

async function updateLists(suite: Suite): Promise<string> {
  const dir = join(RIG_CACHE, 'apt', suite)
  const stamp = join(dir, 'updated')
  if (existsSync(stamp) && Date.now() - statSync(stamp).mtimeMs < MAX_AGE_MS) return dir
  mkdirSync(join(dir, 'lists/partial'), { recursive: true })
  mkdirSync(join(dir, 'cache/archives/partial'), { recursive: true })
  writeFileSync(join(dir, 'sources.list'), `deb http://deb.debian.org/debian ${suite} main\n`)
  const r = await $({ quiet: true, nothrow: true })`apt-get -q ${aptOptions(dir)} update`
  if (r.exitCode !== 0) {
    // Offline with lists from an earlier run: keep using what is cached.
    if (readdirSync(join(dir, 'lists')).some((f) => f.endsWith('Packages'))) return dir
    throw new Error(`apt-get update for Debian ${suite} failed: ${r.stderr.trim().split('\n').pop()}`)
  }
  writeFileSync(stamp, '')
  return dir
}

/**
 * The unpacked tree of one package set (usr/bin/…, usr/sbin/…), downloaded
 * and unpacked once per version: a changed version in the suite gives a new tree.
 */
export async function packageTree(set: keyof typeof PACKAGES): Promise<string> {
  const { suite, names } = PACKAGES[set]
  const dir = await updateLists(suite)
  const debs = join(RIG_CACHE, 'debs', suite)
  mkdirSync(debs, { recursive: true })
  const versions: string[] = []
  for (const name of names) {
    const policy = await $({ quiet: true })`apt-cache ${aptOptions(dir)} policy ${name}`
    const version = /Candidate: (\S+)/.exec(policy.stdout)?.[1]
    if (!version || version === '(none)') throw new Error(`Debian ${suite} has no package ${name}`)
    versions.push(`${name}_${version}`)
  }
  const tree = join(RIG_CACHE, 'trees', `${set}-${versions.join('-').replace(/[^A-Za-z0-9._-]/g, '_')}`)
  if (existsSync(join(tree, '.complete'))) return tree
  await $({ quiet: true, cwd: debs })`apt-get -q ${aptOptions(dir)} download ${names}`
  rmSync(tree, { recursive: true, force: true })
  mkdirSync(tree, { recursive: true })
  for (const [i, name] of names.entries()) {
    const version = versions[i].slice(name.length + 1).replace(/^\d+:/, '')
    const file = readdirSync(debs).find((f) => f.startsWith(`${name}_${version.replace(/:/g, '%3a')}_`))
    if (!file) throw new Error(`apt-get download ${name} left no .deb in ${debs}`)
    await $({ quiet: true })`dpkg-deb -x ${join(debs, file)} ${tree}`
  }
  writeFileSync(join(tree, '.complete'), `${versions.join('\n')}\n`)
  return tree
}

/**
 * A directory of the host tools the rig runs (kind, dockerd and its helpers,
 * containerd 2): sid's runc is left out, it needs a newer glibc than
 * bookworm's, and the host's runc serves the private engine.
 */
export async function hostTools(): Promise<string> {
  const tree = await packageTree('host')
  const bin = join(tree, '.bin')
  if (existsSync(join(bin, 'docker'))) return bin
  mkdirSync(bin, { recursive: true })
  for (const tool of [
    'usr/bin/kind',
    'usr/bin/docker',
    'usr/sbin/dockerd',
    'usr/sbin/docker-proxy',
    'usr/bin/docker-init',
    'usr/bin/containerd',
    'usr/bin/containerd-shim-runc-v2',
    'usr/bin/ctr',
  ])
    symlinkSync(join(tree, tool), join(bin, tool.split('/').pop() as string))
  return bin
}

if (import.meta.main) {
  console.log(await hostTools())
  for (const set of ['containerd2', 'containerd1'] as const) console.log(await packageTree(set))
}
