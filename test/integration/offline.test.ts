// A cache keeps serving what it holds when it (re)starts while its upstream is
// unreachable, and pulls through again once the upstream is back
// (distribution #4038 makes a plain proxy-mode registry crash-loop instead).
// Once on an image laid out like registry:3 (the default), once like registry:2.
import { expect, test } from 'bun:test'
import { $ } from 'zx'
import { integration, waitHttp } from '../kit/fixture.ts'
import { REGISTRY_LAYOUTS } from '../kit/images.ts'
import { cacheMode, eventually, manifestBlobs, pull, seed, waitStored } from '../kit/registry.ts'
import { useWorld } from '../kit/world.ts'

const canFirewall = process.getuid?.() === 0 && (await $({ nothrow: true, quiet: true })`which nsenter iptables`).exitCode === 0
if (!canFirewall) {
  if (process.env.DEVREG_REQUIRE_DOCKER === '1') throw new Error('the dropped-packets test needs root, nsenter and iptables')
  console.error('SKIPPING the dropped-packets test: it needs root, nsenter and iptables')
}

for (const { layout, image } of REGISTRY_LAYOUTS)
  integration(`a cache whose upstream is unreachable, on ${layout}`, () => offlineSuite(image))

function offlineSuite(image: string) {
  const w = useWorld({ mirrors: [{ host: 'docker.io', cache: 'cache' }], registryImage: image }, async (w) => {
    const { network, upstream } = w
    await $({ quiet: true })`docker network disconnect ${network} ${upstream.name}`
    await $({ quiet: true })`docker network connect --alias ${`${upstream.name}-b`} ${network} ${upstream.name}`
    await seed(upstream.port, 'alpha', 'library/alpha')
    await seed(upstream.port, 'beta', 'library/beta', 'stopped')
    await seed(upstream.port, 'beta', 'library/beta', 'dropped')
    await seed(upstream.port, 'beta', 'library/beta', 'vanished')
    expect((await w.devRegistry()).code).toBe(0)
    expect((await cached()).ok).toBe(true)
    await waitStored(w.cache.name, await manifestBlobs(upstream.port, 'library/alpha', '1'))
  })
  const { upstream, cache } = w
  const cached = () => pull(`127.0.0.1:${cache.port}/library/alpha:1`)
  const uncached = (tag: string) => pull(`127.0.0.1:${cache.port}/library/beta:${tag}`)
  const started = async () =>
    (await $({ quiet: true })`docker inspect --format ${'{{.Id}} {{.State.StartedAt}}'} ${cache.name}`).stdout.trim()
  // The supervisor writes the mode just before it starts the registry, which then needs a moment to listen.
  const inMode = async (mode: string, timeoutMs?: number) => {
    await eventually(`${mode} mode`, async () => (await cacheMode(cache.name)) === mode, timeoutMs)
    await waitHttp(`http://127.0.0.1:${cache.port}/v2/`)
  }

  test('upstream stopped: docker restart leaves the cache serving its images read-only, and it proxies again once the upstream is back', async () => {
    await w.stopped(upstream.name, async () => {
      await $({ quiet: true })`docker restart ${cache.name}`
      await inMode('offline')
      expect((await cached()).ok).toBe(true)
      expect((await uncached('stopped')).ok).toBe(false)
      const status = JSON.parse((await w.devRegistry('status', '--json')).stdout)
      expect(status.registries[1].mode).toBe('offline')
    })
    await inMode('proxy', 30_000)
    expect((await uncached('stopped')).ok).toBe(true)
  })

  test.skipIf(!canFirewall)(
    'upstream dropping packets: restart and recreate both come up serving cached images, then proxy again',
    async () => {
      await w.dropped(upstream.name, async () => {
        await $({ quiet: true })`docker restart ${cache.name}`
        await inMode('offline')
        expect((await cached()).ok).toBe(true)

        // A config change recreates the cache while the upstream is silent:
        // the same upstream under its other name on the network.
        const changed = w.configFile({ mirrors: [{ ...w.mirrorDocs()[0], upstream: `http://${upstream.name}-b:5000` }] }, 'changed.yaml')
        const r = await w.run('dev-registry', [], { config: changed })
        expect(r.stderr).toContain('recreated (settings changed)')
        expect(r.code).toBe(0)
        expect(await cacheMode(cache.name)).toBe('offline')
        expect((await cached()).ok).toBe(true)
      })
      await inMode('proxy', 30_000)
      expect((await uncached('dropped')).ok).toBe(true)
      expect((await w.devRegistry()).code).toBe(0)
    },
    120_000,
  )

  test.skipIf(!canFirewall)(
    'upstream starts dropping packets under a running proxy: cached images pull within 20 s, without a restart, and it proxies again',
    async () => {
      await inMode('proxy', 30_000)
      expect((await cached()).ok).toBe(true)
      await waitStored(cache.name, await manifestBlobs(upstream.port, 'library/alpha', '1'))
      const before = await started()

      await w.dropped(upstream.name, async () => {
        // A pull in flight when the supervisor restarts the registry fails; containerd and skopeo users retry.
        // One pull through a proxy that waits on dial timeouts can hang for minutes: give up at the deadline.
        const dropped = Date.now()
        const deadline = dropped + 20_000
        const retried = async () => {
          while (Date.now() < deadline) {
            if ((await cached()).ok) return true
            await Bun.sleep(250)
          }
          return false
        }
        const pulled = await Promise.race([retried(), Bun.sleep(20_000).then(() => false)])
        console.error(`cached image ${pulled ? `pulled ${Date.now() - dropped} ms` : 'not pulled within 20 s'} after the drop`)
        expect(pulled).toBe(true)
        expect(await cacheMode(cache.name)).toBe('offline')
        expect(await started()).toBe(before)
      })
      await inMode('proxy', 30_000)
      expect((await uncached('vanished')).ok).toBe(true)
      expect(await started()).toBe(before)
    },
    150_000,
  )
}
