// The docker CLI, as devreg uses it. Reads are probes (they run under
// --dry-run too); everything that changes state goes through run.change.

import { ProgramNotFound, type Result, type Runner } from './exec.ts'
import { LABEL } from './labels.ts'
import { UserError } from './log.ts'

export interface Container {
  id: string
  name: string
  state: string
  labels: Record<string, string>
  networks: string[]
  ports: string
  image: string
}

/** What `docker run` needs; secrets only by name: their values travel in the docker CLI's environment. */
export interface RunSpec {
  name: string
  args: string[]
  /** Container variables (`--env NAME` in args) whose values runContainer is handed. */
  secretEnv: string[]
}

export function isOwned(c: Container): boolean {
  return c.labels[LABEL.managed] === 'true'
}

/** What to do when the docker CLI or daemon is missing. */
function daemonError(r: Result): UserError {
  if (r.missing) return new ProgramNotFound('docker')
  return new UserError(
    `the Docker daemon is not reachable (${firstLine(r.stderr)}): start Docker (e.g. \`sudo systemctl start docker\` or Docker Desktop), or check DOCKER_HOST`,
  )
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? ''
}

/**
 * All containers: one `docker ps` tells everything devreg needs to know, and
 * whether Docker is there at all. Under --dry-run without Docker: none.
 */
export async function listContainers(run: Runner): Promise<Container[]> {
  const r = await run.probe(['docker', 'ps', '--all', '--no-trunc', '--format', '{{json .}}'])
  if (!r.ok && run.dryRun) return []
  if (!r.ok) throw daemonError(r)
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const raw = JSON.parse(line) as Record<string, string>
      return {
        id: raw.ID,
        name: raw.Names,
        state: raw.State,
        labels: parseLabels(raw.Labels ?? ''),
        networks: (raw.Networks ?? '').split(',').filter(Boolean),
        ports: raw.Ports ?? '',
        image: raw.Image,
      }
    })
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const pair of text.split(',')) {
    const i = pair.indexOf('=')
    if (i > 0) labels[pair.slice(0, i)] = pair.slice(i + 1)
  }
  return labels
}

export async function networkExists(run: Runner, name: string): Promise<boolean> {
  return (await run.probe(['docker', 'network', 'inspect', '--format', '{{.Name}}', name])).ok
}

export async function inspect<T = Record<string, unknown>>(run: Runner, name: string): Promise<T | null> {
  const r = await run.probe(['docker', 'inspect', '--type', 'container', name])
  return r.ok ? (JSON.parse(r.stdout) as T[])[0] : null
}

/** Starts a container; secrets are handed to the docker CLI by environment, never on its command line. */
export async function runContainer(
  run: Runner,
  spec: RunSpec,
  secrets: Record<string, string>,
  network: string | null = null,
): Promise<void> {
  const missing = spec.secretEnv.filter((name) => !secrets[name])
  if (missing.length) throw new Error(`no value for ${missing.join(', ')} of ${spec.name}`)
  await run.change(['docker', 'run', '--detach', ...(network ? ['--network', network] : []), ...spec.args], { secretEnv: secrets })
}

export const removeContainer = (run: Runner, name: string) => run.change(['docker', 'rm', '--force', '--volumes=false', name])
export const startContainer = (run: Runner, name: string) => run.change(['docker', 'start', name])
export const stopContainer = (run: Runner, name: string) => run.change(['docker', 'stop', name])
export const renameContainer = (run: Runner, name: string, to: string) => run.change(['docker', 'rename', name, to])
/** Keeps Docker from starting a container again on its own (restart policy "no"). */
export const disableRestart = (run: Runner, name: string) => run.change(['docker', 'update', '--restart=no', name])
export const createNetwork = (run: Runner, name: string) =>
  run.change(['docker', 'network', 'create', '--label', `${LABEL.managed}=true`, name])
export const connectNetwork = (run: Runner, network: string, name: string) => run.change(['docker', 'network', 'connect', network, name])

/** The volume, created when missing; whether it was. */
export async function ensureVolume(run: Runner, name: string): Promise<boolean> {
  const exists = await run.probe(['docker', 'volume', 'inspect', '--format', '{{.Name}}', name])
  if (!exists.ok) await run.change(['docker', 'volume', 'create', '--label', `${LABEL.managed}=true`, name])
  return !exists.ok
}

export const removeVolume = (run: Runner, name: string) => run.change(['docker', 'volume', 'rm', name])

export async function volumeExists(run: Runner, name: string): Promise<boolean> {
  return (await run.probe(['docker', 'volume', 'inspect', '--format', '{{.Name}}', name])).ok
}

export interface HelperOptions {
  /** Where the volume is mounted. */
  at: string
  readOnly?: boolean
  workdir?: string
  /** Keep stdin open (a tar stream goes in). */
  stdin?: boolean
}

/**
 * `docker run` of a short-lived helper: `image` (the registry's own, so no
 * pull) with one volume mounted and no network, running `entrypoint args`.
 */
export function helperCommand(volume: string, image: string, opts: HelperOptions, entrypoint: string, ...args: string[]): string[] {
  return [
    'docker',
    'run',
    '--rm',
    ...(opts.stdin ? ['-i'] : []),
    '--network',
    'none',
    '--volume',
    `${volume}:${opts.at}${opts.readOnly ? ':ro' : ''}`,
    ...(opts.workdir ? ['--workdir', opts.workdir] : []),
    '--entrypoint',
    entrypoint,
    image,
    ...args,
  ]
}

/**
 * Bytes a volume holds, read through a short-lived helper container with the
 * volume mounted read-only (the host's /var/lib/docker is not reachable on
 * Docker Desktop or rootless Docker). `image` must have busybox du.
 */
export async function volumeBytes(run: Runner, volume: string, image: string): Promise<number | null> {
  const r = await run.probe(helperCommand(volume, image, { at: '/volume', readOnly: true }, 'du', '-sk', '/volume'))
  const kib = Number.parseInt(r.stdout, 10)
  return r.ok && Number.isFinite(kib) ? kib * 1024 : null
}

/** Reads a file inside a running container; null when it cannot. */
export async function readFileIn(run: Runner, container: string, path: string): Promise<string | null> {
  const r = await run.probe(['docker', 'exec', container, 'cat', path])
  return r.ok ? r.stdout : null
}

/** The IPv4 address of every container on a network, by container name; null when the network is not there. */
export async function networkMembers(run: Runner, network: string): Promise<Map<string, string> | null> {
  const r = await run.probe(['docker', 'network', 'inspect', '--format', '{{json .Containers}}', network])
  if (!r.ok) return null
  const containers = (JSON.parse(r.stdout) ?? {}) as Record<string, { Name: string; IPv4Address: string }>
  return new Map(Object.values(containers).map((c) => [c.Name, c.IPv4Address.split('/')[0]]))
}

/** networkMembers, empty when the network is not there. */
export const networkAddresses = async (run: Runner, network: string) => (await networkMembers(run, network)) ?? new Map<string, string>()

/** The registry mirrors the Docker daemon uses for docker.io (daemon.json registry-mirrors); null when it does not answer. */
export async function daemonMirrors(run: Runner): Promise<string[] | null> {
  const r = await run.probe(['docker', 'info', '--format', '{{json .RegistryConfig.Mirrors}}'])
  return r.ok ? ((JSON.parse(r.stdout) as string[] | null) ?? []) : null
}
