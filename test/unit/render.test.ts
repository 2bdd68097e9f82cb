import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { CACHE_ENTRYPOINT, credentialedContainer, registryContainer } from '../../scripts/lib/registries/registry-containers.ts'

const config = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
const [local, ghcr] = [config.registries[0], config.registries[2]].map(registryContainer)
// A cache with a login (env variables or docker login): the same settings either way.
const hub = credentialedContainer(config.registries[1], undefined)
// What every registry runs with: logs rotated, at info, and no trace export.
const ROTATED_LOGS = ['--log-driver', 'json-file', '--log-opt', 'max-size=10m', '--log-opt', 'max-file=3']
const INFO_UNTRACED = ['--env', 'REGISTRY_LOG_LEVEL=info', '--env', 'OTEL_TRACES_EXPORTER=none']

describe('registry containers', () => {
  test('the local registry: delete enabled, published on 127.0.0.1, named volume, rotated logs at info, no trace export', () => {
    expect(local.args).toEqual([
      '--name',
      'kind-registry',
      '--label',
      `devreg.config-hash=${local.hash}`,
      '--restart=always',
      '--label',
      'devreg.managed=true',
      '--label',
      'devreg.role=local',
      '--publish',
      '127.0.0.1:5001:5000',
      '--volume',
      'kind-registry-data:/var/lib/registry',
      ...ROTATED_LOGS,
      ...INFO_UNTRACED,
      '--env',
      'REGISTRY_STORAGE_DELETE_ENABLED=true',
      'registry:3',
    ])
    expect(local.secretEnv).toEqual([])
  })

  test('a cache: proxy upstream, delete disabled, no expiry, an hour to store a fetched blob, its login by name, the offline-safe entrypoint', () => {
    expect(hub.args.slice(hub.args.indexOf('--publish'))).toEqual([
      '--publish',
      '127.0.0.1:5101:5000',
      '--volume',
      'kind-cache-docker-io-data:/var/lib/registry',
      ...ROTATED_LOGS,
      ...INFO_UNTRACED,
      '--env',
      'REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io',
      '--env',
      'REGISTRY_STORAGE_DELETE_ENABLED=false',
      '--env',
      'REGISTRY_PROXY_TTL=0',
      '--env',
      'REGISTRY_PROXY_CACHEWRITETIMEOUT=1h',
      '--env',
      'REGISTRY_PROXY_USERNAME',
      '--env',
      'REGISTRY_PROXY_PASSWORD',
      '--init',
      '--entrypoint',
      '/bin/sh',
      'registry:3',
      '-c',
      CACHE_ENTRYPOINT,
      'devreg-cache',
    ])
    expect(hub.secretEnv).toEqual(['REGISTRY_PROXY_USERNAME', 'REGISTRY_PROXY_PASSWORD'])
    expect(hub.args).toContain('devreg.upstream-host=docker.io')
  })

  test('a cache without a login passes none', () => {
    expect(ghcr.args.filter((a) => a.startsWith('REGISTRY_PROXY_'))).toEqual([
      'REGISTRY_PROXY_REMOTEURL=https://ghcr.io',
      'REGISTRY_PROXY_TTL=0',
      'REGISTRY_PROXY_CACHEWRITETIMEOUT=1h',
    ])
  })

  test('the hash is stable for the same settings and changes with any of them', () => {
    const again = credentialedContainer(resolveConfig({ mirrors: [{ host: 'docker.io' }] }).registries[1], undefined)
    expect(again.hash).toBe(hub.hash)
    const other = resolveConfig({ mirrors: [{ host: 'docker.io', upstream: 'https://mirror.gcr.io' }] }).registries[1]
    expect(credentialedContainer(other, undefined).hash).not.toBe(hub.hash)
    const moved = resolveConfig({ registry: { port: 6000 } }).registries[0]
    expect(registryContainer(moved).hash).not.toBe(local.hash)
  })

  test('an IPv6 bind address is bracketed in --publish', () => {
    const r = resolveConfig({ registry: { bind: '::1' } }).registries[0]
    expect(registryContainer(r).args).toContain('[::1]:5001:5000')
  })
})
