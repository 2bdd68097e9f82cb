// Which registries a name means: one reading for export, import, report and
// registry-gc --registry (registry-names.ts).
import { describe, expect, test } from 'bun:test'
import { resolveConfig } from '../../scripts/lib/core/config.ts'
import { UserError } from '../../scripts/lib/core/log.ts'
import { selectRegistries } from '../../scripts/lib/registries/registry-names.ts'

const config = resolveConfig({ mirrors: [{ host: 'docker.io' }, { host: 'ghcr.io' }] })
const names = (...args: Parameters<typeof selectRegistries>) => selectRegistries(...args).map((r) => r.name)

function refused(run: () => unknown): UserError {
  try {
    run()
  } catch (err) {
    expect(err).toBeInstanceOf(UserError)
    return err as UserError
  }
  throw new Error('accepted')
}

describe('selectRegistries', () => {
  test('a container name, a mirror host and local each name their registry, once each, in the order named', () => {
    expect(names(config, ['kind-cache-ghcr-io', 'docker.io', 'local'], { none: 'caches' })).toEqual([
      'kind-cache-ghcr-io',
      'kind-cache-docker-io',
      'kind-registry',
    ])
    expect(names(config, ['docker.io', 'kind-cache-docker-io', 'kind-registry', 'local'], { none: 'all' })).toEqual([
      'kind-cache-docker-io',
      'kind-registry',
    ])
  })

  test('naming none means every cache, or every registry, as the command says', () => {
    expect(names(config, [], { none: 'caches' })).toEqual(['kind-cache-docker-io', 'kind-cache-ghcr-io'])
    expect(names(config, [], { none: 'all' })).toEqual(['kind-registry', 'kind-cache-docker-io', 'kind-cache-ghcr-io'])
  })

  test('a name the config has no registry for is a usage error that lists what may be named', () => {
    const err = refused(() => selectRegistries(config, ['quay.io'], { none: 'all' }))
    expect(err.exitCode).toBe(2)
    expect(err.message).toBe(
      'no registry quay.io in the config: name kind-registry, kind-cache-docker-io, kind-cache-ghcr-io, a mirror host (docker.io, ghcr.io), or local',
    )
  })

  test('a command that covers caches only refuses the local registry, by either of its names', () => {
    for (const name of ['local', 'kind-registry']) {
      const err = refused(() => selectRegistries(config, [name], { none: 'caches', cachesOnly: 'report' }))
      expect(err.exitCode).toBe(2)
      expect(err.message).toBe(`${name} is the local registry: report covers caches only (name one, or none for every cache)`)
    }
    expect(names(config, ['ghcr.io'], { none: 'caches', cachesOnly: 'report' })).toEqual(['kind-cache-ghcr-io'])
  })
})
