// Pure functions from the validated config to the things devreg writes:
// registry container specs now; cluster files build on the same pattern.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Registry } from './config.ts'
import { ROOT } from './config.ts'

export const LABEL = {
  managed: 'devreg.managed',
  role: 'devreg.role',
  hash: 'devreg.config-hash',
  upstreamHost: 'devreg.upstream-host',
} as const

/** The cache entrypoint: serves read-only while the upstream is unreachable (distribution #4038). */
export const CACHE_ENTRYPOINT = readFileSync(`${ROOT}templates/cache-entrypoint.sh`, 'utf8')

/** Where distribution keeps its data in the registry:2 image. */
export const REGISTRY_DATA = '/var/lib/registry'
const REGISTRY_CONFIG = '/etc/docker/registry/config.yml'

export interface ContainerSpec {
  name: string
  /** Arguments after `docker run -d`, secrets only as variable names. */
  args: string[]
  /** Environment variables the docker CLI must carry, name → name of devreg's variable holding the value. */
  secretEnv: Record<string, string>
  /** Hash of every setting devreg chooses; stored as a label to detect drift. */
  hash: string
}

/** The `docker run` settings for one registry; a change to any of them recreates the container. */
export function registryContainer(r: Registry): ContainerSpec {
  const env: string[] =
    r.role === 'local'
      ? // GC deletes manifests through the API, which needs storage delete.
        ['REGISTRY_STORAGE_DELETE_ENABLED=true']
      : [
          `REGISTRY_PROXY_REMOTEURL=${r.upstream}`,
          // With delete disabled distribution 2.8's proxy scheduler cannot expire
          // content (its 168h TTL deletes through the storage API); v3 reads
          // proxy.ttl and 0 means never. Eviction is registry-gc's job.
          'REGISTRY_STORAGE_DELETE_ENABLED=false',
          'REGISTRY_PROXY_TTL=0',
        ]
  const secretEnv: Record<string, string> = r.credentials
    ? { REGISTRY_PROXY_USERNAME: r.credentials.usernameEnv, REGISTRY_PROXY_PASSWORD: r.credentials.passwordEnv }
    : {}
  const labels = [`${LABEL.managed}=true`, `${LABEL.role}=${r.role}`, ...(r.host ? [`${LABEL.upstreamHost}=${r.host}`] : [])]
  const settings = [
    '--restart=always',
    ...labels.flatMap((l) => ['--label', l]),
    '--publish',
    `${r.bind.includes(':') ? `[${r.bind}]` : r.bind}:${r.port}:5000`,
    '--volume',
    `${r.volume}:${REGISTRY_DATA}`,
    // Registries run for months: rotate their logs.
    '--log-driver',
    'json-file',
    '--log-opt',
    'max-size=10m',
    '--log-opt',
    'max-file=3',
    ...env.flatMap((e) => ['--env', e]),
    ...Object.keys(secretEnv).flatMap((name) => ['--env', name]),
    ...(r.role === 'cache' ? ['--init', '--entrypoint', '/bin/sh'] : []),
    r.image,
    ...(r.role === 'cache' ? ['-c', CACHE_ENTRYPOINT, 'devreg-cache', REGISTRY_CONFIG] : []),
  ]
  const hash = createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16)
  return {
    name: r.name,
    args: ['--name', r.name, '--label', `${LABEL.hash}=${hash}`, ...settings],
    secretEnv,
    hash,
  }
}
