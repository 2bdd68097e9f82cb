// The docker CLI, as devreg uses it. Reads are probes (they run under
// --dry-run too); everything that changes state goes through exec.change.

import { change, changePipe, probe, type Result, settings } from './exec.ts'
import { EXIT, UserError } from './log.ts'
import type { ContainerSpec } from './render.ts'
import { LABEL, REGISTRY_DATA } from './render.ts'

export interface Container {
  id: string
  name: string
  state: string
  labels: Record<string, string>
  networks: string[]
  ports: string
  image: string
}

export function isOwned(c: Container): boolean {
  return c.labels[LABEL.managed] === 'true'
}

const INSTALL_DOCKER = 'install Docker (https://docs.docker.com/engine/install/) and start it, then run this again'

/** What to do when the docker CLI or daemon is missing. */
function daemonError(r: Result): UserError {
  if (r.exitCode === null) return new UserError(`docker not found on PATH: ${INSTALL_DOCKER}`)
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
export async function listContainers(): Promise<Container[]> {
  const r = await probe(['docker', 'ps', '--all', '--no-trunc', '--format', '{{json .}}'])
  if (!r.ok && settings.dryRun) return []
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

export async function networkExists(name: string): Promise<boolean> {
  return (await probe(['docker', 'network', 'inspect', '--format', '{{.Name}}', name])).ok
}

export async function inspect<T = Record<string, unknown>>(name: string): Promise<T | null> {
  const r = await probe(['docker', 'inspect', '--type', 'container', name])
  return r.ok ? (JSON.parse(r.stdout) as T[])[0] : null
}

/** Starts a container; secrets are handed to the docker CLI by environment, never on its command line. */
export async function runContainer(
  spec: ContainerSpec,
  env: Record<string, string | undefined>,
  network: string | null = null,
): Promise<void> {
  const secrets: Record<string, string> = {}
  for (const [name, from] of Object.entries(spec.secretEnv)) {
    const value = env[from]
    if (value === undefined || value === '')
      throw new UserError(
        `${from} is not set: export it (the credentials of ${spec.name}), or remove credentials from the config`,
        EXIT.usage,
      )
    secrets[name] = value
  }
  await change(['docker', 'run', '--detach', ...(network ? ['--network', network] : []), ...spec.args], { secretEnv: secrets })
}

export const removeContainer = (name: string) => change(['docker', 'rm', '--force', '--volumes=false', name])
export const startContainer = (name: string) => change(['docker', 'start', name])
export const stopContainer = (name: string) => change(['docker', 'stop', name])
export const renameContainer = (name: string, to: string) => change(['docker', 'rename', name, to])
/** Keeps Docker from starting a container again on its own (restart policy "no"). */
export const disableRestart = (name: string) => change(['docker', 'update', '--restart=no', name])
export const createNetwork = (name: string) => change(['docker', 'network', 'create', '--label', `${LABEL.managed}=true`, name])
export const connectNetwork = (network: string, name: string) => change(['docker', 'network', 'connect', network, name])

export async function ensureVolume(name: string): Promise<void> {
  const exists = await probe(['docker', 'volume', 'inspect', '--format', '{{.Name}}', name])
  if (!exists.ok) await change(['docker', 'volume', 'create', '--label', `${LABEL.managed}=true`, name])
}

export const removeVolume = (name: string) => change(['docker', 'volume', 'rm', name])

export async function volumeExists(name: string): Promise<boolean> {
  return (await probe(['docker', 'volume', 'inspect', '--format', '{{.Name}}', name])).ok
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
export async function volumeBytes(volume: string, image: string): Promise<number | null> {
  const r = await probe(helperCommand(volume, image, { at: '/volume', readOnly: true }, 'du', '-sk', '/volume'))
  const kib = Number.parseInt(r.stdout, 10)
  return r.ok && Number.isFinite(kib) ? kib * 1024 : null
}

/** Copies a container's registry data (from a volume or its own filesystem) into a volume. */
export async function copyRegistryData(from: string, volume: string, image: string): Promise<void> {
  // docker cp emits a tar whose top entry is "registry/"; extracting it under
  // /var/lib lands the content in the volume mounted at /var/lib/registry.
  await changePipe(
    ['docker', 'cp', `${from}:${REGISTRY_DATA}`, '-'],
    helperCommand(volume, image, { at: REGISTRY_DATA, stdin: true }, 'tar', '-x', '-C', '/var/lib'),
  )
}

/** Reads a file inside a running container; null when it cannot. */
export async function readFileIn(container: string, path: string): Promise<string | null> {
  const r = await probe(['docker', 'exec', container, 'cat', path])
  return r.ok ? r.stdout : null
}

/**
 * distribution's own garbage-collect on a registry volume, in a helper
 * container while the registry itself is stopped (it must serve no writes).
 * `remove` are paths under repositories/ deleted first: a tag's directory
 * (distribution 2.8 deletes tags only with their manifest) or a whole cached
 * repository (a proxy refuses API deletes). garbage-collect walks storage
 * directly, so it works on a cache whose delete setting is off.
 */
export async function garbageCollect(volume: string, image: string, remove: string[]): Promise<void> {
  const script = `cd ${REGISTRY_DATA}/docker/registry/v2/repositories 2>/dev/null || exit 0
for p; do rm -rf -- "$p"; done
for c in /etc/distribution/config.yml /etc/docker/registry/config.yml; do [ -f "$c" ] && exec registry garbage-collect "$c"; done
echo "no registry config in /etc/distribution or /etc/docker/registry" >&2; exit 1`
  await change(helperCommand(volume, image, { at: REGISTRY_DATA }, 'sh', '-c', script, 'sh', ...remove))
}

/** The IPv4 address of every container on a network, by container name; empty when the network is not there. */
export async function networkAddresses(network: string): Promise<Map<string, string>> {
  const r = await probe(['docker', 'network', 'inspect', '--format', '{{json .Containers}}', network])
  if (!r.ok) return new Map()
  const containers = (JSON.parse(r.stdout) ?? {}) as Record<string, { Name: string; IPv4Address: string }>
  return new Map(Object.values(containers).map((c) => [c.Name, c.IPv4Address.split('/')[0]]))
}

/** The registry mirrors the Docker daemon uses for docker.io (daemon.json registry-mirrors); null when it does not answer. */
export async function daemonMirrors(): Promise<string[] | null> {
  const r = await probe(['docker', 'info', '--format', '{{json .RegistryConfig.Mirrors}}'])
  return r.ok ? ((JSON.parse(r.stdout) as string[] | null) ?? []) : null
}
