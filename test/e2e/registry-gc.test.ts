// registry-gc keeps what a running node holds: the node is a real kind node
// (containerd 2.x) that pulled the tag through CRI, as the kubelet would.
import { expect, test } from 'bun:test'
import { criPull } from '../kit/cri.ts'
import { integration } from '../kit/fixture.ts'
import { layer, manifestStatus, pushImage, tagsOf } from '../kit/push.ts'
import { useWorld } from '../kit/world.ts'

const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000)

integration('registry-gc with a running kind cluster', () => {
  const w = useWorld({ cluster: { provider: 'kind' } })
  const { registry, node } = w

  test('a tag a running node holds survives --apply', async () => {
    const up = await w.devUp()
    expect(up.code, up.stderr).toBe(0)
    const local = `http://127.0.0.1:${registry.port}`
    const old = await pushImage(local, 'gc/held', 'old', { layers: [layer(80_000)], created: daysAgo(4) })
    await pushImage(local, 'gc/held', 'mid', { layers: [layer(80_000)], created: daysAgo(3) })
    await pushImage(local, 'gc/held', 'new', { layers: [layer(80_000)], created: daysAgo(1) })
    const pulled = await criPull(node, `localhost:${registry.port}/gc/held:old`)
    expect(pulled.error).toBeUndefined()
    const r = await w.run('registry-gc', ['--keep-last', '1', '--repo', 'gc/held', '--apply', '--yes'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/keep +gc\/held:old +a running node holds it/)
    expect(await tagsOf(local, 'gc/held')).toEqual(['new', 'old'])
    expect(await manifestStatus(local, 'gc/held', old.digest)).toBe(200)
  })
})
