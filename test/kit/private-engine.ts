// A Docker engine of one test's own: sid's dockerd 28 (test/kit/rig/packages.ts)
// in a network namespace of its own (never the host's: a second dockerd there
// can delete docker0) and a mount namespace of its own, where a temp dir is
// bind-mounted over /etc/docker. So the engine reads daemon.json and
// /etc/docker/certs.d from that dir, the machine's files are never touched,
// and a test writes the engine's config as plain files from the host.
// Not the rig's engine (test/kit/rig/engine.ts): its own name, socket, namespace
// and data root, removed by stop() whatever happened.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { $ } from 'zx'
import { isolatedDockerdArgs } from './rig/engine.ts'
import { hostTools } from './rig/packages.ts'

export interface PrivateEngine {
  name: string
  netnsPath: string
  /** DOCKER_HOST. */
  host: string
  /** What the engine sees as /etc/docker. */
  etcDocker: string
  daemonJson: string
  certsD: string
  log: string
  /** DOCKER_HOST and a PATH with the engine's own docker CLI first. */
  env: Record<string, string>
  pid: () => number
  /** Runs argv inside the engine's network namespace (its published ports are on that loopback). */
  run: (
    argv: string[],
    opts?: { env?: Record<string, string>; input?: string },
  ) => Promise<{ code: number; stdout: string; stderr: string }>
  docker: (...args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>
  stop: () => Promise<void>
}

const q = $({ quiet: true, nothrow: true })

/**
 * Starts the engine with `daemonJson` as its /etc/docker/daemon.json (add
 * `"features": {"containerd-snapshotter": true}` for the containerd image store).
 * `subnet` is a /16 prefix like "10.231" for its bridge and networks.
 */
export async function startPrivateEngine(opts: { daemonJson: string; subnet: string }): Promise<PrivateEngine> {
  const name = `devreg-hm-${randomBytes(3).toString('hex')}`
  const run = `/run/${name}`
  const base = join('/var/tmp', name)
  const etcDocker = join(base, 'etc-docker')
  mkdirSync(etcDocker, { recursive: true })
  mkdirSync(run, { recursive: true })
  writeFileSync(join(etcDocker, 'daemon.json'), opts.daemonJson)
  const netnsPath = `/run/netns/${name}`
  const tools = await hostTools()
  const env = { DOCKER_HOST: `unix://${run}/docker.sock`, PATH: `${tools}:${process.env.PATH}` }
  const log = join(base, 'dockerd.log')
  let pid = 0

  const exec = async (argv: string[], o: { env?: Record<string, string>; input?: string } = {}) => {
    const p = await $({
      quiet: true,
      nothrow: true,
      input: o.input ?? '',
      env: { ...process.env, ...env, ...o.env },
    })`nsenter --net=${netnsPath} ${argv}`
    return { code: p.exitCode ?? -1, stdout: p.stdout, stderr: p.stderr }
  }
  const engine: PrivateEngine = {
    name,
    netnsPath,
    host: env.DOCKER_HOST,
    etcDocker,
    daemonJson: join(etcDocker, 'daemon.json'),
    certsD: join(etcDocker, 'certs.d'),
    log,
    env,
    pid: () => pid,
    run: exec,
    docker: (...args) => exec(['docker', ...args]),
    stop: async () => {
      if (pid) {
        await q`kill ${pid}`
        for (let i = 0; i < 60 && (await q`kill -0 ${pid}`).exitCode === 0; i++) await Bun.sleep(250)
        if ((await q`kill -0 ${pid}`).exitCode === 0) await q`kill -9 ${pid}`
      }
      if (existsSync(netnsPath)) await q`ip netns delete ${name}`
      rmSync(run, { recursive: true, force: true })
      rmSync(base, { recursive: true, force: true })
    },
  }

  try {
    await $({ quiet: true })`ip netns add ${name}`
    await $({ quiet: true })`ip netns exec ${name} ip link set lo up`
    const args = [
      '--config-file',
      '/etc/docker/daemon.json',
      ...isolatedDockerdArgs({
        host: env.DOCKER_HOST,
        dataRoot: join(base, 'data'),
        runDir: run,
        bridge: `${opts.subnet}.0.1/24`,
        pool: `base=${opts.subnet}.0.0/16,size=24`,
        cgroupParent: name,
      }),
    ]
    // A mount namespace of its own with the temp dir as /etc/docker, then the network namespace.
    const script = 'set -e; mount --bind "$1" /etc/docker; ns="$2"; shift 2; exec nsenter --net="$ns" dockerd "$@"'
    const out = openSync(log, 'w')
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', etcDocker, netnsPath, ...args], {
      env: { ...process.env, PATH: env.PATH },
      stdio: ['ignore', out, out],
      detached: true,
    })
    child.unref()
    pid = child.pid ?? 0
    const deadline = Date.now() + 60_000
    while ((await engine.docker('version', '--format', '{{.Server.Version}}')).code !== 0) {
      if (child.exitCode !== null || Date.now() > deadline) {
        const tail = readFileSync(log, 'utf8').trim().split('\n').slice(-8).join('\n')
        throw new Error(`the private dockerd ${name} did not answer (log ${log}):\n${tail}`)
      }
      await Bun.sleep(250)
    }
    return engine
  } catch (err) {
    await engine.stop()
    throw err
  }
}
