// The settings hash of a cache with credentials: a keyed digest of the values,
// never the values, and no change for registries without credentials.
import { afterAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveConfig } from '../../scripts/lib/config.ts'
import type { Container } from '../../scripts/lib/docker.ts'
import { createRunner } from '../../scripts/lib/exec.ts'
import { LABEL } from '../../scripts/lib/labels.ts'
import { credentialDigest, hashKeyPath, registryContainer, registrySpec } from '../../scripts/lib/registry-containers.ts'

const run = createRunner()
const dir = mkdtempSync(join(tmpdir(), 'devreg-credentials-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const config = resolveConfig({
  mirrors: [
    { host: 'docker.io', upstream: 'http://up:5000', credentials: { usernameEnv: 'HUB_USER', passwordEnv: 'HUB_TOKEN' } },
    { host: 'ghcr.io', upstream: 'http://up2:5000' },
  ],
})
const [local, hub, ghcr] = config.registries
const env = (token: string | undefined, home = dir) => ({ XDG_CONFIG_HOME: home, HUB_USER: 'robot', HUB_TOKEN: token })
const running = (labels: Record<string, string>) => ({ name: hub.name, labels }) as unknown as Container

describe('a cache with credentials', () => {
  test('the same values give the same hash', async () => {
    expect((await registrySpec(run, hub, env('s3cret-1'), null)).hash).toBe((await registrySpec(run, hub, env('s3cret-1'), null)).hash)
  })

  test('a rotated token gives another hash', async () => {
    expect((await registrySpec(run, hub, env('s3cret-2'), null)).hash).not.toBe((await registrySpec(run, hub, env('s3cret-1'), null)).hash)
  })

  test('the values appear nowhere in the spec: not in args, labels, secretEnv or hash', async () => {
    const spec = await registrySpec(run, hub, env('s3cret-1'), null)
    const text = JSON.stringify(spec)
    expect(text).not.toContain('s3cret-1')
    expect(text).not.toContain('robot')
    expect(spec.secretEnv).toEqual({ REGISTRY_PROXY_USERNAME: 'HUB_USER', REGISTRY_PROXY_PASSWORD: 'HUB_TOKEN' })
  })

  test('the digest is keyed: another machine key gives another hash, and the label is no plain SHA-256', async () => {
    const other = mkdtempSync(join(dir, 'other-'))
    const a = await registrySpec(run, hub, env('s3cret-1'), null)
    const b = await registrySpec(run, hub, env('s3cret-1', other), null)
    expect(b.hash).not.toBe(a.hash)
    const label = a.args.find((x) => x.startsWith(`${LABEL.credentials}=`))
    expect(label).toBe(`${LABEL.credentials}=${credentialDigest(Buffer.from(statKey(dir).key), ['robot', 's3cret-1'])}`)
    const plain = new Bun.CryptoHasher('sha256').update(JSON.stringify(['robot', 's3cret-1'])).digest('hex')
    expect(label).not.toContain(plain)
  })

  test('the key is created once, 32 bytes, readable by the user alone', async () => {
    const home = mkdtempSync(join(dir, 'fresh-'))
    await registrySpec(run, hub, env('x', home), null)
    const { key, mode } = statKey(home)
    expect(key.length).toBe(32)
    expect(mode).toBe(0o600)
    await registrySpec(run, hub, env('y', home), null)
    expect(statKey(home).key.equals(key)).toBe(true)
  })

  test('under --dry-run no key is written', async () => {
    const home = mkdtempSync(join(dir, 'dry-'))
    await registrySpec(createRunner({ dryRun: true, verbose: false }), hub, env('x', home), null)
    expect(() => statSync(hashKeyPath({ XDG_CONFIG_HOME: home }))).toThrow()
  })

  test('without the values here, the digest the container was made with stands in: no recreate', async () => {
    const made = await registrySpec(run, hub, env('s3cret-1'), null)
    const digest = made.args.find((x) => x.startsWith(`${LABEL.credentials}=`))?.split('=')[1] as string
    const current = running({ [LABEL.hash]: made.hash, [LABEL.credentials]: digest })
    expect((await registrySpec(run, hub, env(undefined), current)).hash).toBe(made.hash)
  })
})

test('registries without credentials hash as before, with no key and no digest label', async () => {
  const home = mkdtempSync(join(dir, 'none-'))
  for (const r of [local, ghcr]) {
    const spec = await registrySpec(run, r, env('s3cret-1', home), null)
    expect(spec).toEqual(registryContainer(r))
    expect(spec.args.join(' ')).not.toContain(LABEL.credentials)
  }
  expect(() => statSync(hashKeyPath({ XDG_CONFIG_HOME: home }))).toThrow()
})

function statKey(home: string): { key: Buffer; mode: number } {
  const path = hashKeyPath({ XDG_CONFIG_HOME: home })
  return { key: readFileSync(path), mode: statSync(path).mode & 0o777 }
}
