// The rig's private Docker engine: sid's dockerd 28 (kind needs --privileged,
// which bookworm's Docker 20.10 refuses on these machines) in a network
// namespace of its own. Never in the host's namespace: a second dockerd there
// can delete docker0 and break the main engine for everything on the machine,
// and the host's FORWARD DROP policy would drop traffic between its containers.
// Its published ports live on the namespace's loopback; tests that use them
// run inside the namespace (see test/run.ts).
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { hostTools, RIG_CACHE } from './packages.ts'

const NAME = 'devreg-rig'
const RUN = `/run/${NAME}`

export const ENGINE = {
  netns: NAME,
  netnsPath: `/run/netns/${NAME}`,
  host: `unix://${RUN}/docker.sock`,
  log: join(RIG_CACHE, 'dockerd.log'),
} as const

const q = $({ quiet: true, nothrow: true })

// Resolving the tools asks apt for versions: once per process is enough.
let tools: Promise<string> | null = null
const toolsDir = () => {
  tools ??= hostTools()
  return tools
}

/** The rig's docker CLI (sid's, the engine's own version), with the engine as its host. */
export async function rigDocker(args: string[], input?: string) {
  const docker = join(await toolsDir(), 'docker')
  return $({ quiet: true, nothrow: true, input })`${docker} -H ${ENGINE.host} ${args}`
}

const answers = async () => (await rigDocker(['version', '--format', '{{.Server.Version}}'])).exitCode === 0

/**
 * dockerd's flags for an engine in a network namespace of its own (the rig's,
 * and a test's private one): it touches no iptables and forwards nothing, and
 * its bridge, address pool, state and cgroup are its own.
 */
export function isolatedDockerdArgs(o: {
  host: string
  dataRoot: string
  runDir: string
  /** --bip: its docker0, inside its namespace. */
  bridge: string
  /** --default-address-pool. */
  pool: string
  cgroupParent: string
}): string[] {
  return [
    '--host',
    o.host,
    '--data-root',
    o.dataRoot,
    '--exec-root',
    `${o.runDir}/exec`,
    '--pidfile',
    `${o.runDir}/dockerd.pid`,
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
    '--default-address-pool',
    o.pool,
    '--bip',
    o.bridge,
    '--cgroup-parent',
    o.cgroupParent,
  ]
}

/** Starts the engine unless it runs; returns the PATH that puts kind and the engine's tools first. */
export async function startEngine(): Promise<{ path: string; started: boolean }> {
  const path = `${await toolsDir()}:${process.env.PATH}`
  if (await answers()) return { path, started: false }
  if (!existsSync(ENGINE.netnsPath)) {
    await $({ quiet: true })`ip netns add ${ENGINE.netns}`
    await $({ quiet: true })`ip netns exec ${ENGINE.netns} ip link set lo up`
  }
  mkdirSync(RUN, { recursive: true })
  const dataRoot = join(RIG_CACHE, 'docker')
  mkdirSync(dataRoot, { recursive: true })
  const out = openSync(ENGINE.log, 'w')
  // nsenter switches only the network namespace: the socket and data root are
  // plain files the host's docker CLI reaches. The engine keeps its default
  // bridge: in this namespace it is a docker0 of its own.
  const args = [
    `--net=${ENGINE.netnsPath}`,
    'dockerd',
    ...isolatedDockerdArgs({
      host: ENGINE.host,
      dataRoot,
      runDir: RUN,
      bridge: '10.212.0.1/24',
      pool: 'base=10.213.0.0/16,size=24',
      cgroupParent: NAME,
    }),
  ]
  const child = spawn('nsenter', args, { env: { ...process.env, PATH: path }, stdio: ['ignore', out, out], detached: true })
  child.unref()
  const deadline = Date.now() + 60_000
  while (!(await answers())) {
    if (Date.now() > deadline) {
      const tail = readFileSync(ENGINE.log, 'utf8').trim().split('\n').slice(-5).join('\n')
      throw new Error(`the rig's dockerd did not answer within 60 s (log ${ENGINE.log}):\n${tail}`)
    }
    await new Promise((r) => setTimeout(r, 300))
  }
  return { path, started: true }
}

/** Stops the engine and removes its namespace; what it stored (images) stays in the cache. */
export async function stopEngine(): Promise<void> {
  const pidfile = `${RUN}/dockerd.pid`
  if (existsSync(pidfile)) {
    const pid = Number(readFileSync(pidfile, 'utf8'))
    await q`kill ${pid}`
    for (let i = 0; i < 60 && (await q`kill -0 ${pid}`).exitCode === 0; i++) await new Promise((r) => setTimeout(r, 500))
  }
  if (existsSync(ENGINE.netnsPath)) await q`ip netns delete ${ENGINE.netns}`
}

/**
 * Removes every container, volume and network a test left in the rig (a run
 * killed halfway leaves some, and restart policies would bring them back).
 */
export async function pruneEngine(): Promise<void> {
  const containers = (await rigDocker(['ps', '-aq'])).stdout.split('\n').filter(Boolean)
  if (containers.length) await rigDocker(['rm', '-f', '-v', ...containers])
  await rigDocker(['volume', 'prune', '--all', '--force'])
  await rigDocker(['network', 'prune', '--force'])
}
