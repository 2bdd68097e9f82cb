// A registry bound to ::1 or 127.0.0.2 is named the same way by status, by
// dev-up's plan and by what it publishes: bracketed IPv6, no "localhost"
// for an address that is not 127.0.0.1.
import { afterAll, expect, test } from 'bun:test'
import { Fixture, freePort, integration, runScript } from '../kit/fixture.ts'

integration('registry addresses', () => {
  const fx = new Fixture()
  afterAll(() => fx.cleanup())

  test.each([
    ['::1', (port: number) => `[::1]:${port}`],
    ['127.0.0.2', (port: number) => `127.0.0.2:${port}`],
  ])('bind %s: status and the dev-up plan agree', async (bind, hostOf) => {
    const [port, cachePort] = [await freePort(), await freePort()]
    const config = fx.config(
      {
        cluster: { provider: 'kind', name: fx.name('c'), network: fx.name('net', 'network') },
        registry: { name: fx.name('registry'), port, bind, volume: fx.name('registry-data', 'volume') },
        mirrors: [{ host: 'docker.io', upstream: 'http://upstream.invalid:5000', name: fx.name('cache'), port: cachePort }],
      },
      `${bind}.yaml`,
    )
    const status = await runScript('dev-registry', ['status', '--json', '--config', config])
    expect(status.code, status.stderr).toBe(0)
    expect(JSON.parse(status.stdout).registries.map((r: { address: string }) => r.address)).toEqual([hostOf(port), hostOf(cachePort)])
    const plan = await runScript('dev-up', ['--dry-run', '--config', config])
    expect(plan.code, plan.stderr).toBe(0)
    expect(plan.stdout).toContain(`${hostOf(port)}:5000`)
    expect(plan.stdout).toContain(`/etc/containerd/certs.d/${hostOf(port)}/hosts.toml`)
    expect(plan.stdout).not.toContain('localhost:')
  })
})
